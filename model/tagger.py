"""A loaded model: scores texts with a fast path equal to the scikit-learn pipeline, and explains them.

The fast path tokenises each text once, looks features up in the fitted vocabularies, builds
one sparse matrix per batch and takes one product with the stacked per-label weights: the same
numbers as `pipeline.decision_function` without scikit-learn's per-call overhead.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .calibration import apply_platt
from .labels import Taxonomy
from .pipeline import linear_weights
from .text import token_char_ngrams, tokens_with_spans

EVIDENCE_PER_LABEL = 5


@dataclass
class _Block:
    """One fitted TF-IDF block: vocabulary, idf and its column offset in the stacked matrix."""

    vocab: dict
    idf: np.ndarray
    offset: int


@dataclass
class Tagger:
    """A trained model ready to score: taxonomy, weights, calibration and thresholds."""

    taxonomy: Taxonomy
    pipeline: object
    calibration: np.ndarray
    thresholds: np.ndarray
    version: str = "unsaved"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        word, char = (self.pipeline.named_steps["features"].transformer_list[i][1] for i in (0, 1))
        self._word = _Block(word.vocabulary_, word.idf_, 0)
        self._char = _Block(char.vocabulary_, char.idf_, len(word.vocabulary_))
        n_features = len(word.vocabulary_) + len(char.vocabulary_)
        self._W, self._b = linear_weights(self.pipeline.named_steps["clf"], n_features)
        self.thresholds = np.asarray(self.thresholds, dtype=float)
        self.calibration = np.asarray(self.calibration, dtype=float)

    # -- features -----------------------------------------------------------------------------
    def _rows(self, text: str):
        """Column indices and tf-idf values of one text (both blocks L2-normalised separately)."""
        toks = [t for _, _, t in tokens_with_spans(text)]
        words = Counter(toks)
        words.update(f"{a} {b}" for a, b in zip(toks, toks[1:]))
        chars = Counter()
        for tok, n in Counter(toks).items():
            for g, k in Counter(token_char_ngrams(tok)).items():
                chars[g] += k * n
        cols, vals = [], []
        for block, counts in ((self._word, words), (self._char, chars)):
            bc, bv = [], []
            for g, n in counts.items():
                j = block.vocab.get(g)
                if j is not None:
                    bc.append(j)
                    bv.append((1.0 + math.log(n)) * block.idf[j])
            if bv:
                v = np.asarray(bv)
                v /= math.sqrt(float(v @ v))
                cols.extend(c + block.offset for c in bc)
                vals.extend(v.tolist())
        return cols, vals

    def features(self, texts: list[str]) -> sp.csr_matrix:
        """The TF-IDF matrix of `texts`, equal to the pipeline's feature step."""
        indptr, indices, data = [0], [], []
        for text in texts:
            c, v = self._rows(text)
            indices.extend(c)
            data.extend(v)
            indptr.append(len(indices))
        return sp.csr_matrix((np.asarray(data, dtype=float), np.asarray(indices, dtype=np.int64),
                              np.asarray(indptr, dtype=np.int64)), shape=(len(texts), self._W.shape[0]))

    # -- scoring ------------------------------------------------------------------------------
    def decision(self, texts: list[str]) -> np.ndarray:
        """Raw per-label decision values, shape (n, n_labels)."""
        return np.asarray(self.features(texts) @ self._W) + self._b

    def scores(self, texts: list[str]) -> np.ndarray:
        """Calibrated probabilities, shape (n, n_labels)."""
        return apply_platt(self.decision(texts), self.calibration)

    def predict(self, texts: list[str], *, explain: bool = False) -> list[dict]:
        """One API-shaped result per text: labels at or above their threshold, all scores."""
        if not texts:
            return []
        X = self.features(texts)
        P = apply_platt(np.asarray(X @ self._W) + self._b, self.calibration)
        ids = self.taxonomy.ids
        out = []
        for i, text in enumerate(texts):
            p = P[i]
            hit = np.flatnonzero(p >= self.thresholds)
            hit = hit[np.argsort(-p[hit], kind="mergesort")]
            labels = [{"label": ids[j], "score": round(float(p[j]), 6)} for j in hit]
            if explain:
                row = X.getrow(i)
                for entry, j in zip(labels, hit):
                    entry["evidence"] = self._evidence(text, row, j)
            out.append({"model_version": self.version, "labels": labels,
                        "scores": {ids[j]: round(float(p[j]), 6) for j in range(len(ids))}})
        return out

    # -- explanations -------------------------------------------------------------------------
    def _evidence(self, text: str, row: sp.csr_matrix, label: int, k: int = EVIDENCE_PER_LABEL) -> list[dict]:
        """The spans of `text` whose features pushed `label` up most (tf-idf value x coefficient).

        Word unigrams credit their token, bigrams the two-word span, character n-grams every
        token containing them; a feature seen several times shares its credit equally.
        """
        contrib = row.data * self._W[row.indices, label]
        toks = list(tokens_with_spans(text))
        spans: Counter = Counter()
        positive = contrib > 0
        if not positive.any():
            return []
        wanted = {int(c): float(w) for c, w in zip(row.indices[positive], contrib[positive])}
        # Word unigrams and bigrams.
        wv, off = self._word.vocab, self._char.offset
        occ: dict[int, list[tuple[int, int]]] = {}
        for i, (s, e, t) in enumerate(toks):
            j = wv.get(t)
            if j is not None and j in wanted:
                occ.setdefault(j, []).append((s, e))
            if i + 1 < len(toks):
                j = wv.get(f"{t} {toks[i + 1][2]}")
                if j is not None and j in wanted:
                    occ.setdefault(j, []).append((s, toks[i + 1][1]))
        # Character n-grams credit whole tokens.
        cv = self._char.vocab
        for s, e, t in toks:
            for g in set(token_char_ngrams(t)):
                j = cv.get(g)
                if j is not None and j + off in wanted:
                    occ.setdefault(j + off, []).append((s, e))
        for j, places in occ.items():
            share = wanted[j] / len(places)
            for span in places:
                spans[span] += share
        best = sorted(spans.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [{"text": text[s:e], "start": s, "end": e, "weight": round(w, 6)} for (s, e), w in best]
