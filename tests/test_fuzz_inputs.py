"""Property-based tests of the two doors user input comes through: data files and the HTTP API.

- `read_labelled` on arbitrary bytes, written as .jsonl and as .csv, returns a Dataset or raises
  DataError: never another exception (which the CLI would show as a traceback).
- The predict and explain endpoints, given arbitrary unicode (control characters, NUL, lone
  surrogates sent as JSON \\ud800 escapes, right-to-left marks, emoji, whitespace only, one
  100k-character token), answer 200 or a 4xx JSON error: never a 5xx.
Examples are bounded and derandomised so `make test` is repeatable.
"""
from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from model.errors import DataError, Problem
from model.labels import load_taxonomy
from service import create_app
from training.data import Dataset, read_labelled

IDS = load_taxonomy().ids
BOUNDED = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.data_too_large])


# -- data readers ---------------------------------------------------------------------------------
def read(tmp_path, raw: bytes, suffix: str):
    """read_labelled on `raw` written as data<suffix>: a Dataset, or the DataError it raised."""
    path = tmp_path / f"data{suffix}"
    path.write_bytes(raw)
    try:
        return read_labelled([path], IDS)
    except DataError as exc:
        return exc


def assert_dataset_or_data_error(result, suffix: str) -> None:
    if isinstance(result, DataError):
        assert result.problems and all(isinstance(p, Problem) for p in result.problems)
        assert all(p.file.endswith(f"data{suffix}") or p.line == 0 for p in result.problems)
        assert result.message.strip()
        return
    assert isinstance(result, Dataset) and len(result) > 0
    for text, labels in zip(result.texts, result.labels):
        assert isinstance(text, str) and text.strip()
        assert set(labels) <= set(IDS) and len(set(labels)) == len(labels)


# Pieces that make the parsers take their rarer paths: quoting, BOM, NUL, CR, bad UTF-8, JSON
# nested past the recursion limit and integers past Python's 4300-digit conversion limit.
JSONL_PIECES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"{", b"}", b"[", b"]", b'"', b"\\", b",", b":", b"\n", b"\r\n", b"\x00", b"\xef\xbb\xbf",
                     b"\xff", b"\xed\xa0\x80", b'"text"', b'"labels"', b"null", b"1e999", b"-0", b"[]",
                     b'"\\ud800"']),
    # (hypothesis raises the recursion limit while it runs: nest far past any limit)
    st.sampled_from([b"[" * 100_000, b'{"text": "x", "labels": ' + b"[" * 100_000, b"9" * 4400,
                     b'{"text": "x", "labels": [], "n": ' + b"9" * 4400 + b"}"]),
    st.builds(lambda t, ls: json.dumps({"text": t, "labels": ls}).encode(),
              st.text(max_size=30), st.lists(st.sampled_from(IDS + ["", " x ", "nope"]), max_size=3)),
    st.builds(lambda obj: json.dumps(obj).encode(),
              st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                               st.sampled_from(["text", "labels", "x"]), inner, max_size=3), max_leaves=8)),
)
CSV_PIECES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"text,labels\n", b"labels,text\n", b"Text, LABELS\r\n", b",", b";", b'"', b'""', b"\n",
                     b"\r", b"\r\n", b"\x00", b"\xef\xbb\xbf", b"\xff", b"\xed\xa0\x80", b"[", b"{",
                     b"a" * 200] + [i.encode() for i in IDS]),
    st.text(max_size=20).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


@BOUNDED
@given(raw=st.binary(max_size=4000), suffix=st.sampled_from([".jsonl", ".csv"]))
def test_reader_on_arbitrary_bytes(tmp_path, raw, suffix):
    assert_dataset_or_data_error(read(tmp_path, raw, suffix), suffix)


@BOUNDED
@given(pieces=st.lists(JSONL_PIECES, max_size=30))
def test_reader_on_jsonl_like_bytes(tmp_path, pieces):
    assert_dataset_or_data_error(read(tmp_path, b"\n".join(pieces), ".jsonl"), ".jsonl")


