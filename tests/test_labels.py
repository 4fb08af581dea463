"""The taxonomy file: the 14 fixed ids, and a user's own taxonomy validated entry by entry."""
from __future__ import annotations

import json

import pytest

from model.errors import DataError
from model.labels import load_taxonomy

SPEC_IDS = ["modern_slavery", "forced_marriage", "child_sexual_abuse", "honour_based_abuse", "fgm",
            "domestic_abuse", "stalking_harassment", "missing_person", "mental_health", "burglary", "weapons",
            "anti_social_behaviour", "terrorism", "cyber_crime"]


def test_default_taxonomy_is_the_spec_ids():
    tax = load_taxonomy()
    assert tax.ids == SPEC_IDS
    assert all(label.name and label.description for label in tax.labels)


def test_own_taxonomy(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps([{"id": "commenting", "name": "Commenting"}, {"id": "groping"}]))
    tax = load_taxonomy(p)
    assert tax.ids == ["commenting", "groping"] and tax.labels[1].name == "groping"


@pytest.mark.parametrize("content, message", [
    ("[]", "non-empty JSON list"),
    ('{"id": "a"}', "non-empty JSON list"),
    ('[{"id": "a"}, {"id": "a"}]', "entry 2: duplicate id 'a'"),
    ('[{"id": "has space"}]', "entry 1: 'id' must be"),
    ('[{"name": "x"}]', "entry 1: 'id' must be"),
    ('[3]', "entry 1: expected an object"),
    ('[{"id": "a"', "not valid JSON"),
])
def test_bad_taxonomy(tmp_path, content, message):
    p = tmp_path / "t.json"
    p.write_text(content)
    with pytest.raises(DataError, match=message):
        load_taxonomy(p)
