"""Normalisation, tokenisation with spans, input checks: properties over arbitrary unicode."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.errors import InvalidInput
from model.text import (MAX_TOKEN_CHARS, Limits, char_ngrams, check_text, token_char_ngrams, tokens,
                        tokens_with_spans, word_ngrams)

NASTY = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(blacklist_categories=())),  # includes surrogates and controls
    st.sampled_from(["\x00", "\u202eevil\u202c", "😀" * 50, "a" * 100_000, " \t\n\r ", "\ud800x",
                     "ＦＵＬＬ", "İstanbul", "ß"]),
)


def test_tokens_fold_case_and_width():
    assert tokens("RP states ＫＮＩＦＥ, knife!") == ["rp", "states", "knife", "knife"]
    assert word_ngrams("Zombie knife seized") == ["zombie", "knife", "seized", "zombie knife", "knife seized"]


def test_char_ngrams_are_padded_like_char_wb():
    assert token_char_ngrams("ab") == [" a", "ab", "b ", " ab", "ab ", " ab "]


@settings(max_examples=300, deadline=None)
@given(NASTY)
def test_spans_index_the_original_text(text):
    for start, end, norm in tokens_with_spans(text):
        assert 0 <= start < end <= len(text)
        assert text[start:end].isidentifier() or any(ch.isalnum() or ch == "_" for ch in text[start:end])
        assert norm


@settings(max_examples=300, deadline=None)
@given(NASTY)
def test_char_ngrams_bounded_per_token(text):
    grams = char_ngrams(text)
    assert len(grams) <= len(tokens(text)) * 4 * (MAX_TOKEN_CHARS + 2)


@settings(max_examples=300, deadline=None)
@given(st.one_of(NASTY, st.integers(), st.none(), st.lists(st.text())))
def test_check_text_returns_or_raises_invalid_input(value):
    try:
        assert check_text(value, Limits(max_chars=1000)) is value
    except InvalidInput as exc:
        assert exc.code in {"invalid_type", "empty_text", "text_too_long"}


@pytest.mark.parametrize("value, code", [(None, "invalid_type"), (3, "invalid_type"), ("", "empty_text"),
                                         ("  \n\t", "empty_text"), ("x" * 11, "text_too_long")])
def test_check_text_codes(value, code):
    with pytest.raises(InvalidInput) as err:
        check_text(value, Limits(max_chars=10))
    assert err.value.code == code
