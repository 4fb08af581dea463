"""Training regimes: small data cross-validates a C grid on word and character n-grams, large data
holds out 20% and uses word n-grams; either can be forced."""
from __future__ import annotations

import pytest

from model.errors import InvalidInput
from training.fit import LARGE_DATA_ROWS, resolve_regime


@pytest.mark.parametrize("rows, params, expected", [
    (LARGE_DATA_ROWS - 1, {}, ("small", "word+char", None)),
    (LARGE_DATA_ROWS, {}, ("large", "word", 0.1)),
    (500, {"regime": "large"}, ("large", "word", 0.1)),
    (10 ** 6, {"regime": "small"}, ("small", "word+char", None)),
    (10 ** 6, {"features": "word+char", "C": 0.3}, ("large", "word+char", 0.3)),
    (100, {"features": "word", "C": "1"}, ("small", "word", 1.0)),
])
def test_resolve_regime(rows, params, expected):
    assert resolve_regime(rows, params) == expected


def test_unknown_regime_is_a_clear_error():
    with pytest.raises(InvalidInput, match="unknown regime 'huge'"):
        resolve_regime(10, {"regime": "huge"})


def test_large_regime_model_records_how_it_was_made(word_store, trained_store):
    large = word_store.read_metadata(word_store.current_version())
    assert large["params"]["regime"] == "large" and large["params"]["features"] == "word"
    assert large["metrics"]["evaluation"].startswith("20% random holdout")
    assert set(large["metrics"]["model_selection"]["macro_f1_by_C"]) == {"0.1"}
    small = trained_store.read_metadata(trained_store.current_version())
    assert small["params"]["regime"] == "small" and small["params"]["features"] == "word+char"
    assert small["metrics"]["evaluation"].startswith("3-fold cross-validation")
    assert len(small["metrics"]["model_selection"]["macro_f1_by_C"]) == 4


def test_large_regime_is_not_much_worse_on_the_corpus_slice(word_store, trained_store):
    """Word n-grams on 1,000 texts lose something, but not the plot: the holdout macro-F1 stays close."""
    large = word_store.read_metadata(word_store.current_version())["metrics"]["macro_f1"]
    small = trained_store.read_metadata(trained_store.current_version())["metrics"]["macro_f1"]
    assert large > 0.5 and large > small - 0.15
