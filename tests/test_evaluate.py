"""Multi-label metrics on hand-checked examples."""
from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import format_report, indicator, metrics

IDS = ["a", "b", "c"]


def test_metrics_by_hand():
    y = indicator([["a"], ["a", "b"], [], ["c"]], IDS)
    p = indicator([["a"], ["a"], [], ["b"]], IDS)
    m = metrics(y, p, IDS)
    assert m["n"] == 4
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2, "predicted": 2}
    assert m["per_label"]["b"]["f1"] == 0.0 and m["per_label"]["c"]["recall"] == 0.0
    # micro: tp=2, fp=1, fn=2 -> P=2/3, R=1/2, F1=4/7
    assert m["micro_f1"] == pytest.approx(4 / 7, abs=1e-4)
    assert m["macro_f1"] == pytest.approx(1 / 3, abs=1e-4)
    # Jaccard per example: 1, 1/2, 1 (empty-empty), 0
    assert m["example_jaccard"] == pytest.approx(2.5 / 4, abs=1e-4)
    assert m["label_accuracy"] == pytest.approx(9 / 12, abs=1e-4)
    assert m["exact_match"] == pytest.approx(2 / 4)


def test_macro_ignores_labels_absent_from_truth():
    y = indicator([["a"], ["a"]], IDS)
    m = metrics(y, y.copy(), IDS)
    assert m["macro_f1"] == 1.0 and m["per_label"]["b"]["support"] == 0


def test_format_report_lists_every_label():
    y = indicator([["a"], ["b"]], IDS)
    text = format_report(metrics(y, y, IDS), title="t")
    assert all(lid in text for lid in IDS) and "macro-F1 1.000" in text


def test_indicator_rejects_unknown_label():
    with pytest.raises(KeyError):
        indicator([["zzz"]], IDS)


def test_perfect_and_empty_predictions():
    y = indicator([["a", "c"], ["b"]], IDS)
    assert metrics(y, np.zeros_like(y), IDS)["micro_f1"] == 0.0
    assert metrics(y, y, IDS)["exact_match"] == 1.0
