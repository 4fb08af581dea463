"""The model store: atomic versions, verified loading, refusals, signing, concurrent trains."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle

import pytest

from model.errors import IncompatibleModel, IntegrityError, ModelNotFound, StoreError
from model.store import ARRAYS_FILE, CURRENT, META_FILE, MODEL_FILE, MODEL_FILES, SCORER_FILE, ModelStore
from training.fit import train


def _meta_path(store, version=None):
    return store.versions_dir / (version or store.current_version()) / META_FILE


def _rewrite_meta(store, change):
    path = _meta_path(store)
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_save_layout_and_metadata(trained_store):
    v = trained_store.current_version()
    files = sorted(p.name for p in (trained_store.versions_dir / v).iterdir())
    assert files == sorted([META_FILE, *MODEL_FILES])
    meta = trained_store.read_metadata(v)
    for key in ("version", "created", "labels", "model_sha256", "libraries", "metrics", "data", "profile"):
        assert key in meta
    assert meta["data"]["sha256"] and len(meta["labels"]) == 14
    assert 0 <= meta["metrics"]["macro_f1"] <= 1 and "calibration" in meta["metrics"]
    assert not list((trained_store.root / ".tmp").iterdir())


def test_empty_store_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound):
        ModelStore(tmp_path / "nothing").load()
    assert ModelStore(tmp_path / "nothing").versions() == []


def test_tampered_model_refused_before_unpickling(store_copy, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    model = store_copy.versions_dir / store_copy.current_version() / MODEL_FILE
    model.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(IntegrityError, match="SHA-256"):
        store_copy.load()
    assert not marker.exists()


@pytest.mark.parametrize("name", [ARRAYS_FILE, SCORER_FILE])
def test_tampered_scorer_files_refused(store_copy, name):
    path = store_copy.versions_dir / store_copy.current_version() / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"{name} does not match"):
        store_copy.load()
    path.unlink()
    with pytest.raises(IntegrityError, match=f"no {name}"):
        store_copy.load()


def test_metadata_without_file_digests_refused(store_copy):
    _rewrite_meta(store_copy, lambda m: m.pop("files"))
    with pytest.raises(IntegrityError, match="does not list the digests"):
        store_copy.load()


def test_scoring_load_imports_neither_sklearn_nor_scipy(trained_store):
    """`crimetag predict` and the workers load arrays only: no unpickling, fast start-up."""
    import subprocess
    import sys

    code = ("import sys; from model.store import ModelStore; "
            f"t = ModelStore({str(trained_store.root)!r}).load(); t.predict(['a knife', 'a gun']); "
            "print(sorted(m for m in ('sklearn', 'scipy', 'joblib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_loaded_arrays_score_as_the_pickled_pipeline(trained_store):
    fast, full = trained_store.load(), trained_store.load(with_pipeline=True)
    assert fast.pipeline is None and full.pipeline is not None
    texts = ["Caller reports her ex-partner is outside with a knife.", "Lost dog found in the park."]
    assert abs(fast.decision(texts) - full.pipeline.decision_function(texts)).max() < 1e-9


def test_saving_a_tagger_without_its_pipeline_is_refused(store_copy):
    with pytest.raises(ValueError, match="pipeline"):
        store_copy.save(store_copy.load(), {"profile": "fast", "metrics": {}})


def test_truncated_model_and_corrupt_metadata_refused(store_copy):
    model = store_copy.versions_dir / store_copy.current_version() / MODEL_FILE
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(IntegrityError):
        store_copy.load()
    _meta_path(store_copy).write_text("{not json")
    with pytest.raises(IntegrityError, match="corrupt"):
        store_copy.load()


def test_incompatible_sklearn_refused_with_versions(store_copy):
    _rewrite_meta(store_copy, lambda m: m["libraries"].update({"scikit-learn": "0.24.2"}))
    with pytest.raises(IncompatibleModel, match=r"built with scikit-learn 0\.24\.2; this installation has \d"):
        store_copy.load()


def test_signing(store_copy):
    signed = ModelStore(store_copy.root, signing_key="k1")
    with pytest.raises(IntegrityError, match="unsigned"):
        signed.load()
    tagger = store_copy.load(with_pipeline=True)
    v = signed.save(tagger, {"profile": "fast", "metrics": {}})
    assert signed.load().version == v
    with pytest.raises(IntegrityError, match="wrongly signed"):
        ModelStore(store_copy.root, signing_key="other").load()
    # Re-signing a tampered digest needs the key: editing the metadata breaks the signature.
    _rewrite_meta(signed, lambda m: m.update({"model_sha256": "0" * 64}))
    with pytest.raises(IntegrityError):
        signed.load()


def test_use_switches_and_refuses_bad_versions(store_copy):
    first = store_copy.current_version()
    second = store_copy.save(store_copy.load(with_pipeline=True), {"profile": "fast", "metrics": {}})
    assert store_copy.current_version() == second
    store_copy.use(first)
    assert store_copy.current_version() == first
    with pytest.raises(ModelNotFound):
        store_copy.use("no-such-version")
    (store_copy.versions_dir / second / MODEL_FILE).write_bytes(b"junk")
    with pytest.raises(IntegrityError):
        store_copy.use(second)
    assert store_copy.current_version() == first
    rows = {r["version"]: r for r in store_copy.versions()}
    assert rows[first]["current"] and rows[second]["ok"] is True  # metadata still reads


def test_write_error_leaves_store_unchanged(store_copy, monkeypatch):
    before = sorted(p.name for p in store_copy.versions_dir.iterdir())
    current = store_copy.current_version()
    import joblib

    def disk_full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(joblib, "dump", disk_full)
    with pytest.raises(StoreError, match="No space left"):
        store_copy.save(store_copy.load(with_pipeline=True), {"profile": "fast", "metrics": {}})
    assert sorted(p.name for p in store_copy.versions_dir.iterdir()) == before
    assert store_copy.current_version() == current
    assert not list((store_copy.root / ".tmp").iterdir())


def test_read_only_store_is_a_clear_error(store_copy, monkeypatch):
    """EROFS at the final rename (tests run as root, so permissions cannot simulate it)."""
    import errno

    current = store_copy.current_version()

    def read_only(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "rename", read_only)
    with pytest.raises(StoreError, match="Read-only file system; nothing was changed"):
        store_copy.save(store_copy.load(with_pipeline=True), {"profile": "fast", "metrics": {}})
    assert store_copy.current_version() == current
    assert not list((store_copy.root / ".tmp").iterdir())


def _train_into(args):
    root, data, seed = args
    return train(ModelStore(root), data_paths=[data], cv_folds=2, seed=seed).version


def test_concurrent_trains_never_corrupt_the_store(tmp_path, small_data):
    root = tmp_path / "store"
    with mp.get_context("fork").Pool(3) as pool:
        versions = pool.map(_train_into, [(root, small_data, s) for s in (1, 2, 1)])
    store = ModelStore(root)
    assert len(set(versions)) == 3
    assert sorted(r["version"] for r in store.versions()) == sorted(versions)
    assert store.current_version() in versions
    for v in versions:
        assert store.load(v).version == v
    assert (root / CURRENT).read_text().strip() in versions


def test_save_sweeps_what_killed_writers_left_long_ago(store_copy):
    """A temp version dir or CURRENT file older than a day is removed by the next save; a young one
    (a save in progress elsewhere) is left alone."""
    import time

    from model.store import STALE_TMP_SECONDS

    tmp_root = store_copy.root / ".tmp"
    tmp_root.mkdir(exist_ok=True)
    old_dir, young_dir = tmp_root / "old-version", tmp_root / "young-version"
    old_cur, young_cur = store_copy.root / f".{CURRENT}.old", store_copy.root / f".{CURRENT}.young"
    for d in (old_dir, young_dir):
        d.mkdir()
        (d / "model.joblib").write_bytes(b"half")
    for f in (old_cur, young_cur):
        f.write_text("20990101-000000-deadbeef\n")
    long_ago = time.time() - STALE_TMP_SECONDS - 60
    for p in (old_dir, old_cur):
        os.utime(p, (long_ago, long_ago))
    store_copy.save(store_copy.load(with_pipeline=True), {"profile": "fast", "metrics": {}})
    assert not old_dir.exists() and not old_cur.exists()
    assert young_dir.exists() and young_cur.exists()


def test_installed_versions_read_as_importlib_metadata_reads_them():
    from importlib.metadata import version

    from model.store import LIBRARIES, _installed_version

    for dist in LIBRARIES:
        assert _installed_version(dist) == version(dist)
    assert _installed_version("no-such-distribution-here") == "absent"
