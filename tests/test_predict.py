"""The JSON lines of `crimetag predict`: the API's results, byte-formatted from the score matrix."""
from __future__ import annotations

import io
import json

import numpy as np

from model.labels import Taxonomy
from tests.conftest import corpus_slice
from training.predict import JsonLines, read_batches, stream_lines


def test_lines_parse_to_the_api_results(tagger, word_tagger):
    texts = [r["text"] for r in corpus_slice(step=20)]
    for t in (tagger, word_tagger):
        lines = JsonLines(t).render(texts)
        assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
        assert [json.loads(line) for line in lines] == t.predict(texts)


def test_every_score_has_six_decimals_including_certainty(tagger, monkeypatch):
    texts = ["one text", "another text", "a third"]
    P = np.array([[1.0] * 14, [0.0] * 14, [0.4999995] + [0.123456789] * 13])
    monkeypatch.setattr(tagger, "scores", lambda _texts: P)
    lines = [json.loads(line) for line in JsonLines(tagger).render(texts)]
    raw = JsonLines(tagger).render(texts)
    assert b": 1.000000" in raw[0] and b": 0.000000" in raw[1]
    assert set(lines[0]["scores"].values()) == {1.0} and len(lines[0]["labels"]) == 14
    assert set(lines[1]["scores"].values()) == {0.0} and lines[1]["labels"] == []
    first = tagger.taxonomy.ids[0]
    assert lines[2]["scores"][first] == 0.5  # half up, as Tagger.predict rounds
    assert set(list(lines[2]["scores"].values())[1:]) == {0.123457}


def test_any_valid_label_id_round_trips(tagger, monkeypatch):
    odd = ["a.b", "x-y-z", "9lives", "UPPER_case", *tagger.taxonomy.ids[4:]]
    monkeypatch.setattr(tagger, "taxonomy", Taxonomy.from_records([{"id": i, "name": i} for i in odd]))
    (line,) = JsonLines(tagger).render(["Caller reports her ex-partner is outside with a knife."])
    assert list(json.loads(line)["scores"]) == odd


def test_stream_keeps_order_and_puts_errors_in_place(tagger):
    fh = io.BytesIO(b"first text\n\nthird text\n\xff\xfe\nfifth\n")
    chunks = list(stream_lines(fh, tagger, batch_size=2))
    assert len(chunks) == 3  # batches of two lines
    lines = [json.loads(x) for chunk, _ in chunks for x in chunk.splitlines()]
    assert [("error" in x) for x in lines] == [False, True, False, True, False]
    assert lines[1]["error"]["code"] == "empty_text" and lines[3]["error"]["code"] == "invalid_encoding"
    assert [e["line"] for _, errs in chunks for e in errs] == [2, 4]


def test_batches_are_bounded(tagger):
    fh = io.BytesIO(b"".join(b"text %d\n" % i for i in range(10)))
    assert [len(b) for b in read_batches(fh, 4)] == [4, 4, 2]
