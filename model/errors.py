"""Domain errors: raised by the core, translated once by the CLI and once by the service."""
from __future__ import annotations

from dataclasses import dataclass


class CrimetagError(Exception):
    """Base of every error crimetag raises on purpose; `code` is stable, the message readable."""

    code = "crimetag_error"

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class InvalidInput(CrimetagError):
    """A text or request that cannot be scored as given (empty, too long, wrong type)."""

    code = "invalid_input"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        if code:
            self.code = code


@dataclass(frozen=True)
class Problem:
    """One problem in a data file, located by file and line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class DataError(CrimetagError):
    """A labelled-data or taxonomy file with problems; carries every problem found (up to a cap)."""

    code = "data_error"
    shown = 20

    def __init__(self, problems: list[Problem], *, total: int | None = None, hint: str | None = None):
        self.problems = list(problems)
        self.total = total if total is not None else len(self.problems)
        lines = [str(p) for p in self.problems[: self.shown]]
        more = self.total - len(lines)
        if more > 0:
            lines.append(f"... and {more} more problem(s)")
        super().__init__("\n".join(lines), hint=hint)


class ModelNotFound(CrimetagError):
    """No model in the store, or no such version."""

    code = "model_not_found"


class IncompatibleModel(CrimetagError):
    """A stored model this installation cannot load (library versions, format)."""

    code = "incompatible_model"


class IntegrityError(CrimetagError):
    """A stored model whose digest or signature does not match: never unpickled."""

    code = "integrity_error"


class StoreError(CrimetagError):
    """The model store itself cannot be read or written (missing, read-only, disk full)."""

    code = "store_error"
