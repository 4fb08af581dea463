"""Fit a model: features, cross-validated calibration and thresholds, the final classifier, metadata."""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.model_selection import KFold

from model.errors import DataError, InvalidInput, Problem
from model.calibration import apply_platt, best_thresholds, calibration_report, fit_platt
from model.labels import Taxonomy, load_taxonomy
from model.pipeline import DEFAULT_PARAMS, build_pipeline
from model.store import ModelStore
from model.tagger import Tagger

from .data import Dataset, read_labelled
from .evaluate import indicator, metrics

Progress = Callable[[str], None] | None


def bundled_corpus() -> list[Path]:
    """The JSONL files of the bundled corpus (package data), in a stable order."""
    root = resources.files("training") / "corpus"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".jsonl"))


@dataclass
class FitResult:
    tagger: Tagger
    report: dict


C_GRID = (0.03, 0.1, 0.3, 1.0)


def _oof_decision(clf, X, y, folds: int, seed: int, say, label: str) -> np.ndarray:
    """Out-of-fold decision values of `clf` under shuffled k-fold cross-validation."""
    oof = np.zeros(y.shape, dtype=float)
    for k, (tr, te) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(X), 1):
        say(f"cross-validation{label}: fold {k}/{folds}")
        oof[te] = clone(clf).fit(X[tr], y[tr]).decision_function(X[te])
    return oof


def _score(oof: np.ndarray, y: np.ndarray, ids: list[str]):
    """Calibrate and threshold out-of-fold scores; return (macro-F1, calibration, thresholds, proba)."""
    calibration = fit_platt(oof, y)
    proba = apply_platt(oof, calibration)
    thresholds = best_thresholds(proba, y)
    return metrics(y, proba >= thresholds, ids)["macro_f1"], calibration, thresholds, proba


def fit(data: Dataset, taxonomy: Taxonomy, *, seed: int = 0, cv_folds: int = 5, params: dict | None = None,
        n_jobs: int | None = None, embedder=None, embedding_path: str | None = None,
        progress: Progress = None) -> FitResult:
    """Fit features once, cross-validate the classifier for C, calibration and thresholds, refit on all.

    The TF-IDF vocabulary is fitted on all training texts (unsupervised; labels are never seen
    outside their fold). With `C` "auto" (the default) each C of `C_GRID` is cross-validated and
    the best out-of-fold macro-F1 wins: a force's noisy records want more regularisation than
    our clean corpus. The winner's out-of-fold scores give the Platt calibration, the per-label
    thresholds and the reported figures. With an `embedder` (the accurate profile) its sentence
    vectors are appended to the TF-IDF columns. Per-label fits run in `n_jobs` processes (default: 2);
    not threads, because liblinear's random generator is process-global and threads would make
    the result depend on scheduling.
    """
    say = progress or (lambda _msg: None)
    ids = taxonomy.ids
    y = indicator(data.labels, ids)
    p = {**DEFAULT_PARAMS, **(params or {})}
    grid = C_GRID if p["C"] == "auto" else (float(p["C"]),)
    jobs = n_jobs or min(2, os.cpu_count() or 1)
    t0 = time.perf_counter()
    say(f"features: fitting TF-IDF on {len(data)} texts")
    pipe = build_pipeline(seed=seed, params={**p, "C": grid[0]}, n_jobs=jobs)
    folds = max(2, min(cv_folds, len(data)))
    files = ", ".join(sorted({s.rsplit(":", 1)[0] for s in data.sources}))
    if len(data) < 2 * folds:
        raise DataError([Problem(files, 0, f"{len(data)} valid row(s): too few to cross-validate ({2 * folds} needed)")])
    try:
        X = pipe.named_steps["features"].fit_transform(data.texts)
    except ValueError:  # scikit-learn: empty vocabulary, or min_df above the number of texts
        raise DataError([Problem(files, 0, "no words to learn from: too few texts share a word")]) from None
    timings = {"features_s": time.perf_counter() - t0}
    embedding = None
    if embedder is not None:
        say(f"embedding {len(data)} texts")
        t0 = time.perf_counter()
        embedding = {"identity": embedder.identity(), "path": embedding_path, "scale": float(p["embedding_scale"])}
        X = sp.hstack([X, sp.csr_matrix(embedder.embed(data.texts) * embedding["scale"])], format="csr")
        timings["embedding_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    results = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn.multiclass")
        warnings.filterwarnings("ignore", message="Liblinear failed to converge")
        for C in grid:
            clf = pipe.named_steps["clf"].set_params(estimator__C=C)
            oof = _oof_decision(clf, X, y, folds, seed, say, f" (C={C:g})" if len(grid) > 1 else "")
            results[C] = (_score(oof, y, ids), oof)
        best = max(grid, key=lambda c: (results[c][0][0], -c))
        timings["cv_s"] = time.perf_counter() - t1
        say(f"fitting the final classifier on all data (C={best:g})")
        t2 = time.perf_counter()
        clf = pipe.named_steps["clf"].set_params(estimator__C=best)
        clf.fit(X, y)
        timings["final_fit_s"] = time.perf_counter() - t2
    (_, calibration, thresholds, proba), _oof = results[best]
    report = metrics(y, proba >= thresholds, ids)
    report["calibration"] = calibration_report(proba, y)
    report["evaluation"] = f"{folds}-fold cross-validation (out-of-fold scores; thresholds chosen on them)"
    report["model_selection"] = {"C": best, "macro_f1_by_C": {f"{c:g}": results[c][0][0] for c in grid}}
    report["timings"] = {k: round(v, 3) for k, v in timings.items()}
    tagger = Tagger(taxonomy=taxonomy, pipeline=pipe, calibration=calibration, thresholds=thresholds,
                    embedding=embedding, embedder=embedder)
    return FitResult(tagger, report)


@dataclass
class TrainResult:
    version: str
    metadata: dict
    report: dict
    dropped: int
    problems: list


def train(store: ModelStore, *, data_paths: list[str | Path] | None = None, taxonomy_path: str | Path | None = None,
          profile: str = "fast", embedding_model: str | None = None, seed: int = 0, cv_folds: int = 5,
          skip_invalid: bool = False, params: dict | None = None, make_current: bool = True,
          progress: Progress = None) -> TrainResult:
    """Read, validate, fit and save a new version (made current); nothing is written on error.

    `profile` "accurate" adds sentence embeddings from `embedding_model` (a directory; default:
    the all-MiniLM-L6-v2 of the `accurate` extra), loaded offline and verified first.
    """
    if profile not in ("fast", "accurate"):
        raise InvalidInput(f"unknown profile {profile!r}: use fast or accurate", code="unknown_profile")
    embedder = None
    if profile == "accurate":
        from model.embeddings import load_embedder

        embedder = load_embedder(embedding_model)
    taxonomy = load_taxonomy(taxonomy_path)
    paths = list(data_paths) if data_paths else bundled_corpus()
    data = read_labelled(paths, taxonomy.ids, skip_invalid=skip_invalid, progress=progress)
    result = fit(data, taxonomy, seed=seed, cv_folds=cv_folds, params=params, embedder=embedder,
                 embedding_path=str(Path(embedding_model).resolve()) if embedding_model else None,
                 progress=progress)
    metadata = {
        "profile": profile,
        "embedding": result.tagger.embedding,
        "seed": seed,
        "params": {**DEFAULT_PARAMS, **(params or {}), "C": result.report["model_selection"]["C"],
                   "cv_folds": cv_folds},
        "data": {"files": [str(p) if data_paths else Path(p).name for p in paths], "n": len(data),
                 "dropped": data.dropped, "sha256": data.digest},
        "taxonomy_source": str(taxonomy_path) if taxonomy_path else "bundled",
        "metrics": {k: v for k, v in result.report.items() if k != "timings"},
        "timings": result.report["timings"],
    }
    if progress:
        progress("saving the model")
    version = store.save(result.tagger, metadata, make_current=make_current)
    return TrainResult(version, store.read_metadata(version), result.report, data.dropped, data.problems)
