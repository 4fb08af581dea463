"""The embedded default model on real text and on identity swaps (trained once on the whole corpus).

Guards against regressions in the corpus or the model: recall on real public texts for the two
probe labels, and the SPEC rule that a text differing only in the community named gets the
same labels.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from model.store import ModelStore
from tests.conftest import SHARED
from training.fit import train

PROBES = SHARED / "probes"


@pytest.fixture(scope="module")
def default_tagger(tmp_path_factory):
    store = ModelStore(tmp_path_factory.mktemp("default"))
    train(store, cv_folds=3, params={"C": 1.0})
    return store.load()


@pytest.mark.parametrize("label, floor", [("missing_person", 0.80), ("mental_health", 0.80)])
@pytest.mark.skipif(not PROBES.exists(), reason="needs ../shared/data")
def test_recall_on_real_probe_texts(default_tagger, label, floor):
    texts = [json.loads(line)["text"] for line in (PROBES / f"{label}.jsonl").open(encoding="utf-8")]
    pred = default_tagger.scores(texts) >= default_tagger.thresholds
    j = default_tagger.taxonomy.ids.index(label)
    assert pred[:, j].mean() >= floor
    assert np.delete(pred, j, axis=1).any(1).mean() <= 0.10  # few spurious other labels


FRAMES = [
    "The {x} family held a large wedding reception at the community hall on Saturday.",
    "A {x} man was arrested on suspicion of preparing acts of terrorism after officers searched his flat.",
    "Officers attended a {x} community centre open day and spoke to residents about road safety.",
    "IP states her {x} brothers threatened her because she has a boyfriend, saying she has brought shame on the family.",
    "The {x} girls are flying out for the summer holidays to see their grandparents.",
    "Two {x} teenagers were seen spraying graffiti on the bus shelter late at night.",
    "A {x} woman says her husband checks her phone, controls the money and will not let her see friends.",
]
GROUPS = ["Somali", "Pakistani", "Polish", "English", "Irish", "Sikh", "Muslim", "Christian", "Nigerian",
          "Romanian", "Jewish", "Kurdish", "Bangladeshi", "Sudanese"]


@pytest.mark.parametrize("frame", FRAMES)
def test_identity_does_not_change_labels(default_tagger, frame):
    labels = {g: tuple(e["label"] for e in default_tagger.predict([frame.format(x=g)])[0]["labels"]) for g in GROUPS}
    assert len(set(labels.values())) == 1, labels
