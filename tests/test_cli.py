"""The command line through click's CliRunner (and a real pipe for streaming)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from model.store import ModelStore
from tests.conftest import SHARED, write_jsonl
from training.cli import main


@pytest.fixture
def runner():
    return CliRunner()


def snapshot(root: Path) -> dict:
    """Every file under the store with its digest: 'exactly as it was' means equal snapshots."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_train_reports_and_makes_current(runner, tmp_path, small_data):
    res = runner.invoke(main, ["train", "--data", str(small_data), "--model-dir", str(tmp_path), "--cv-folds", "2"])
    assert res.exit_code == 0, res.output
    for words in ("precision", "macro-F1", "example-based (Jaccard)", "label accuracy", "Brier", "ECE"):
        assert words in res.stdout
    assert "[" not in res.stderr  # no progress lines when not on a terminal
    assert ModelStore(tmp_path).current_version() in res.stdout


def test_regime_and_features_options(runner, tmp_path, small_data):
    res = runner.invoke(main, ["train", "--data", str(small_data), "--model-dir", str(tmp_path), "--regime", "large",
                               "--C", "0.3", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    sel = json.loads(res.stdout)["model_selection"]
    assert (sel["regime"], sel["features"], sel["C"]) == ("large", "word", 0.3)
    bad = runner.invoke(main, ["train", "--data", str(small_data), "--model-dir", str(tmp_path), "--regime", "huge"])
    assert bad.exit_code != 0 and "huge" in bad.stderr


def test_unknown_label_on_line_3_fails_and_leaves_store_unchanged(runner, store_copy, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "one", "labels": []}\n{"text": "two", "labels": ["weapons"]}\n'
                   '{"text": "three", "labels": ["not_a_label"]}\n')
    before = snapshot(store_copy.root)
    res = runner.invoke(main, ["train", "--data", str(bad), "--model-dir", str(store_copy.root)])
    assert res.exit_code != 0
    assert f"{bad}:3: unknown label 'not_a_label'" in res.stderr
    assert snapshot(store_copy.root) == before


def test_skip_invalid_says_how_many_were_dropped(runner, tmp_path, small_data):
    rows = [json.loads(line) for line in small_data.read_text().splitlines()]
    data = write_jsonl(tmp_path / "d.jsonl", rows + [{"text": "", "labels": []}, {"text": "x", "labels": ["nope"]}])
    res = runner.invoke(main, ["train", "--data", str(data), "--model-dir", str(tmp_path / "s"), "--cv-folds", "2",
                               "--skip-invalid", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "skipped 2 invalid row(s)" in res.stderr
    assert ModelStore(tmp_path / "s").read_metadata(ModelStore(tmp_path / "s").current_version())["data"]["dropped"] == 2


def test_evaluate_json(runner, trained_store, small_data):
    res = runner.invoke(main, ["evaluate", "--data", str(small_data), "--model-dir", str(trained_store.root), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {"micro_f1", "macro_f1", "n", "per_label", "example_jaccard", "label_accuracy"} <= set(out)
    assert set(out["per_label"]["weapons"]) >= {"precision", "recall", "f1", "support"}
    assert out["macro_f1"] > 0.8  # training data: the model should fit it


def test_predict_arguments_and_stdin(runner, trained_store):
    d = ["--model-dir", str(trained_store.root)]
    res = runner.invoke(main, ["predict", "A man was stabbed outside the chip shop", "--explain", *d])
    assert res.exit_code == 0, res.output
    (r,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert r["labels"][0]["label"] == "weapons" and r["labels"][0]["evidence"]
    res = runner.invoke(main, ["predict", "--batch-size", "2", *d],
                        input="first text about a burglary\n\nthird text\nfourth\nfifth\n")
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(lines) == 5 and lines[1] == {"line": 2, "error": {"code": "empty_text", "message": "line 2 is empty"}}
    assert all("scores" in x for i, x in enumerate(lines) if i != 1)
    assert res.exit_code != 0 and "stdin:2" in res.stderr


def test_predict_streams_before_input_ends(trained_store):
    """Results for a full batch arrive while stdin is still open."""
    env = {**os.environ, "CRIMETAG_MODEL_DIR": str(trained_store.root)}
    proc = subprocess.Popen([sys.executable, "-m", "training.cli", "predict", "--batch-size", "2"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        proc.stdin.write(b"one text\ntwo texts\n")
        proc.stdin.flush()
        first = proc.stdout.readline()
        assert json.loads(first)["model_version"]
        assert proc.poll() is None  # still running: input not finished
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_models_list_and_use(runner, store_copy):
    first = store_copy.current_version()
    second = store_copy.save(store_copy.load(with_pipeline=True), {"profile": "fast", "metrics": {"macro_f1": 0.5}})
    d = ["--model-dir", str(store_copy.root)]
    res = runner.invoke(main, ["models", *d])
    assert f"* {second}" in res.stdout and f"  {first}" in res.stdout
    res = runner.invoke(main, ["models", "use", first, *d])
    assert res.exit_code == 0 and store_copy.current_version() == first
    res = runner.invoke(main, ["models", "use", "nope", *d])
    assert res.exit_code != 0 and "no model version 'nope'" in res.stderr


def test_no_model_is_one_line_error(runner, tmp_path):
    res = runner.invoke(main, ["predict", "hello", "--model-dir", str(tmp_path / "empty")])
    assert res.exit_code == 1
    assert res.stderr.startswith("crimetag: error: model store") and "Traceback" not in res.stderr


def test_same_data_and_seed_give_identical_predictions(tmp_path, small_data):
    from training.fit import train

    texts = ["RP reports youths kicking footballs at cars", "IP states partner took her bank card and phone"]
    scores = []
    for name in ("a", "b"):
        store = ModelStore(tmp_path / name)
        train(store, data_paths=[small_data], cv_folds=2, seed=7)
        scores.append(store.load().scores(texts))
    assert np.array_equal(scores[0], scores[1])


SAFECITY = SHARED / "safecity"


@pytest.mark.skipif(not SAFECITY.exists(), reason="needs ../shared/data")
def test_retrain_on_safecity_with_own_taxonomy(runner, tmp_path):
    tax = tmp_path / "tax.json"
    tax.write_text(json.dumps([{"id": "commenting", "name": "Commenting"}, {"id": "ogling", "name": "Ogling"},
                               {"id": "groping", "name": "Groping"}]))
    d = ["--model-dir", str(tmp_path / "s")]
    res = runner.invoke(main, ["train", "--data", str(SAFECITY / "train.csv"), "--taxonomy", str(tax), "--quiet",
                               "--cv-folds", "3", *d])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["evaluate", "--data", str(SAFECITY / "dev.csv"), "--json", *d])
    out = json.loads(res.stdout)
    assert out["n"] == 990 and list(out["per_label"]) == ["commenting", "ogling", "groping"]
    assert out["example_jaccard"] > 0.6 and out["label_accuracy"] > 0.78 and out["macro_f1"] > 0.6
