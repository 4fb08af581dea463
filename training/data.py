"""Read labelled JSONL and CSV files (SPEC section 2), reporting every problem with file and line."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from model.errors import DataError, Problem

MAX_PROBLEMS_KEPT = 1000
_LABEL_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
csv.field_size_limit(64 * 1024 * 1024)


@dataclass
class Dataset:
    """Texts with their label lists, plus what was dropped and a digest of the content."""

    texts: list[str] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def digest(self) -> str:
        """SHA-256 of the rows (text and sorted labels) in order: which data trained a model."""
        h = hashlib.sha256()
        for t, ls in zip(self.texts, self.labels):
            h.update(json.dumps([t, sorted(ls)], ensure_ascii=True).encode())
            h.update(b"\n")
        return h.hexdigest()


class _Row(Exception):
    """A problem with one row (internal: becomes a Problem with the file and line)."""


def _check_text(value: object) -> str:
    if value is None:
        raise _Row("missing 'text'")
    if not isinstance(value, str):
        raise _Row(f"'text' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _Row("empty text")
    return value


def _check_labels(values: Iterable, known: set[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if not isinstance(v, str):
            raise _Row(f"each label must be a string, got {type(v).__name__}")
        v = v.strip()
        if not v:
            continue
        if v not in known:
            # Name the label only when it looks like an id: a misplaced text must not be echoed.
            shown = repr(v) if _LABEL_ID.match(v) else "(not a label id: is there text in the labels column?)"
            raise _Row(f"unknown label {shown} (not in the taxonomy)")
        if v not in out:
            out.append(v)
    return out


def _jsonl_rows(raw: bytes, known: set[str]) -> Iterator[tuple[int, object]]:
    """Yield (line, (text, labels)) or (line, error message) for each non-blank line."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for n, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            s = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield n, f"not valid UTF-8 (byte {exc.start + 1} of the line)"
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as exc:
            yield n, f"not valid JSON: {exc.msg} (column {exc.colno})"
            continue
        except (ValueError, RecursionError):  # a number too long to convert, or nesting too deep
            yield n, "not valid JSON: a value is too long or nested too deeply"
            continue
        try:
            if not isinstance(obj, dict):
                raise _Row(f"expected a JSON object, got {type(obj).__name__}")
            text = _check_text(obj.get("text"))
            if "labels" not in obj:
                raise _Row("missing 'labels' (use [] for none)")
            labels = obj["labels"]
            if not isinstance(labels, list):
                raise _Row(f"'labels' must be a list, got {type(labels).__name__}")
            yield n, (text, _check_labels(labels, known))
        except _Row as exc:
            yield n, str(exc)


def _csv_rows(raw: bytes, known: set[str], source: str) -> Iterator[tuple[int, object]]:
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError([Problem(source, 1, "empty file: expected a header row with 'text' and 'labels'")]) from None
    except csv.Error as exc:
        raise DataError([Problem(source, 1, f"not valid CSV: {exc}")]) from None
    names = [h.strip().lower() for h in header]
    missing = [c for c in ("text", "labels") if c not in names]
    if missing:
        # The header is not echoed: in a file without one, the first row is somebody's text.
        raise DataError([Problem(source, 1, f"missing column {', '.join(repr(m) for m in missing)} "
                                            f"(the first line must be a header naming 'text' and 'labels')")])
    ti, li = names.index("text"), names.index("labels")
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, f"not valid CSV: {exc}"
            return
        line, start = start, reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        try:
            if any("\udc80" <= ch <= "\udcff" for cell in row for ch in cell):
                raise _Row("not valid UTF-8")
            if len(row) <= max(ti, li):
                raise _Row(f"row has {len(row)} field(s); the header has {len(header)}")
            cell = row[li].strip()
            if cell.startswith("[") or cell.startswith("{"):
                raise _Row("'labels' must be label ids separated by ';', not a JSON value")
            yield line, (_check_text(row[ti]), _check_labels(cell.split(";"), known))
        except _Row as exc:
            yield line, str(exc)


def file_format(path: Path, head: bytes) -> str:
    """'csv' or 'jsonl', by extension, else by the first non-blank byte."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def read_labelled(paths: Iterable[str | Path], label_ids: Iterable[str], *, skip_invalid: bool = False,
                  progress=None) -> Dataset:
    """Read one or more labelled files; raise DataError listing every bad row unless skipping them.

    With `skip_invalid`, bad rows are dropped and counted (`Dataset.dropped`, `Dataset.problems`);
    file-level problems (unreadable file, missing column) always raise.
    """
    known = set(label_ids)
    data = Dataset()
    total_problems = 0
    for p in paths:
        path = Path(p)
        source = str(p)
        if progress:
            progress(f"reading {source}")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError([Problem(source, 0, f"cannot read file: {exc.strerror or exc}")]) from None
        fmt = file_format(path, raw[:64])
        rows = _csv_rows(raw, known, source) if fmt == "csv" else _jsonl_rows(raw, known)
        for line, item in rows:
            if isinstance(item, str):
                total_problems += 1
                if len(data.problems) < MAX_PROBLEMS_KEPT:
                    data.problems.append(Problem(source, line, item))
                continue
            data.texts.append(item[0])
            data.labels.append(item[1])
            data.sources.append(f"{source}:{line}")
    if total_problems and not skip_invalid:
        raise DataError(data.problems, total=total_problems,
                        hint="fix these rows, or pass --skip-invalid to train on the valid ones")
    data.dropped = total_problems
    if not data.texts:
        raise DataError([Problem(", ".join(map(str, paths)) or "<no files>", 0, "no valid labelled rows")])
    return data