@BOUNDED
@given(pieces=st.lists(CSV_PIECES, max_size=40), header=st.booleans())
def test_reader_on_csv_like_bytes(tmp_path, pieces, header):
    raw = (b"text,labels\n" if header else b"") + b"".join(pieces)
    assert_dataset_or_data_error(read(tmp_path, raw, ".csv"), ".csv")


# The two shapes the property tests above found; each is a bug until training/data.py catches it.
@pytest.mark.parametrize("name, line", [
    ("nested-past-recursion-limit", b"[" * 100_000),
    ("int-past-4300-digits", b'{"text": "a sentence", "labels": [], "n": ' + b"1" * 5000 + b"}"),
])
def test_jsonl_line_that_json_refuses_oddly_is_a_data_error(tmp_path, name, line):
    """json.loads raises RecursionError / plain ValueError (not JSONDecodeError) on these lines.

    training/data.py `_jsonl_rows` catches only json.JSONDecodeError, so the reader raises them
    through and `crimetag train --data` prints a traceback instead of `file:line: not valid JSON`.
    """
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "fine", "labels": []}\n' + line + b"\n")
    with pytest.raises(DataError) as err:
        read_labelled([path], IDS)
    assert err.value.problems[0].line == 2 and "not valid JSON" in err.value.message


# -- the HTTP API ---------------------------------------------------------------------------------
SPECIAL = ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\u200b", "\u200e", "\u200f", "\u202e", "\u2066", "\u2028",
           "\ufeff", "\ufffd", "\U0001f600", "\U0001f469\u200d\U0001f469\u200d\U0001f467", "\U0001f1ec\U0001f1e7",
           "\u0301", "\ufdfa", "\u0130", "\u01c5", "\u00df", "\uff21", "\u3000", "\t", "\r\n", " ",
           "knife", "ex-partner", "\u05e9\u05dc\u05d5\u05dd", "\u0645\u0631\u062d\u0628\u0627"]
SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
ANY_CHAR = st.one_of(st.characters(), SURROGATE, st.sampled_from([s for s in SPECIAL if len(s) == 1]))
TEXTS = st.one_of(
    st.text(ANY_CHAR, max_size=200),
    st.lists(st.sampled_from(SPECIAL) | SURROGATE | st.text(max_size=6), max_size=40).map("".join),
    st.text(st.sampled_from(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u2029\u202f\u3000"),
            min_size=1, max_size=50),
)
WHITESPACE_ONLY = " \t\n\r\x0b\x0c\u3000\u2028"


def post(client, path: str, body: dict, *, raw_utf8: bool = False):
    """POST `body` as JSON: \\u escapes (lone surrogates arrive as \\ud800), or raw UTF-8 bytes
    (lone surrogates then make the body invalid UTF-8)."""
    if raw_utf8:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    else:
        data = json.dumps(body, ensure_ascii=True)
    return client.post(path, data=data, content_type="application/json")


def assert_answer(resp, texts: list[str], explain: bool, raw_utf8: bool = False) -> None:
    """200 with well-formed results (evidence spans index the text), or a 4xx JSON error."""
    assert resp.status_code == 200 or 400 <= resp.status_code < 500, resp.status_code
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    if resp.status_code != 200:
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
        for t in texts:  # an error never echoes the request text
            if len(t.strip()) >= 12:
                assert t not in body["error"]["message"]
        return
    results = body["results"] if "results" in body else [body]
    assert len(results) == len(texts)
    for text, result in zip(texts, results):
        # What the server read: JSON joins an escaped high surrogate and the low one after it
        # into one astral character, so spans index that string, not the two lone halves (raw
        # bytes keep the halves apart: json.loads decodes bytes with surrogatepass).
        if not raw_utf8:
            text = json.loads(json.dumps(text))
        assert set(result["scores"]) == set(IDS)
        assert all(0.0 <= s <= 1.0 for s in result["scores"].values())
        scores = [e["score"] for e in result["labels"]]
        assert scores == sorted(scores, reverse=True)
        for entry in result["labels"]:
            if explain:
                for ev in entry["evidence"]:
                    assert 0 <= ev["start"] < ev["end"] <= len(text) and text[ev["start"]:ev["end"]] == ev["text"]
            else:
                assert "evidence" not in entry


@BOUNDED
@given(text=TEXTS, explain=st.booleans(), endpoint=st.sampled_from(["/v1/predict", "/v1/explain"]),
       raw_utf8=st.booleans())
@example(text="\ud800", explain=True, endpoint="/v1/predict", raw_utf8=False)
@example(text="\ud800", explain=True, endpoint="/v1/predict", raw_utf8=True)
@example(text="\x00", explain=True, endpoint="/v1/explain", raw_utf8=False)
@example(text=WHITESPACE_ONLY, explain=False, endpoint="/v1/predict", raw_utf8=False)
@example(text="\u202eefink a htiw\u202c \U0001f52a knife", explain=True, endpoint="/v1/explain", raw_utf8=True)
def test_single_text_is_answered_not_crashed(client, text, explain, endpoint, raw_utf8):
    resp = post(client, endpoint, {"text": text, "explain": explain}, raw_utf8=raw_utf8)
    assert_answer(resp, [text], explain or endpoint == "/v1/explain", raw_utf8)


@BOUNDED
@given(texts=st.lists(TEXTS, min_size=1, max_size=12), explain=st.booleans(), raw_utf8=st.booleans())
@example(texts=["000\U00018cd60\ud800\udc00"], explain=True, raw_utf8=False)  # halves that JSON joins
@example(texts=["000\ud800\udc000"], explain=True, raw_utf8=True)  # halves that raw bytes keep apart
def test_batch_is_answered_not_crashed(client, texts, explain, raw_utf8):
    resp = post(client, "/v1/predict", {"texts": texts, "explain": explain}, raw_utf8=raw_utf8)
    assert_answer(resp, texts, explain, raw_utf8)


@pytest.mark.parametrize("text, status, code", [
    ("\ud800", 200, None),                 # a lone surrogate escape is a (strange) string: scored
    ("\udfff\ud800 knife \ud83d", 200, None),
    ("\x00", 200, None),
    ("\u200f\u202e", 200, None),           # format characters are not whitespace
    (WHITESPACE_ONLY, 400, "empty_text"),
    ("", 400, "empty_text"),
    ("a" * 100_000, 413, "text_too_long"),  # over the default 20,000-character limit
])
def test_edge_texts(client, text, status, code):
    resp = post(client, "/v1/predict", {"text": text, "explain": True})
    assert resp.status_code == status
    if code:
        assert resp.get_json()["error"]["code"] == code
    else:
        assert_answer(resp, [text], True)


def test_lone_surrogate_as_raw_bytes_is_answered_like_its_escape(client):
    """The surrogate as raw bytes (ED A0 80) is not UTF-8, but json.loads(bytes) decodes with
    surrogatepass, so the service scores it exactly as the \\ud800 escape: 200 and the same result.
    (Other invalid UTF-8, such as FF, is 400 malformed_json: see test_service_privacy.)"""
    raw = post(client, "/v1/predict", {"text": "a \ud800 knife"}, raw_utf8=True)
    escaped = post(client, "/v1/predict", {"text": "a \ud800 knife"})
    assert raw.status_code == escaped.status_code == 200
    assert raw.get_json() == escaped.get_json()


@pytest.mark.parametrize("explain", [False, True])
def test_one_100k_character_token_is_scored_quickly(clean_env, trained_store, explain):
    """With the limits raised, one 100k-character token is scored (n-grams come from its first letters)."""
    app = create_app({"MODEL_DIR": str(trained_store.root), "MAX_CHARS": 200_000, "MAX_BODY_BYTES": 1 << 20})
    client = app.test_client()
    for token in ("a" * 100_000, "knife" * 20_000, "\u00e9" * 100_000):
        t0 = time.perf_counter()
        resp = post(client, "/v1/predict", {"texts": [token, f"x {token} y"], "explain": explain})
        assert time.perf_counter() - t0 < 5.0
        assert_answer(resp, [token, f"x {token} y"], explain)


# -- training on degenerate data ------------------------------------------------------------------
@pytest.mark.parametrize("rows", [
    pytest.param([{"text": "a knife was seen", "labels": ["weapons"]}], id="one-row"),
    pytest.param([{"text": "!!!", "labels": ["weapons"]}, {"text": "???", "labels": []}, {"text": "...", "labels": []}],
                 id="no-word-in-any-text"),
])
def test_training_on_data_with_nothing_to_learn_is_a_clear_error(tmp_path, rows):
    """Valid rows that give no features: a CrimetagError (one line from the CLI), not sklearn's
    ValueError ("max_df corresponds to < documents than min_df" / "empty vocabulary") which
    `crimetag train` prints as a traceback. training/fit.py `fit` calls fit_transform unguarded."""
    from model.errors import CrimetagError
    from model.store import ModelStore
    from training.fit import train

    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(CrimetagError):
        train(ModelStore(tmp_path / "store"), data_paths=[path], cv_folds=2)
    assert not (tmp_path / "store" / "CURRENT").exists()


# -- the model store: whatever metadata.json holds --------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10)


@pytest.fixture
def damaged_store(store_copy):
    """A private store whose current version's metadata.json each example overwrites."""
    from model.store import META_FILE

    path = store_copy.versions_dir / store_copy.current_version() / META_FILE
    return store_copy, path, json.loads(path.read_text())


def assert_refused_cleanly(store) -> None:
    from model.errors import CrimetagError

    try:
        store.load()
    except CrimetagError:
        return
    pytest.fail("a damaged metadata.json loaded")  # (any other exception fails the test by itself)


@settings(BOUNDED, max_examples=60)
@given(raw=st.binary(max_size=300) | st.sampled_from([b"[" * 100_000, b"{}", b"null", b"9" * 5000]))
def test_store_refuses_any_metadata_bytes(damaged_store, raw):
    """Bytes as metadata.json: a CrimetagError (IntegrityError), never another exception.

    Fails today on deep nesting: model/store.py `read_metadata` catches ValueError around
    json.loads, but nesting past the recursion limit raises RecursionError, which reaches
    `crimetag predict` as a traceback and POST /v1/admin/reload as a 500 instead of a 409."""
    store, path, _meta = damaged_store
    path.write_bytes(raw)
    assert_refused_cleanly(store)


@settings(BOUNDED, max_examples=60)
@given(key=st.sampled_from(["libraries", "model_sha256", "format"]), value=JSON_VALUES)
def test_store_refuses_metadata_with_a_mistyped_field(damaged_store, key, value):
    """The real metadata with a field the loader checks replaced by any other JSON value: a
    CrimetagError, never another exception.

    Fails today on e.g. {"libraries": "x"}: model/store.py `read_metadata` calls
    `(meta.get("libraries") or {}).get(...)`, an AttributeError for a non-object."""
    store, path, meta = damaged_store
    assume(value != meta[key])
    path.write_text(json.dumps({**meta, key: value}))
    assert_refused_cleanly(store)


# -- the command line's store option --------------------------------------------------------------
@pytest.mark.parametrize("args", [["serve", "--port", "9"], ["predict", "some text"], ["models"]],
                         ids=["serve", "predict", "models"])
def test_store_path_that_is_a_file_is_one_crimetag_error_line(tmp_path, args):
    """README: every error is exit 1 and one `crimetag: error: ...` line. A --model-dir (or
    CRIMETAG_MODEL_DIR) that is a file gets click's usage error instead (exit 2, "Usage: ...",
    "Error: Invalid value for '--model-dir'"): training/cli.py `model_dir_option` declares
    `click.Path(file_okay=False)`, so click rejects it before the store can say what is wrong.
    (Nothing is served: the option is refused before `serve` runs.)"""
    from click.testing import CliRunner

    from training.cli import main

    a_file = tmp_path / "store"
    a_file.write_text("not a directory")
    res = CliRunner().invoke(main, [*args, "--model-dir", str(a_file)], env={"CRIMETAG_MODEL_DIR": None})
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith("crimetag: error: ") and "Traceback" not in res.stderr
