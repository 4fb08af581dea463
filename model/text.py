"""The one place for text normalisation, tokenisation (with offsets, for explanations) and input checks.

Both the training pipeline and the fast scoring path call these functions, so a text is always
seen the same way; the CLI and the service both call `check_text` for their limits.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterator

from .errors import InvalidInput

_TOKEN = re.compile(r"\w+")
# Character n-grams are taken from the first letters of a token only: a 100k-character "word"
# must not cost 400k n-grams, and nothing past this length carries meaning.
MAX_TOKEN_CHARS = 40
CHAR_MIN, CHAR_MAX = 2, 5


@dataclass(frozen=True)
class Limits:
    """Input limits shared by the CLI and the service (the service's are configurable)."""

    max_chars: int = 20_000
    max_texts: int = 256
    max_body_bytes: int = 4 * 1024 * 1024


def normalise_token(token: str) -> str:
    """Fold a token to its feature form: compatibility-normalised and case-folded."""
    if token.isascii():
        return token.lower()
    return unicodedata.normalize("NFKC", token).casefold()


def tokens_with_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """Yield (start, end, feature form) for each word of `text`; spans index the original text."""
    for m in _TOKEN.finditer(text):
        yield m.start(), m.end(), normalise_token(m.group())


def tokens(text: str) -> list[str]:
    """The feature forms of the words of `text`, in order (an ASCII text is lowered in one call)."""
    if text.isascii():
        return _TOKEN.findall(text.lower())
    return [normalise_token(t) for t in _TOKEN.findall(text)]


def word_ngrams(text: str) -> list[str]:
    """Word unigrams and bigrams: the analyzer of the word TF-IDF block."""
    toks = tokens(text)
    return toks + [f"{a} {b}" for a, b in zip(toks, toks[1:])]


def token_char_ngrams(token: str) -> list[str]:
    """Character 2- to 5-grams of one token padded with spaces (as scikit-learn's char_wb)."""
    padded = f" {token[:MAX_TOKEN_CHARS]} "
    size = len(padded)
    return [padded[i : i + n] for n in range(CHAR_MIN, CHAR_MAX + 1) for i in range(size - n + 1)]


def char_ngrams(text: str) -> list[str]:
    """Character n-grams within word boundaries: the analyzer of the character TF-IDF block."""
    out: list[str] = []
    for tok in tokens(text):
        out.extend(token_char_ngrams(tok))
    return out


def check_text(value: object, limits: Limits = Limits(), *, where: str = "text") -> str:
    """Return `value` if it is a scorable text, else raise InvalidInput naming `where`."""
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be a string, got {type(value).__name__}", code="invalid_type")
    if not value.strip():
        raise InvalidInput(f"{where} is empty", code="empty_text")
    if len(value) > limits.max_chars:
        raise InvalidInput(
            f"{where} has {len(value)} characters; the limit is {limits.max_chars}", code="text_too_long"
        )
    return value
