"""The corpus checker on the bundled corpus (must pass) and on bad corpora (must fail)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import SHARED
from training.corpus_check import check, identity_balance, main, near_duplicates
from training.fit import bundled_corpus


def test_bundled_corpus_passes(capsys):
    assert main([str(p) for p in bundled_corpus()]) == 0
    out = capsys.readouterr().out
    assert "| label | texts |" in out and "| register | texts |" in out and "| label pair | texts |" in out


def _write(tmp_path, rows):
    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_checker_fails_on_unknown_labels_counts_and_lengths(tmp_path):
    rows = [{"text": "a perfectly ordinary sentence about the village fete today", "labels": ["nope"], "register": "log"},
            {"text": "too short", "labels": [], "register": "log"},
            {"text": "another ordinary sentence about the village fete and its cakes", "labels": [], "register": "blog"}]
    problems, _ = check([_write(tmp_path, rows)])
    text = "\n".join(problems)
    assert "unknown labels ['nope']" in text and "2 words" in text and "unknown register 'blog'" in text
    assert "at least 4000 needed" in text and "label fgm: 0 texts" in text


def test_near_duplicates_found_at_sixty_percent():
    a = "the suspect was seen running from the rear of the property carrying a large holdall"
    b = "the suspect was seen running from the rear of the property carrying a small rucksack"
    c = "a completely different report about a missing teenager last seen near the canal"
    pairs = near_duplicates([a, b, c])
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]


def test_identity_balance_counts_harm_and_other_texts():
    rows = [{"text": "Girl to be taken to Somalia to be cut", "labels": ["fgm"]},
            {"text": "Family holiday to Somalia for a wedding", "labels": []},
            {"text": "Somalia football team wins", "labels": []}]
    assert identity_balance(rows)["somalia"] == (1, 2)


@pytest.mark.skipif(not (SHARED.parent / "tools" / "copycheck.py").exists(), reason="needs ../shared/tools")
def test_no_third_party_text_in_the_repository():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, str(SHARED.parent / "tools" / "copycheck.py"), str(repo), str(SHARED)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout
