"""A loaded model: scores texts with a fast path equal to the scikit-learn pipeline, and explains them.

A tagger is plain arrays (the vocabularies in column order, idf, the per-label coefficients
stacked into one matrix, calibration, thresholds), so scoring needs neither scikit-learn nor
scipy: each text is tokenised once into feature columns, a batch's term counts come from one
sort, and its scores from one gather-and-sum of weight rows. The numbers equal
`pipeline.decision_function` (tests hold them to 1e-9).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from .labels import Taxonomy
from .text import token_char_ngrams, tokens, tokens_with_spans

EVIDENCE_PER_LABEL = 5
TOKEN_CACHE_SIZE = 200_000
SCORE_DECIMALS = 6
_UNIT = float(10 ** SCORE_DECIMALS)  # scores are rounded half up to millionths, the same way everywhere
_FRACTION = f"0.{{:0{SCORE_DECIMALS}d}}".format  # a score under 1 from its millionths: "0.040797"
_ONE = "1." + "0" * SCORE_DECIMALS


def word_index(terms: list[str]) -> dict:
    """The word vocabulary as token ids, for scoring a batch with array operations.

    Every string a unigram or either side of a bigram can be gets a token id; `uni_col[id]` is
    its unigram column (or -1) and `pair_keys` (sorted, id_a * n_tokens + id_b) map to
    `pair_cols`. A term is split at each of its spaces, so a token that itself holds a space
    (NFKC of a few ligatures) still finds its bigrams, exactly as the string lookup would.
    """
    ids: dict[str, int] = {}
    uni: list[tuple[int, int]] = []
    pairs: list[tuple[int, int, int]] = []
    for col, term in enumerate(terms):
        uni.append((ids.setdefault(term, len(ids)), col))
        i = term.find(" ")
        while i != -1:
            pairs.append((ids.setdefault(term[:i], len(ids)), ids.setdefault(term[i + 1:], len(ids)), col))
            i = term.find(" ", i + 1)
    n = len(ids)
    uni_col = np.full(n, -1, dtype=np.int64)
    if uni:
        t, c = np.array(uni, dtype=np.int64).T
        uni_col[t] = c
    p = np.array(pairs, dtype=np.int64).reshape(-1, 3)
    keys = p[:, 0] * n + p[:, 1]
    order = np.argsort(keys, kind="stable")
    return {"tokens": list(ids), "uni_col": uni_col, "pair_keys": keys[order], "pair_cols": p[order, 2]}


def _arrays(cols: list[int], vals: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(cols, dtype=np.int64), np.array(vals, dtype=np.float64)


def _terms(vocabulary: dict) -> list[str]:
    """A fitted vocabulary as its terms in column order."""
    terms = [""] * len(vocabulary)
    for term, j in vocabulary.items():
        terms[j] = term
    return terms


@dataclass
class Tagger:
    """A trained model ready to score: taxonomy, vocabularies, weights, calibration, thresholds.

    The word vocabulary is its `index` (`word_index`); `char_terms` is empty for a word-only
    model. `W` has one row per TF-IDF column (word block, then character block), then one per
    sentence-embedding dimension for the accurate profile.
    """

    taxonomy: Taxonomy
    index: dict
    char_terms: list
    idf: np.ndarray
    W: np.ndarray
    b: np.ndarray
    calibration: np.ndarray
    thresholds: np.ndarray
    version: str = "unsaved"
    metadata: dict = field(default_factory=dict)
    # The `accurate` profile: {"identity", "path", "scale"} of the sentence encoder whose
    # vectors follow the TF-IDF columns, and the loaded encoder itself.
    embedding: dict | None = None
    embedder: object = None
    # The fitted scikit-learn pipeline, when the tagger was just fitted or loaded with it.
    pipeline: object = None

    def __post_init__(self):
        if self.embedding and self.embedder is None:
            raise ValueError("an accurate-profile model needs its embedder")
        self._word_vocab: dict | None = None
        self._char = dict(zip(self.char_terms, range(len(self.char_terms))))
        self._n_tfidf = len(self.idf)
        self._char_offset = self._n_tfidf - len(self.char_terms)
        self.idf = np.ascontiguousarray(self.idf, dtype=np.float64)
        self.W = np.ascontiguousarray(self.W, dtype=np.float64)
        self.b = np.asarray(self.b, dtype=np.float64)
        if self.W.shape[0] < self._n_tfidf or len(self.idf) != self._n_tfidf:
            raise ValueError("weights, idf and vocabularies disagree in size")
        self._W_tfidf, self._W_embed = self.W[: self._n_tfidf], self.W[self._n_tfidf:]
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        self.calibration = np.asarray(self.calibration, dtype=np.float64)
        self._token_cache: dict[str, list[int]] = {}
        self._tid = dict(zip(self.index["tokens"], range(len(self.index["tokens"])))).get
        self._uni_col, self._pair_keys, self._pair_cols = (
            np.asarray(self.index[k], dtype=np.int64) for k in ("uni_col", "pair_keys", "pair_cols"))
        # Platt scaling folded into tanh: p = 0.5 + 0.5 * tanh(d * a/2 + c/2).
        self._half_a, self._half_c = 0.5 * self.calibration[:, 0], 0.5 * self.calibration[:, 1]
        self._half_bc = self.b * self._half_a + self._half_c  # the intercept, folded in for one text
        self._half_a_list, self._half_bc_list = self._half_a.tolist(), self._half_bc.tolist()
        self._idf_view = memoryview(self.idf)  # idf[j] as a Python float without a numpy call
        self._thresholds = self.thresholds.tolist()
        # One text's result as JSON: the label entries' heads, and the whole with %s for each score.
        quoted = [json.dumps(i) for i in self.taxonomy.ids]
        self._json_labels = [f'{{"label":{q},"score":' for q in quoted]
        self._json_template = (f'{{"model_version":{json.dumps(self.version)},"labels":[%s],"scores":{{'
                               + ",".join(f"{q}:%s" for q in quoted) + "}}")

    @property
    def _word(self) -> dict:
        """Word term -> column, for scoring one text and for explanations; built on first use."""
        if self._word_vocab is None:  # every term is a whole token of the index, its column its unigram's
            tids = np.flatnonzero(self._uni_col >= 0)
            tokens_ = self.index["tokens"]
            self._word_vocab = dict(zip([tokens_[t] for t in tids.tolist()], self._uni_col[tids].tolist()))
        return self._word_vocab

    def warm(self) -> "Tagger":
        """Build what is otherwise built on first use (before a server forks, so workers share it)."""
        self._word
        return self

    @classmethod
    def from_pipeline(cls, taxonomy: Taxonomy, pipeline, calibration, thresholds, *,
                      embedding: dict | None = None, embedder=None, **kw) -> "Tagger":
        """Fold a fitted pipeline's vocabularies, idf and per-label coefficients into arrays."""
        blocks = dict(pipeline.named_steps["features"].transformer_list)
        word, char = blocks["word"], blocks.get("char")
        n_embed = embedding["identity"]["dimension"] if embedding else 0
        idf = np.concatenate([word.idf_] + ([char.idf_] if char is not None else []))
        W, b = linear_weights(pipeline.named_steps["clf"], len(idf) + n_embed)
        return cls(taxonomy=taxonomy, index=word_index(_terms(word.vocabulary_)),
                   char_terms=_terms(char.vocabulary_) if char is not None else [], idf=idf, W=W, b=b,
                   calibration=calibration, thresholds=thresholds, embedding=embedding, embedder=embedder,
                   pipeline=pipeline, **kw)

    @property
    def profile(self) -> str:
        return "accurate" if self.embedding else "fast"

    # -- features -----------------------------------------------------------------------------
    def _token_chars(self, tok: str) -> list[int]:
        """Columns of a token's character n-grams (repeats kept), cached: they are fixed per token form."""
        cols = self._token_cache.get(tok)
        if cols is None:
            get, off = self._char.get, self._char_offset
            cols = [j + off for j in map(get, token_char_ngrams(tok)) if j is not None]
            if len(self._token_cache) >= TOKEN_CACHE_SIZE:
                self._token_cache.clear()
            self._token_cache[tok] = cols
        return cols

    def _columns(self, text: str) -> list[int]:
        """The feature column of every word unigram, bigram and character n-gram of `text`, repeats kept."""
        toks = tokens(text)
        get = self._word.get
        cols = [j for j in map(get, toks) if j is not None]
        if len(toks) > 1:
            cols += [j for j in map(get, map(" ".join, zip(toks, toks[1:]))) if j is not None]
        if self._char:
            for t in toks:
                cols += self._token_chars(t)
        return cols

    def _normalise(self, rows: np.ndarray, cols: np.ndarray, tf: np.ndarray, n: int) -> np.ndarray:
        """Sublinear tf times idf, each text's word and character blocks L2-normalised apart (as the FeatureUnion)."""
        vals = (np.log(tf) + 1.0) * self.idf[cols]
        block = rows * 2 + (cols >= self._char_offset) if self._char else rows
        norms = np.sqrt(np.bincount(block, weights=vals * vals, minlength=2 * n if self._char else n))
        vals /= norms[block]
        return vals

    def _one_lists(self, text: str) -> tuple[list[int], list[float]]:
        """Columns and tf-idf values of one text, in plain Python: for a handful of columns a numpy
        call costs more than the arithmetic, above all on the cold caches of a web request."""
        found = self._columns(text)
        counts = Counter(found)
        idf = self._idf_view
        if len(counts) == len(found):  # no repeats: sublinear tf is 1 everywhere
            vals = [idf[j] for j in counts]
        else:
            vals = [idf[j] * (1.0 + math.log(c)) for j, c in counts.items()]
        cols = list(counts)
        if self._char:  # the word and character blocks are normalised apart, as the FeatureUnion does
            off = self._char_offset
            word = math.hypot(*[v for j, v in zip(cols, vals) if j < off]) or 1.0
            char = math.hypot(*[v for j, v in zip(cols, vals) if j >= off]) or 1.0
            vals = [v / (word if j < off else char) for j, v in zip(cols, vals)]
        elif vals:
            norm = math.hypot(*vals)  # the L2 norm, in one C call
            vals = [v / norm for v in vals]
        return cols, vals

    def _one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """`_one_lists` as arrays (for decision values and explanations)."""
        return _arrays(*self._one_lists(text))

    def _batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, columns, values) of the TF-IDF matrix of `texts`, sorted by row then column.

        Python only splits the texts and maps each token to its id; unigram and bigram columns
        are then array lookups (bigrams by binary search of the sorted pair keys).
        """
        n = len(texts)
        flat: list[str] = []
        lengths = []
        for text in texts:
            toks = tokens(text)
            flat += toks
            lengths.append(len(toks))
        tok_rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
        tid = np.fromiter(map(self._tid, flat, repeat(-1)), dtype=np.int64, count=len(flat))
        known = tid >= 0
        uni = np.full(len(tid), -1, dtype=np.int64)
        uni[known] = self._uni_col[tid[known]]
        rows, cols = [tok_rows[uni >= 0]], [uni[uni >= 0]]
        if len(tid) > 1 and len(self._pair_keys):
            ok = known[:-1] & known[1:] & (tok_rows[:-1] == tok_rows[1:])
            keys = tid[:-1][ok] * len(self._uni_col) + tid[1:][ok]
            pos = np.minimum(np.searchsorted(self._pair_keys, keys), len(self._pair_keys) - 1)
            hit = self._pair_keys[pos] == keys
            rows.append(tok_rows[:-1][ok][hit])
            cols.append(self._pair_cols[pos[hit]])
        if self._char:
            char_cols: list[int] = []
            char_lengths = []
            for t in flat:
                c = self._token_chars(t)
                char_cols += c
                char_lengths.append(len(c))
            rows.append(np.repeat(tok_rows, char_lengths))
            cols.append(np.array(char_cols, dtype=np.int64))
        n_feat = max(self._n_tfidf, 1)
        keys, tf = np.unique(np.concatenate(rows) * n_feat + np.concatenate(cols), return_counts=True)
        rows, cols = np.divmod(keys, n_feat)
        return rows, cols, self._normalise(rows, cols, tf, n)

    # -- scoring ------------------------------------------------------------------------------
    def embed(self, texts: list[str]) -> np.ndarray:
        """The scaled sentence-embedding columns of `texts` (accurate profile only)."""
        return self.embedder.embed(texts) * self.embedding["scale"]

    def decision(self, texts: list[str]) -> np.ndarray:
        """Raw per-label decision values, shape (n, n_labels)."""
        if len(texts) == 1:
            cols, vals = self._one(texts[0])
            d = (vals @ self._W_tfidf[cols] + self.b)[None, :]
        else:
            rows, cols, vals = self._batch(texts)
            d = np.tile(self.b, (len(texts), 1))
            if len(rows):
                starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
                rows_w = self._W_tfidf.take(cols, axis=0)  # one gathered copy, scaled in place
                rows_w *= vals[:, None]
                d[rows[starts]] += np.add.reduceat(rows_w, starts, axis=0)
        if self.embedding:
            d = d + self.embed(texts) @ self._W_embed
        return d

    def _platt(self, d: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of decision values (`calibration.apply_platt`, folded into tanh)."""
        p = np.tanh(d * self._half_a + self._half_c)
        p *= 0.5
        p += 0.5
        return p

    def scores(self, texts: list[str]) -> np.ndarray:
        """Calibrated probabilities, shape (n, n_labels)."""
        return self._platt(self.decision(texts))

    def ranked(self, P: np.ndarray) -> list[list[int]]:
        """Per row of probabilities, the label indices at or above their threshold, highest first."""
        hits: list[list[int]] = [[] for _ in range(len(P))]
        r, c = np.nonzero(P >= self.thresholds)
        order = np.lexsort((c, -P[r, c], r))  # by row, then score descending, ties in taxonomy order
        for i, j in zip(r[order].tolist(), c[order].tolist()):
            hits[i].append(j)
        return hits

    def predict(self, texts: list[str], *, explain: bool = False) -> list[dict]:
        """One API-shaped result per text: labels at or above their threshold (highest first), all scores.

        Scores are rounded to 6 decimals once for the whole batch; the labels are chosen on the
        unrounded probabilities.
        """
        if len(texts) == 1:
            return [self._predict_one(texts[0], explain)]
        if not texts:
            return []
        P = self.scores(texts)
        rounded = (np.floor(P * _UNIT + 0.5) / _UNIT).tolist()
        return [self._result(text, row, js, explain) for text, row, js in zip(texts, rounded, self.ranked(P))]

    def _score_one(self, text: str) -> tuple[list[float], list[int], list[int], list[float]]:
        """One text's probabilities, its labels (highest first), and its tf-idf columns and values:
        all Python lists, from four numpy calls.

        Each numpy call costs several microseconds when a web request has left the caches cold,
        so everything on a few dozen numbers (tf-idf values, the calibrated scores) is Python, and
        the only array work is the gather-and-dot with the weight rows.
        """
        cols, vals = self._one_lists(text)
        s = np.array(vals) @ self._W_tfidf[cols] if cols else np.zeros(len(self.b))
        if self.embedding:
            s = s + self.embed([text])[0] @ self._W_embed
        tanh = math.tanh
        probs = [0.5 + 0.5 * tanh(x * a + c) for x, a, c in zip(s.tolist(), self._half_a_list, self._half_bc_list)]
        js = [j for j, p, t in zip(range(len(probs)), probs, self._thresholds) if p >= t]
        if len(js) > 1:
            js.sort(key=lambda j: -probs[j])  # stable: ties keep taxonomy order
        return probs, js, cols, vals

    def _predict_one(self, text: str, explain: bool) -> dict:
        """`predict` for one text (the API's common case)."""
        probs, js, cols, vals = self._score_one(text)
        floor = math.floor
        features = _arrays(cols, vals) if explain else None
        return self._result(text, [floor(p * _UNIT + 0.5) / _UNIT for p in probs], js, explain, features)

    def predict_json(self, text: str) -> tuple[str, list[str]]:
        """One text's result (no evidence) as compact JSON text, and its label ids.

        The same numbers as `predict`, each score written with exactly 6 decimals into a template
        made once per model: a quarter of the cost of encoding the result dict on a cold cache.
        """
        probs, js, _cols, _vals = self._score_one(text)
        floor = math.floor
        scores = [_FRACTION(k) if k < _UNIT else _ONE for k in (floor(p * _UNIT + 0.5) for p in probs)]
        labels = ",".join(f"{self._json_labels[j]}{scores[j]}}}" for j in js)
        ids = self.taxonomy.ids
        return self._json_template % (labels, *scores), [ids[j] for j in js]

    def _result(self, text: str, row: list, js: list[int], explain: bool, features=None) -> dict:
        ids = self.taxonomy.ids
        labels = [{"label": ids[j], "score": row[j]} for j in js]
        if explain and labels:
            cols, vals = features or self._one(text)
            for entry, j in zip(labels, js):
                entry["evidence"] = self._evidence(text, cols, vals, j)
        return {"model_version": self.version, "labels": labels, "scores": dict(zip(ids, row))}

    # -- explanations -------------------------------------------------------------------------
    def _evidence(self, text: str, cols: np.ndarray, vals: np.ndarray, label: int,
                  k: int = EVIDENCE_PER_LABEL) -> list[dict]:
        """The spans of `text` whose features pushed `label` up most (tf-idf value x coefficient).

        Word unigrams credit their token, bigrams the two-word span, character n-grams every
        token containing them; a feature seen several times shares its credit equally.
        """
        contrib = vals * self._W_tfidf[cols, label]
        positive = contrib > 0
        if not positive.any():
            return []
        wanted = {int(c): float(w) for c, w in zip(cols[positive], contrib[positive])}
        toks = list(tokens_with_spans(text))
        occ: dict[int, list[tuple[int, int]]] = {}
        wv = self._word
        for i, (s, e, t) in enumerate(toks):  # word unigrams and bigrams
            j = wv.get(t)
            if j is not None and j in wanted:
                occ.setdefault(j, []).append((s, e))
            if i + 1 < len(toks):
                j = wv.get(f"{t} {toks[i + 1][2]}")
                if j is not None and j in wanted:
                    occ.setdefault(j, []).append((s, toks[i + 1][1]))
        if self._char:  # character n-grams credit whole tokens
            cv, off = self._char, self._char_offset
            for s, e, t in toks:
                for g in set(token_char_ngrams(t)):
                    j = cv.get(g)
                    if j is not None and j + off in wanted:
                        occ.setdefault(j + off, []).append((s, e))
        spans: Counter = Counter()
        for j, places in occ.items():
            share = wanted[j] / len(places)
            for span in places:
                spans[span] += share
        best = sorted(spans.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [{"text": text[s:e], "start": s, "end": e, "weight": round(w, 6)} for (s, e), w in best]


def linear_weights(clf, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack a fitted one-vs-rest classifier's coefficients into (n_features, n_labels), intercepts into (n_labels,).

    A label that was constant in training has no fitted model; it gets zero weights and an
    intercept that reproduces its constant answer.
    """
    W = np.zeros((n_features, len(clf.estimators_)))
    b = np.zeros(len(clf.estimators_))
    for j, est in enumerate(clf.estimators_):
        if hasattr(est, "coef_"):
            W[:, j] = est.coef_.ravel()
            b[j] = est.intercept_[0]
        else:  # sklearn's _ConstantPredictor
            b[j] = 30.0 if float(np.ravel(est.y_)[0]) == 1 else -30.0
    return W, b
