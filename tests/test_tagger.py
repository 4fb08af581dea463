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
