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
from .text import token_char_ngrams, tokens, tokens_with_spans

EVIDENCE_PER_LABEL = 5
TOKEN_CACHE_SIZE = 200_000


@dataclass
class _Block:
    """One fitted TF-IDF block: its vocabulary and its column offset in the stacked matrix."""

    vocab: dict
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
    # The `accurate` profile: {"identity", "path", "scale"} of the sentence encoder whose
    # vectors follow the TF-IDF columns, and the loaded encoder itself.
    embedding: dict | None = None
    embedder: object = None

    def __post_init__(self):
        word, char = (self.pipeline.named_steps["features"].transformer_list[i][1] for i in (0, 1))
        self._word = _Block(word.vocabulary_, 0)
        self._char = _Block(char.vocabulary_, len(word.vocabulary_))
        self._n_tfidf = len(word.vocabulary_) + len(char.vocabulary_)
        n_embed = self.embedding["identity"]["dimension"] if self.embedding else 0
        if self.embedding and self.embedder is None:
            raise ValueError("an accurate-profile model needs its embedder")
        self._idf = np.concatenate([word.idf_, char.idf_])
        W, self._b = linear_weights(self.pipeline.named_steps["clf"], self._n_tfidf + n_embed)
        self._W, self._W_embed = W[: self._n_tfidf], W[self._n_tfidf:]
        self._token_cache: dict[str, list[tuple[int, int]]] = {}
        self.thresholds = np.asarray(self.thresholds, dtype=float)
        self.calibration = np.asarray(self.calibration, dtype=float)

    # -- features -----------------------------------------------------------------------------
    def _token_chars(self, tok: str) -> tuple[np.ndarray, np.ndarray]:
        """Columns and counts of a token's unigram and character n-gram features, cached per token.

        Both are fixed for a token form, so a batch needs one cache lookup per distinct token.
        """
        entry = self._token_cache.get(tok)
        if entry is None:
            vocab, off = self._char.vocab, self._char.offset
            counts: dict[int, int] = {}
            j = self._word.vocab.get(tok)
            if j is not None:
                counts[j] = 1
            for g in token_char_ngrams(tok):
                j = vocab.get(g)
                if j is not None:
                    counts[j + off] = counts.get(j + off, 0) + 1
            entry = (np.fromiter(counts.keys(), dtype=np.int64, count=len(counts)),
                     np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
            if len(self._token_cache) >= TOKEN_CACHE_SIZE:
                self._token_cache.clear()
            self._token_cache[tok] = entry
        return entry

    def _counts(self, texts: list[str]):
        """(row, column, count) triples of raw term counts for a batch, duplicates not yet summed."""
        wv = self._word.vocab
        rows, cols, counts = [], [], []
        for i, text in enumerate(texts):
            toks = tokens(text)
            wcols = [j for j in (wv.get(f"{a} {b}") for a, b in zip(toks, toks[1:])) if j is not None]
            parts_c = [np.asarray(wcols, dtype=np.int64)]
            parts_n = [np.ones(len(wcols))]
            for t in toks:
                c, n = self._token_chars(t)
                parts_c.append(c)
                parts_n.append(n)
            c = np.concatenate(parts_c)
            rows.append(np.full(len(c), i, dtype=np.int64))
            cols.append(c)
            counts.append(np.concatenate(parts_n))
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(counts)

    def _tfidf(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, columns, values) of the TF-IDF matrix of `texts`, sorted by row then column.

        Counts are summed per (text, column), turned into 1 + log(tf) times idf, and each text's
        word and character blocks are L2-normalised separately, as the FeatureUnion does.
        """
        n_feat = self._W.shape[0]
        rows, cols, counts = self._counts(texts)
        uniq, inv = np.unique(rows * n_feat + cols, return_inverse=True)
        tf = np.bincount(inv, weights=counts, minlength=len(uniq))
        rows, cols = uniq // n_feat, uniq % n_feat
        data = (np.log(tf) + 1.0) * self._idf[cols]
        block = rows * 2 + (cols >= self._char.offset)
        norms = np.sqrt(np.bincount(block, weights=data * data, minlength=2 * len(texts)))
        data /= norms[block]
        return rows, cols, data

    def features(self, texts: list[str]) -> sp.csr_matrix:
        """The TF-IDF matrix of `texts`, equal to the pipeline's feature step.

        Python touches each token once (a dict lookup); the character n-grams of each distinct
        token come from the cache as a sparse row, so a batch's counts are one sparse product.
        """
        n, n_feat = len(texts), self._W.shape[0]
        wv = self._word.vocab
        local: dict[str, int] = {}
        occ_rows, occ_toks, big_rows, big_cols = [], [], [], []
        for i, text in enumerate(texts):
            toks = tokens(text)
            for t in toks:
                k = local.get(t)
                if k is None:
                    k = local[t] = len(local)
                occ_rows.append(i)
                occ_toks.append(k)
            for a, b in zip(toks, toks[1:]):
                j = wv.get(f"{a} {b}")
                if j is not None:
                    big_rows.append(i)
                    big_cols.append(j)
        # One row per distinct token: its unigram column (if any) and its character n-grams.
        parts_c, parts_n, lengths = [], [], []
        for t in local:
            c, cnt = self._token_chars(t)
            parts_c.append(c)
            parts_n.append(cnt)
            lengths.append(len(c))
        tok_indptr = np.zeros(len(local) + 1, dtype=np.int64)
        np.cumsum(lengths, out=tok_indptr[1:])
        per_token = sp.csr_matrix((np.concatenate(parts_n) if parts_n else np.zeros(0),
                                   np.concatenate(parts_c) if parts_c else np.zeros(0, dtype=np.int64),
                                   tok_indptr), shape=(len(local), n_feat))
        occurrences = sp.csr_matrix((np.ones(len(occ_rows)), (occ_rows, occ_toks)), shape=(n, len(local)))
        X = occurrences @ per_token
        if big_rows:
            X = X + sp.csr_matrix((np.ones(len(big_rows)), (big_rows, big_cols)), shape=(n, n_feat))
        X = X.tocsr()
        X.sum_duplicates()
        rows = np.repeat(np.arange(n), np.diff(X.indptr))
        data = (np.log(X.data) + 1.0) * self._idf[X.indices]
        block = rows * 2 + (X.indices >= self._char.offset)
        norms = np.sqrt(np.bincount(block, weights=data * data, minlength=2 * n))
        X.data = data / norms[block]
        return X

    def _rows(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and tf-idf values of one text."""
        _, cols, data = self._tfidf([text])
        return cols, data

    # -- scoring ------------------------------------------------------------------------------
    @property
    def profile(self) -> str:
        return "accurate" if self.embedding else "fast"

    def embed(self, texts: list[str]) -> np.ndarray:
        """The scaled sentence-embedding columns of `texts` (accurate profile only)."""
        return self.embedder.embed(texts) * self.embedding["scale"]

    def decision(self, texts: list[str]) -> np.ndarray:
        """Raw per-label decision values, shape (n, n_labels)."""
        if len(texts) == 1:  # one text: gather the rows of W it touches, skip scipy's overhead
            cols, vals = self._rows(texts[0])
            d = (vals @ self._W[cols] + self._b)[None, :]
        else:
            d = np.asarray(self.features(texts) @ self._W) + self._b
        if self.embedding:
            d = d + self.embed(texts) @ self._W_embed
        return d

    def scores(self, texts: list[str]) -> np.ndarray:
        """Calibrated probabilities, shape (n, n_labels)."""
        return apply_platt(self.decision(texts), self.calibration)

    def predict(self, texts: list[str], *, explain: bool = False) -> list[dict]:
        """One API-shaped result per text: labels at or above their threshold, all scores."""
        if not texts:
            return []
        P = apply_platt(self.decision(texts), self.calibration)
        ids = self.taxonomy.ids
        out = []
        for i, text in enumerate(texts):
            p = P[i]
            hit = np.flatnonzero(p >= self.thresholds)
            hit = hit[np.argsort(-p[hit], kind="mergesort")]
            labels = [{"label": ids[j], "score": round(float(p[j]), 6)} for j in hit]
            if explain and labels:
                cols, vals = self._rows(text)
                for entry, j in zip(labels, hit):
                    entry["evidence"] = self._evidence(text, cols, vals, j)
            out.append({"model_version": self.version, "labels": labels,
                        "scores": {ids[j]: round(float(p[j]), 6) for j in range(len(ids))}})
        return out

    # -- explanations -------------------------------------------------------------------------
    def _evidence(self, text: str, cols: np.ndarray, vals: np.ndarray, label: int,
                  k: int = EVIDENCE_PER_LABEL) -> list[dict]:
        """The spans of `text` whose features pushed `label` up most (tf-idf value x coefficient).

        Word unigrams credit their token, bigrams the two-word span, character n-grams every
        token containing them; a feature seen several times shares its credit equally.
        """
        contrib = vals * self._W[cols, label]
        toks = list(tokens_with_spans(text))
        spans: Counter = Counter()
        positive = contrib > 0
        if not positive.any():
            return []
        wanted = {int(c): float(w) for c, w in zip(cols[positive], contrib[positive])}
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
