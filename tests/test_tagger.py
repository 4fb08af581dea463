"""The fast scoring path equals the scikit-learn pipeline; explanations point into the input."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from model.calibration import apply_platt
from tests.conftest import corpus_slice


def test_fast_path_equals_pipeline_on_corpus(tagger):
    texts = [r["text"] for r in corpus_slice(step=3)]
    fast = tagger.scores(texts)
    slow = apply_platt(tagger.pipeline.decision_function(texts), tagger.calibration)
    assert np.abs(fast - slow).max() < 1e-9
    assert np.abs(tagger.decision(texts) - tagger.pipeline.decision_function(texts)).max() < 1e-9


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=())), min_size=1, max_size=5))
def test_fast_path_equals_pipeline_on_random_unicode(tagger, texts):
    assert np.abs(tagger.decision(texts) - tagger.pipeline.decision_function(texts)).max() < 1e-9


def test_predict_shape_and_order(tagger):
    texts = ["Caller reports her ex-partner is outside with a knife, breaching his non-molestation order.",
             "Lovely weather for the village fete on Saturday."]
    results = tagger.predict(texts)
    assert len(results) == 2
    for r in results:
        assert set(r) == {"model_version", "labels", "scores"}
        assert list(r["scores"]) == tagger.taxonomy.ids
        scores = [e["score"] for e in r["labels"]]
        assert scores == sorted(scores, reverse=True)
        for e in r["labels"]:
            j = tagger.taxonomy.ids.index(e["label"])
            assert e["score"] >= round(tagger.thresholds[j], 6) - 1e-6
    assert {"weapons", "domestic_abuse"} <= {e["label"] for e in results[0]["labels"]}
    assert results[1]["labels"] == []


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_every_evidence_span_occurs_in_the_input(tagger, text):
    for r in tagger.predict([text + " stabbed with a knife after he went missing from home"], explain=True):
        for entry in r["labels"]:
            for ev in entry["evidence"]:
                src = text + " stabbed with a knife after he went missing from home"
                assert src[ev["start"]:ev["end"]] == ev["text"] and ev["weight"] > 0


def test_evidence_names_the_trigger_words(tagger):
    text = "Man arrested after a stabbing outside a pub; a large kitchen knife was recovered."
    (r,) = tagger.predict([text], explain=True)
    weapons = next(e for e in r["labels"] if e["label"] == "weapons")
    words = " ".join(ev["text"].lower() for ev in weapons["evidence"])
    assert "knife" in words or "stabbing" in words
    assert len(weapons["evidence"]) <= 5


def test_empty_batch(tagger):
    assert tagger.predict([]) == []


# -- the word-only model (large-data regime) and the batch path's token index ---------------------
def test_word_only_fast_path_equals_pipeline(word_tagger):
    assert word_tagger.char_terms == []
    texts = [r["text"] for r in corpus_slice(step=3)]
    assert np.abs(word_tagger.decision(texts) - word_tagger.pipeline.decision_function(texts)).max() < 1e-9
    for text in texts[:50]:  # the one-text path (dict counts) and the batch path (token index) agree
        assert np.abs(word_tagger.decision([text]) - word_tagger.pipeline.decision_function([text])).max() < 1e-9


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=())), min_size=1, max_size=5))
def test_word_only_fast_path_equals_pipeline_on_random_unicode(word_tagger, texts):
    assert np.abs(word_tagger.decision(texts) - word_tagger.pipeline.decision_function(texts)).max() < 1e-9


def test_single_and_batch_predictions_agree(tagger, word_tagger):
    texts = [r["text"] for r in corpus_slice(step=25)]
    for t in (tagger, word_tagger):
        assert t.predict(texts) == [t.predict([x])[0] for x in texts]


def test_a_token_holding_spaces_keeps_its_bigrams():
    """NFKC turns U+FDFA into four words in one token; the token index must still find its n-grams."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.svm import LinearSVC

    from model.labels import Taxonomy
    from model.tagger import Tagger
    from model.text import word_ngrams

    lig = "\ufdfa"
    train = [f"peace {lig} be", f"{lig} be upon", "peace be upon", f"upon {lig}", "be peace", f"{lig} {lig} peace"] * 2
    y = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 1], [1, 0]] * 2)
    vec = TfidfVectorizer(analyzer=word_ngrams, lowercase=False, sublinear_tf=True)
    pipe = Pipeline([("features", FeatureUnion([("word", vec)])),
                     ("clf", OneVsRestClassifier(LinearSVC(dual=True, random_state=0)))]).fit(train, y)
    assert any(" " in t and t.count(" ") >= 3 for t in vec.vocabulary_)  # the ligature's own unigram
    taxonomy = Taxonomy.from_records([{"id": "a", "name": "A"}, {"id": "b", "name": "B"}])
    tagger = Tagger.from_pipeline(taxonomy, pipe, np.tile([1.0, 0.0], (2, 1)), np.array([0.5, 0.5]))
    probe = [f"{lig} be upon peace", f"peace {lig}", "be upon", f"x {lig} be y {lig}"]
    assert np.abs(tagger.decision(probe) - pipe.decision_function(probe)).max() < 1e-12
    for text in probe:
        assert np.abs(tagger.decision([text]) - pipe.decision_function([text])).max() < 1e-12


@settings(max_examples=80, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_json_text_of_one_result_equals_the_result(tagger, text):
    import json

    body, labels = tagger.predict_json(text)
    (expected,) = tagger.predict([text])
    assert json.loads(body) == expected
    assert labels == [e["label"] for e in expected["labels"]]
    assert all(len(v.split(".")[1]) == 6 for v in body.split('"scores":{')[1].rstrip("}").split(",")
               for v in [v.split(":")[1]])
