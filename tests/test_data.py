"""Data readers: a table of good and bad rows in both formats, every problem with file and line."""
from __future__ import annotations

import pytest

from model.errors import DataError
from training.data import read_labelled

IDS = ["a", "b", "c"]


def _jsonl(tmp_path, body: bytes, name="d.jsonl"):
    p = tmp_path / name
    p.write_bytes(body)
    return p


@pytest.mark.parametrize("line, labels", [
    (b'{"text": "hello there", "labels": ["a"]}', ["a"]),
    (b'{"text": "hello there", "labels": []}', []),
    (b'{"text": "x", "labels": ["a", "b", "a"], "id": 7, "source": "s"}', ["a", "b"]),
    (b'{"text": "caf\xc3\xa9 \xf0\x9f\x98\x80", "labels": [" c "]}', ["c"]),
])
def test_jsonl_good_rows(tmp_path, line, labels):
    data = read_labelled([_jsonl(tmp_path, line + b"\n")], IDS)
    assert data.labels == [labels]


@pytest.mark.parametrize("line, message", [
    (b'{"text": "hi", "labels": ["zzz"]}', "unknown label 'zzz'"),
    (b'{"text": "", "labels": []}', "empty text"),
    (b'{"text": "   \\t ", "labels": []}', "empty text"),
    (b'{"labels": ["a"]}', "missing 'text'"),
    (b'{"text": 5, "labels": []}', "'text' must be a string"),
    (b'{"text": "hi"}', "missing 'labels'"),
    (b'{"text": "hi", "labels": "a"}', "'labels' must be a list"),
    (b'{"text": "hi", "labels": [1]}', "each label must be a string"),
    (b'["hi", ["a"]]', "expected a JSON object"),
    (b'{"text": "hi", "labels": [}', "not valid JSON"),
    (b'{"text": "caf\xe9", "labels": []}', "not valid UTF-8"),
])
def test_jsonl_bad_rows_name_file_and_line(tmp_path, line, message):
    body = b'{"text": "fine", "labels": []}\n\n' + line + b"\n"
    path = _jsonl(tmp_path, body)
    with pytest.raises(DataError) as err:
        read_labelled([path], IDS)
    assert err.value.problems[0].line == 3
    assert f"{path}:3: " in err.value.message and message in err.value.message


@pytest.mark.parametrize("body, labels", [
    (b'text,labels\nhello,a;b\n', [["a", "b"]]),
    (b'\xef\xbb\xbftext,labels\nhello,\n', [[]]),
    (b'id,Labels,Text\n1,c,"multi\nline text"\n', [["c"]]),
    (b'text,labels\n"quoted, with comma", a ; b \n', [["a", "b"]]),
])
def test_csv_good_rows(tmp_path, body, labels):
    assert read_labelled([_jsonl(tmp_path, body, "d.csv")], IDS).labels == labels


@pytest.mark.parametrize("row, message", [
    (b'hi,zzz', "unknown label 'zzz'"),
    (b'"",a', "empty text"),
    (b'hi', "row has 1 field(s)"),
    (b'caf\xe9,a', "not valid UTF-8"),
    (b'hi,"[""a""]"', "separated by ';'"),
])
def test_csv_bad_rows(tmp_path, row, message):
    path = _jsonl(tmp_path, b"text,labels\n\"two\nlines\",a\n" + row + b"\n", "d.csv")
    with pytest.raises(DataError) as err:
        read_labelled([path], IDS)
    assert f"{path}:4: " in err.value.message and message in err.value.message


def test_csv_missing_column(tmp_path):
    path = _jsonl(tmp_path, b"body,labels\nhi,a\n", "d.csv")
    with pytest.raises(DataError, match=r"d.csv:1: missing column 'text'"):
        read_labelled([path], IDS)


def test_every_problem_reported_up_to_a_cap(tmp_path):
    body = b"".join(b'{"text": "t", "labels": ["nope"]}\n' for _ in range(50))
    with pytest.raises(DataError) as err:
        read_labelled([_jsonl(tmp_path, body)], IDS)
    assert err.value.total == 50
    assert err.value.message.count("unknown label") == DataError.shown
    assert "and 30 more" in err.value.message


def test_skip_invalid_keeps_valid_rows_and_counts_dropped(tmp_path):
    body = b'{"text": "ok", "labels": ["a"]}\n{"text": "", "labels": []}\n{"text": "ok2", "labels": ["x"]}\n'
    data = read_labelled([_jsonl(tmp_path, body)], IDS, skip_invalid=True)
    assert data.texts == ["ok"] and data.dropped == 2
    assert [p.line for p in data.problems] == [2, 3]


def test_missing_file_and_empty_data(tmp_path):
    with pytest.raises(DataError, match="cannot read file"):
        read_labelled([tmp_path / "absent.jsonl"], IDS)
    with pytest.raises(DataError, match="no valid labelled rows"):
        read_labelled([_jsonl(tmp_path, b"\n\n")], IDS)


def test_digest_depends_on_content_not_label_order(tmp_path):
    a = read_labelled([_jsonl(tmp_path, b'{"text": "x", "labels": ["a", "b"]}\n', "1.jsonl")], IDS)
    b = read_labelled([_jsonl(tmp_path, b'{"text": "x", "labels": ["b", "a"]}\n', "2.jsonl")], IDS)
    c = read_labelled([_jsonl(tmp_path, b'{"text": "y", "labels": ["b", "a"]}\n', "3.jsonl")], IDS)
    assert a.digest == b.digest != c.digest
