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
# Past this many rows a dataset is "large": word n-grams only, C fixed, a 20% holdout for
# calibration and thresholds instead of k-fold cross-validation of a C grid. Measured on GVA
# (bench/README.md): the same micro-F1 (0.731 against 0.732) in about 1/50th of the time.
LARGE_DATA_ROWS = 10_000
REGIMES = {
    "small": {"features": "word+char", "C": None, "tol": 1e-4},  # C None: cross-validate C_GRID
    "large": {"features": "word", "C": 0.1, "tol": 1e-3, "holdout": 0.2},
}


def _oof_decision(clf, X, y, folds: int, seed: int, say, label: str) -> np.ndarray:
    """Out-of-fold decision values of `clf` under shuffled k-fold cross-validation."""
    oof = np.zeros(y.shape, dtype=float)
    for k, (tr, te) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(X), 1):
        say(f"cross-validation{label}: fold {k}/{folds}")
        oof[te] = clone(clf).fit(X[tr], y[tr]).decision_function(X[te])
    return oof


def _score(held: np.ndarray, y: np.ndarray, ids: list[str]):
    """Calibrate and threshold held-out scores; return (macro-F1, calibration, thresholds, proba)."""
    calibration = fit_platt(held, y)
    proba = apply_platt(held, calibration)
    thresholds = best_thresholds(proba, y)
    return metrics(y, proba >= thresholds, ids)["macro_f1"], calibration, thresholds, proba


def resolve_regime(n_rows: int, params: dict) -> tuple[str, str, float | None]:
    """(regime, feature set, fixed C or None for the grid) for a dataset of `n_rows` under `params`."""
    regime = params.get("regime", "auto")
    if regime == "auto":
        regime = "large" if n_rows >= LARGE_DATA_ROWS else "small"
    if regime not in REGIMES:
        raise InvalidInput(f"unknown regime {regime!r}: use auto, small or large", code="unknown_regime")
    r = REGIMES[regime]
    features = r["features"] if params.get("features", "auto") == "auto" else params["features"]
    C = r["C"] if params.get("C", "auto") == "auto" else float(params["C"])
    return regime, features, C


def _drop_stop_words(features) -> None:
    """Forget the terms each vectorizer cut (min_df, max_features): never used, and the bulk of the pickle."""
    for _name, vec in features.transformer_list:
        if hasattr(vec, "stop_words_"):
            vec.stop_words_ = None


def fit(data: Dataset, taxonomy: Taxonomy, *, seed: int = 0, cv_folds: int = 5, params: dict | None = None,
        n_jobs: int | None = None, embedder=None, embedding_path: str | None = None,
        progress: Progress = None) -> FitResult:
    """Fit features once, hold out data for C, calibration and thresholds, then refit on all.

    Two regimes (`resolve_regime`). Small data (the bundled corpus, a force's first few
    thousand records): word and character n-grams, and with `C` "auto" each C of `C_GRID`
    cross-validated with `cv_folds` folds, the best out-of-fold macro-F1 winning (noisy
    records want more regularisation than our clean corpus). Large data: word n-grams, C 0.1
    and one fit on a random 80% whose scores on the other 20% give the calibration and
    thresholds. Either way the held-out scores give the Platt calibration, the per-label
    thresholds and the reported figures, and the final classifier is refitted on everything.
    The TF-IDF vocabulary is fitted on all training texts (unsupervised; labels are never seen
    outside their fold). With an `embedder` (the accurate profile) its sentence vectors are
    appended to the TF-IDF columns. Per-label fits run in `n_jobs` processes (default: 2);
    not threads, because liblinear's random generator is process-global and threads would make
    the result depend on scheduling.
    """
    say = progress or (lambda _msg: None)
    ids = taxonomy.ids
    y = indicator(data.labels, ids)
    p = {**DEFAULT_PARAMS, **(params or {})}
    regime, feature_set, fixed_C = resolve_regime(len(data), p)
    grid = C_GRID if fixed_C is None else (fixed_C,)
    holdout = REGIMES[regime].get("holdout")
    jobs = n_jobs or min(2, os.cpu_count() or 1)
    t0 = time.perf_counter()
    say(f"features: fitting {feature_set} TF-IDF on {len(data)} texts ({regime}-data regime)")
    pipe = build_pipeline(seed=seed, params={**p, "C": grid[0], "features": feature_set}, n_jobs=jobs,
                          tol=REGIMES[regime]["tol"])
    folds = max(2, min(cv_folds, len(data)))
    files = ", ".join(sorted({s.rsplit(":", 1)[0] for s in data.sources}))
    if len(data) < 2 * folds:
        raise DataError([Problem(files, 0, f"{len(data)} valid row(s): too few to cross-validate ({2 * folds} needed)")])
    try:
        X = pipe.named_steps["features"].fit_transform(data.texts)
    except ValueError:  # scikit-learn: empty vocabulary, or min_df above the number of texts
        raise DataError([Problem(files, 0, "no words to learn from: too few texts share a word")]) from None
    _drop_stop_words(pipe.named_steps["features"])
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
        if holdout:
            order = np.random.RandomState(seed).permutation(len(data))
            held, kept = np.sort(order[: int(len(data) * holdout)]), np.sort(order[int(len(data) * holdout):])
            clf = pipe.named_steps["clf"].set_params(estimator__C=grid[0])
            say(f"holdout: fitting on {len(kept)} texts, scoring {len(held)} (C={grid[0]:g})")
            scores = clone(clf).fit(X[kept], y[kept]).decision_function(X[held])
            results[grid[0]] = (_score(scores, y[held], ids), held)
            evaluation = f"{holdout:.0%} random holdout ({len(held)} texts; thresholds chosen on them)"
            timings["calibration_s"] = time.perf_counter() - t1
        else:
            for C in grid:
                clf = pipe.named_steps["clf"].set_params(estimator__C=C)
                oof = _oof_decision(clf, X, y, folds, seed, say, f" (C={C:g})" if len(grid) > 1 else "")
                results[C] = (_score(oof, y, ids), slice(None))
            evaluation = f"{folds}-fold cross-validation (out-of-fold scores; thresholds chosen on them)"
            timings["calibration_s"] = time.perf_counter() - t1
        best = max(grid, key=lambda c: (results[c][0][0], -c))
        say(f"fitting the final classifier on all data (C={best:g})")
        t2 = time.perf_counter()
        clf = pipe.named_steps["clf"].set_params(estimator__C=best)
        clf.fit(X, y)
        timings["final_fit_s"] = time.perf_counter() - t2
    (_, calibration, thresholds, proba), rows = results[best]
    report = metrics(y[rows], proba >= thresholds, ids)
    report["calibration"] = calibration_report(proba, y[rows])
    report["evaluation"] = evaluation
    report["model_selection"] = {"C": best, "regime": regime, "features": feature_set,
                                 "macro_f1_by_C": {f"{c:g}": results[c][0][0] for c in grid}}
    report["timings"] = {k: round(v, 3) for k, v in timings.items()}
    tagger = Tagger.from_pipeline(taxonomy, pipe, calibration, thresholds, embedding=embedding, embedder=embedder)
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
                   "regime": result.report["model_selection"]["regime"],
                   "features": result.report["model_selection"]["features"], "cv_folds": cv_folds},
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
