"""The accurate profile: sentence embeddings beside TF-IDF, saved, verified and explained like fast."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from model.errors import IntegrityError
from model.store import META_FILE, ModelStore
from tests.conftest import corpus_slice, write_jsonl
from training.fit import train


@pytest.fixture(scope="module")
def accurate_store(tmp_path_factory):
    data = write_jsonl(tmp_path_factory.mktemp("acc") / "d.jsonl", corpus_slice(step=12))
    store = ModelStore(tmp_path_factory.mktemp("acc-store"))
    train(store, data_paths=[data], profile="accurate", cv_folds=2, params={"C": 0.3})
    return store


def test_metadata_records_profile_and_encoder(accurate_store):
    meta = accurate_store.read_metadata(accurate_store.current_version())
    assert meta["profile"] == "accurate"
    ident = meta["embedding"]["identity"]
    assert ident["dimension"] == 384 and ident["files"] and all(len(d) == 64 for d in ident["files"].values())


def test_scores_equal_the_classifier_on_stacked_features(accurate_store):
    tagger = accurate_store.load(with_pipeline=True)
    texts = ["A man was stabbed outside the station", "She has not been seen since Friday", "lovely day", "ok"]
    X = sp.hstack([tagger.pipeline.named_steps["features"].transform(texts),
                   sp.csr_matrix(tagger.embedder.embed(texts))], format="csr")
    expected = tagger.pipeline.named_steps["clf"].decision_function(X)
    assert np.abs(tagger.decision(texts) - expected).max() < 1e-9
    assert np.abs(tagger.decision(texts[:1]) - expected[:1]).max() < 1e-9


def test_explanations_still_point_into_the_text(accurate_store):
    tagger = accurate_store.load()
    text = "Armed officers were called after reports of a man with a machete outside a school."
    (r,) = tagger.predict([text], explain=True)
    assert r["labels"], r
    for entry in r["labels"]:
        for ev in entry["evidence"]:
            assert text[ev["start"]:ev["end"]] == ev["text"]


def test_a_different_encoder_is_refused(accurate_store, tmp_path):
    import shutil

    shutil.copytree(accurate_store.root, tmp_path / "s")
    store = ModelStore(tmp_path / "s")
    meta_path = store.versions_dir / store.current_version() / META_FILE
    # The encoder identity that loading checks lives in the digest-checked model file, so
    # editing metadata cannot swap encoders; a mismatched encoder digest is refused at load.
    from model.embeddings import load_embedder

    ident = json.loads(meta_path.read_text())["embedding"]["identity"]
    wrong = {**ident, "files": {k: "0" * 64 for k in ident["files"]}}
    with pytest.raises(IntegrityError):
        load_embedder(None, expected=wrong)
