"""Stream texts from a binary file (stdin) through a tagger in batches, as JSON lines in input order."""
from __future__ import annotations

import json
from typing import BinaryIO, Iterator

import numpy as np

from model.errors import InvalidInput
from model.tagger import SCORE_DECIMALS, Tagger
from model.text import check_text

encode = json.JSONEncoder(ensure_ascii=False).encode
_UNIT = 10 ** SCORE_DECIMALS
_WIDTH = SCORE_DECIMALS + 2  # "0.040797", "1.000000": every score has the same width


class JsonLines:
    """API-shaped results as UTF-8 JSON lines, formatted straight from the probability matrix.

    Every line's "scores" object has the same layout, and every score is printed with exactly 6
    decimals, so a batch's scores are written as digits into copies of one byte template with
    array operations; Python only joins each line's few labels. This is several times cheaper
    than encoding a dict of floats per text, and the numbers parse to the same values as the API's.
    """

    def __init__(self, tagger: Tagger):
        self.tagger = tagger
        quoted = [encode(i).encode("utf-8") for i in tagger.taxonomy.ids]
        self._head = f'{{"model_version": {encode(tagger.version)}, "labels": ['.encode("utf-8")
        self._labels = [b'{"label": ' + q + b', "score": ' for q in quoted]
        template, starts = bytearray(b'], "scores": {'), []
        for i, q in enumerate(quoted):
            template += (b", " if i else b"") + q + b": "
            starts.append(len(template))
            template += b"0." + b"0" * SCORE_DECIMALS
        template += b"}}\n"
        self._template = np.frombuffer(bytes(template), dtype=np.uint8)
        self._starts = np.array(starts, dtype=np.int64)  # where each label's score begins

    def render(self, texts: list[str]) -> list[bytes]:
        """One JSON line (newline included) per text, in order."""
        pieces = self._pieces(texts)
        return [b"".join(pieces[k:k + 3]) for k in range(0, len(pieces), 3)]

    def render_joined(self, texts: list[str]) -> bytes:
        """The JSON lines of `texts` as one bytes object (no per-line copies)."""
        return b"".join(self._pieces(texts))

    def _pieces(self, texts: list[str]) -> list:
        """Three pieces per text (head, its labels, a view of its scores row) that join into its line."""
        if not texts:
            return []
        P = self.tagger.scores(texts)
        K = np.floor(P * _UNIT + 0.5).astype(np.int64)  # as Tagger.predict rounds
        n, width = len(texts), len(self._template)
        # Digits of every score: the integer part, then SCORE_DECIMALS places after the point.
        digits = np.empty(K.shape + (_WIDTH - 1,), dtype=np.int64)
        digits[..., 0] = K // _UNIT
        rest = K % _UNIT
        for place in range(SCORE_DECIMALS, 0, -1):
            rest, digits[..., place] = np.divmod(rest, 10)
        body = np.tile(self._template, (n, 1))
        at = self._starts[:, None] + np.array([0] + list(range(2, _WIDTH)))[None, :]  # skip the "."
        body[:, at] = (digits + ord("0")).astype(np.uint8)
        rows = body.tobytes()
        view = memoryview(rows)
        head, labels, starts = self._head, self._labels, self._starts.tolist()
        pieces: list = []
        for i, js in enumerate(self.tagger.ranked(P)):
            base = i * width
            listed = b", ".join(labels[j] + rows[base + starts[j]:base + starts[j] + _WIDTH] + b"}" for j in js)
            pieces += (head, listed, view[base:base + width])
        return pieces


Batch = list  # [(line number, text or None, error object or None), ...]


def read_batches(fh: BinaryIO, batch_size: int) -> Iterator[Batch]:
    """Lines of `fh` checked and grouped; a line that cannot be scored carries its error object."""
    batch: Batch = []
    for line_no, raw in enumerate(fh, 1):
        raw = raw.rstrip(b"\r\n")
        try:
            batch.append((line_no, check_text(raw.decode("utf-8"), where=f"line {line_no}"), None))
        except UnicodeDecodeError:
            batch.append((line_no, None, _error(line_no, "invalid_encoding", f"line {line_no} is not valid UTF-8")))
        except InvalidInput as exc:
            batch.append((line_no, None, _error(line_no, exc.code, exc.message)))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def render_lines(tagger: Tagger, texts: list[str], *, explain: bool = False, fmt: JsonLines | None = None) -> list[bytes]:
    """JSON lines for `texts`; with `explain`, through the API's result objects (evidence included)."""
    if explain:
        return [(encode(r) + "\n").encode("utf-8", "backslashreplace") for r in tagger.predict(texts, explain=True)]
    return (fmt or JsonLines(tagger)).render(texts)


def stream_lines(fh: BinaryIO, tagger: Tagger, *, batch_size: int = 512, explain: bool = False
                 ) -> Iterator[tuple[bytes, list[dict]]]:
    """Yield, per batch of input lines in order, its output (one JSON line per input line, an
    error object in place of a line that cannot be scored) and those error objects.

    Lines are scored a batch at a time, so each batch's output can be written as soon as it is
    scored, before input ends, and memory stays bounded by the batch size.
    """
    fmt = JsonLines(tagger)
    for batch in read_batches(fh, batch_size):
        errors = [err for _, text, err in batch if text is None]
        if not errors and not explain:  # the common case: the batch's lines in one piece
            yield fmt.render_joined([t for _, t, _ in batch]), errors
            continue
        results = iter(render_lines(tagger, [t for _, t, _ in batch if t is not None], explain=explain, fmt=fmt))
        yield b"".join((encode(err) + "\n").encode("utf-8") if text is None else next(results)
                       for _, text, err in batch), errors


def _error(line: int, code: str, message: str) -> dict:
    return {"line": line, "error": {"code": code, "message": message}}
