"""The taxonomy: which labels exist, read from one JSON data file (the 14 defaults or a user's own)."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from .errors import DataError, Problem

DEFAULT_TAXONOMY = "taxonomy.json"
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass(frozen=True)
class Label:
    """One category: a stable id, a display name and what it covers."""

    id: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class Taxonomy:
    """An ordered, duplicate-free list of labels; the order fixes the model's output columns."""

    labels: tuple[Label, ...]

    @property
    def ids(self) -> list[str]:
        return [label.id for label in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def to_records(self) -> list[dict]:
        return [asdict(label) for label in self.labels]

    @classmethod
    def from_records(cls, records: object, source: str = "<taxonomy>") -> "Taxonomy":
        """Validate a list of {id, name, description?} objects; every problem is reported."""
        problems: list[Problem] = []
        if not isinstance(records, list) or not records:
            raise DataError([Problem(source, 0, "a taxonomy must be a non-empty JSON list of {id, name, description}")])
        labels, seen = [], set()
        for n, rec in enumerate(records, 1):
            if not isinstance(rec, dict):
                problems.append(Problem(source, 0, f"entry {n}: expected an object, got {type(rec).__name__}"))
                continue
            lid, name, desc = rec.get("id"), rec.get("name", rec.get("id")), rec.get("description", "")
            if not isinstance(lid, str) or not _ID.match(lid):
                problems.append(Problem(source, 0, f"entry {n}: 'id' must be 1-64 letters, digits, '_', '-' or '.'; got {lid!r}"))
                continue
            if lid in seen:
                problems.append(Problem(source, 0, f"entry {n}: duplicate id {lid!r}"))
                continue
            if not isinstance(name, str) or not isinstance(desc, str):
                problems.append(Problem(source, 0, f"entry {n}: 'name' and 'description' must be strings"))
                continue
            seen.add(lid)
            labels.append(Label(lid, name, desc))
        if problems:
            raise DataError(problems)
        return cls(tuple(labels))


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Read a taxonomy file; with no path, the bundled 14 crimetag labels."""
    if path is None:
        text = resources.files("model").joinpath(DEFAULT_TAXONOMY).read_text(encoding="utf-8")
        return Taxonomy.from_records(json.loads(text), source=DEFAULT_TAXONOMY)
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError([Problem(source, 0, f"cannot read taxonomy: {exc.strerror or exc}")]) from None
    try:
        records = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError([Problem(source, 0, "not valid UTF-8")]) from None
    except json.JSONDecodeError as exc:
        raise DataError([Problem(source, exc.lineno, f"not valid JSON: {exc.msg}")]) from None
    return Taxonomy.from_records(records, source=source)
