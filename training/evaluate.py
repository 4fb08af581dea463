"""Multi-label evaluation: per-label and averaged figures, printed as a table or returned as data."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from model.tagger import Tagger

from .data import read_labelled


def indicator(labels: list[list[str]], ids: list[str]) -> np.ndarray:
    """Label lists as an (n, n_labels) 0/1 matrix in taxonomy order."""
    col = {lid: j for j, lid in enumerate(ids)}
    y = np.zeros((len(labels), len(ids)), dtype=np.int8)
    for i, ls in enumerate(labels):
        for lab in ls:
            y[i, col[lab]] = 1
    return y


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def metrics(y_true: np.ndarray, y_pred: np.ndarray, ids: list[str]) -> dict:
    """Per-label precision/recall/F1/support; micro F1; macro F1 over labels present in y_true;
    the example-based (Jaccard, or "Hamming score") average, with an empty truth matched by an
    empty prediction counting 1; label accuracy (1 - Hamming loss); exact-match accuracy."""
    yt, yp = y_true.astype(bool), y_pred.astype(bool)
    tp, fp, fn = (yt & yp).sum(0), (~yt & yp).sum(0), (yt & ~yp).sum(0)
    per_label = {}
    for j, lid in enumerate(ids):
        p, r, f = _prf(tp[j], fp[j], fn[j])
        per_label[lid] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
                          "support": int(yt[:, j].sum()), "predicted": int(yp[:, j].sum())}
    mp, mr, mf = _prf(tp.sum(), fp.sum(), fn.sum())
    present = [j for j in range(len(ids)) if yt[:, j].any()]
    inter, union = (yt & yp).sum(1), (yt | yp).sum(1)
    jacc = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return {
        "n": int(len(yt)),
        "micro_precision": round(mp, 4), "micro_recall": round(mr, 4), "micro_f1": round(mf, 4),
        "macro_f1": round(float(np.mean([per_label[ids[j]]["f1"] for j in present])) if present else 0.0, 4),
        "example_jaccard": round(float(jacc.mean()), 4) if len(yt) else 0.0,
        "label_accuracy": round(float((yt == yp).mean()), 4) if len(yt) else 0.0,
        "exact_match": round(float((yt == yp).all(1).mean()), 4) if len(yt) else 0.0,
        "per_label": per_label,
    }


def evaluate(tagger: Tagger, paths: list[str | Path], *, batch_size: int = 1024) -> dict:
    """Score `tagger` on labelled files (labels must be in the model's taxonomy)."""
    ids = tagger.taxonomy.ids
    data = read_labelled(paths, ids)
    preds = []
    for i in range(0, len(data), batch_size):
        P = tagger.scores(data.texts[i:i + batch_size])
        preds.append(P >= tagger.thresholds)
    y_pred = np.vstack(preds)
    out = metrics(indicator(data.labels, ids), y_pred, ids)
    out["model_version"] = tagger.version
    return out


def format_report(m: dict, title: str = "") -> str:
    """A fixed-width table of a metrics dict, for people (stdout)."""
    lines = [title] if title else []
    width = max([len(k) for k in m["per_label"]] + [10])
    lines.append(f"{'label':<{width}}  precision  recall     f1  support")
    for lid, r in m["per_label"].items():
        lines.append(f"{lid:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}")
    lines.append(f"micro-F1 {m['micro_f1']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
                 f"example-based (Jaccard) {m['example_jaccard']:.3f}  label accuracy {m['label_accuracy']:.3f}  "
                 f"exact match {m['exact_match']:.3f}  n={m['n']}")
    return "\n".join(lines)
