"""Shared fixtures: a small model trained once per session on a slice of the bundled corpus."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.labels import load_taxonomy
from model.store import ModelStore
from training.data import read_labelled
from training.fit import bundled_corpus, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def corpus_slice(step: int = 6) -> list[dict]:
    """Every `step`-th row of the bundled corpus: all 14 labels, small enough to train in seconds."""
    data = read_labelled(bundled_corpus(), load_taxonomy().ids)
    return [{"text": t, "labels": ls} for t, ls in list(zip(data.texts, data.labels))[::step]]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "small.jsonl", corpus_slice())


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory, small_data) -> ModelStore:
    """A store holding one model trained on the corpus slice (3-fold CV)."""
    store = ModelStore(tmp_path_factory.mktemp("store"))
    train(store, data_paths=[small_data], cv_folds=3, seed=0)
    return store


@pytest.fixture(scope="session")
def tagger(trained_store):
    return trained_store.load(with_pipeline=True)


@pytest.fixture
def store_copy(tmp_path, trained_store) -> ModelStore:
    """A private copy of the trained store, for tests that change or damage it."""
    import shutil

    dst = tmp_path / "store"
    shutil.copytree(trained_store.root, dst)
    return ModelStore(dst)


# -- the HTTP service ---------------------------------------------------------------------------
ADMIN_TOKEN = "test-token"


@pytest.fixture
def clean_env(monkeypatch):
    """No CRIMETAG_* variable from the developer's shell reaches an app built in a test."""
    import os

    for key in [k for k in os.environ if k.startswith("CRIMETAG_")]:
        monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def app(clean_env, trained_store):
    """The service around the session's trained store, admin endpoints enabled."""
    from service import create_app

    return create_app({"MODEL_DIR": str(trained_store.root), "ADMIN_TOKEN": ADMIN_TOKEN})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def word_store(tmp_path_factory, small_data) -> ModelStore:
    """The same slice trained in the large-data regime: word n-grams only, 20% holdout."""
    store = ModelStore(tmp_path_factory.mktemp("word-store"))
    train(store, data_paths=[small_data], seed=0, params={"regime": "large"})
    return store


@pytest.fixture(scope="session")
def word_tagger(word_store):
    return word_store.load(with_pipeline=True)
