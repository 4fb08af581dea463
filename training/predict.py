"""Stream texts from a binary file (stdin) through a tagger in batches, keeping input order."""
from __future__ import annotations

from typing import BinaryIO, Iterator

from model.errors import InvalidInput
from model.tagger import Tagger
from model.text import check_text


def stream_lines(fh: BinaryIO, tagger: Tagger, *, batch_size: int = 512, explain: bool = False
                 ) -> Iterator[tuple[str, dict]]:
    """Yield ("result"|"error", obj) per input line in order, and ("flush", None) after each batch.

    Lines are scored a batch at a time, so output starts before input ends and memory stays
    bounded by the batch size. A line that cannot be scored yields an error object in its place.
    """
    batch: list[tuple[int, str | None, dict | None]] = []

    def run():
        texts = [t for _, t, _ in batch if t is not None]
        results = iter(tagger.predict(texts, explain=explain))
        for _line, text, err in batch:
            yield ("error", err) if text is None else ("result", next(results))
        yield "flush", None

    for line_no, raw in enumerate(fh, 1):
        raw = raw.rstrip(b"\r\n")
        try:
            text = check_text(raw.decode("utf-8"), where=f"line {line_no}")
            batch.append((line_no, text, None))
        except UnicodeDecodeError:
            batch.append((line_no, None, _error(line_no, "invalid_encoding", f"line {line_no} is not valid UTF-8")))
        except InvalidInput as exc:
            batch.append((line_no, None, _error(line_no, exc.code, exc.message)))
        if len(batch) >= batch_size:
            yield from run()
            batch = []
    if batch:
        yield from run()


def _error(line: int, code: str, message: str) -> dict:
    return {"line": line, "error": {"code": code, "message": message}}
