"""The HTTP contract of SPEC section 4, endpoint by endpoint and error by error, through Flask's test client."""
from __future__ import annotations

import io
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from model.store import META_FILE, MODEL_FILE
from service import create_app
from tests.conftest import ADMIN_TOKEN

KNIFE = "Caller reports her ex-partner is outside with a knife, breaching his non-molestation order."
FETE = "Lovely weather for the village fete on Saturday."
BATCH = [KNIFE, FETE, "Boy, 14, reported missing from his care home overnight; believed to be with older men.",
         "Man arrested after a stabbing outside a pub; a large kitchen knife was recovered.",
         "She said he tracks her phone and turns up at her work every day since she left him."]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
METRIC_NAMES = {"crimetag_http_requests", "crimetag_http_request_duration_seconds", "crimetag_texts_scored",
                "crimetag_labels_returned", "crimetag_model_info"}


def assert_error(resp, status: int, code: str) -> dict:
    """An error response: the status, JSON, exactly {"error": {"code", "message"}}, no stack trace."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    raw = resp.get_data(as_text=True)
    assert "Traceback" not in raw and 'File "' not in raw
    return body["error"]


def assert_result(result: dict, tagger, text: str | None = None, *, explain: bool = False) -> None:
    """One result: every label scored, labels = those at/above their threshold, highest first."""
    ids = tagger.taxonomy.ids
    assert set(result) == {"model_version", "labels", "scores"}
    assert result["model_version"] == tagger.version
    assert list(result["scores"]) == ids
    assert all(0.0 <= s <= 1.0 for s in result["scores"].values())
    above = {lid for lid, t in zip(ids, tagger.thresholds) if result["scores"][lid] >= round(float(t), 6)}
    assert {e["label"] for e in result["labels"]} == above
    scores = [e["score"] for e in result["labels"]]
    assert scores == sorted(scores, reverse=True)
    for e in result["labels"]:
        assert e["score"] == result["scores"][e["label"]]
        assert ("evidence" in e) == explain
        if explain:
            assert e["evidence"], f"no evidence for {e['label']}"
            for ev in e["evidence"]:
                assert text[ev["start"]:ev["end"]] == ev["text"] and ev["text"] in text
                assert ev["weight"] > 0


@pytest.fixture(scope="module")
def shared_client(trained_store):
    """One app for the read-only tables (building an app loads the model)."""
    import os

    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("CRIMETAG_")]:
            mp.delenv(key)
        app = create_app({"MODEL_DIR": str(trained_store.root), "ADMIN_TOKEN": ADMIN_TOKEN})
    return app.test_client()


@pytest.fixture
def empty_app(clean_env, tmp_path):
    """An app whose store has no model: alive, not ready."""
    return create_app({"MODEL_DIR": str(tmp_path / "empty-store"), "ADMIN_TOKEN": ADMIN_TOKEN})


# -- predict and explain ------------------------------------------------------------------------
def test_predict_one_text(client, tagger):
    resp = client.post("/v1/predict", json={"text": KNIFE})
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    result = resp.get_json()
    assert_result(result, tagger)
    assert {"weapons", "domestic_abuse"} <= {e["label"] for e in result["labels"]}
    assert result == tagger.predict([KNIFE])[0]


def test_predict_text_with_no_label(client, tagger):
    result = client.post("/v1/predict", json={"text": FETE}).get_json()
    assert_result(result, tagger)
    assert result["labels"] == []


def test_predict_batch_keeps_input_order(client, tagger):
    resp = client.post("/v1/predict", json={"texts": BATCH})
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {"model_version", "results"} and body["model_version"] == tagger.version
    assert len(body["results"]) == len(BATCH)
    for text, result in zip(BATCH, body["results"]):
        assert_result(result, tagger)
        assert result == client.post("/v1/predict", json={"text": text}).get_json()
    reordered = client.post("/v1/predict", json={"texts": BATCH[::-1]}).get_json()["results"]
    assert reordered == body["results"][::-1]


def test_batch_with_repeated_texts(client, tagger):
    results = client.post("/v1/predict", json={"texts": [FETE, KNIFE, FETE]}).get_json()["results"]
    assert results[0] == results[2] != results[1]


@pytest.mark.parametrize("path, body", [
    ("/v1/predict", {"text": KNIFE, "explain": True}),
    ("/v1/explain", {"text": KNIFE}),
    ("/v1/explain", {"text": KNIFE, "explain": False}),  # /v1/explain always explains
])
def test_explain_gives_evidence_from_the_text(client, tagger, path, body):
    result = client.post(path, json=body).get_json()
    assert result["labels"], "the knife text should get labels"
    assert_result(result, tagger, KNIFE, explain=True)
    weapons = next(e for e in result["labels"] if e["label"] == "weapons")
    assert any("knife" in ev["text"].lower() for ev in weapons["evidence"])


@pytest.mark.parametrize("path, body", [("/v1/predict", {"texts": BATCH, "explain": True}),
                                        ("/v1/explain", {"texts": BATCH})])
def test_batch_explain(client, tagger, path, body):
    results = client.post(path, json=body).get_json()["results"]
    for text, result in zip(BATCH, results):
        assert_result(result, tagger, text, explain=True)


def test_explain_false_adds_no_evidence(client, tagger):
    result = client.post("/v1/predict", json={"text": KNIFE, "explain": False}).get_json()
    assert_result(result, tagger, explain=False)


def test_json_with_charset_and_unicode(client, tagger):
    text = "Zoë’s neighbour heard shouting — then a knife was found in the hallway"
    resp = client.post("/v1/predict", data=json.dumps({"text": text}, ensure_ascii=False).encode("utf-8"),
                       content_type="application/json; charset=utf-8")
    assert resp.status_code == 200
    assert_result(resp.get_json(), tagger)


# -- read-only endpoints ------------------------------------------------------------------------
def test_labels(client, tagger):
    resp = client.get("/v1/labels")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["model_version"] == tagger.version
    assert [r["id"] for r in body["labels"]] == tagger.taxonomy.ids
    for rec, lab, t in zip(body["labels"], tagger.taxonomy.labels, tagger.thresholds):
        assert set(rec) == {"id", "name", "description", "threshold"}
        assert (rec["name"], rec["description"]) == (lab.name, lab.description)
        assert rec["threshold"] == pytest.approx(float(t), abs=1e-6) and 0 <= rec["threshold"] <= 1


def test_model_metadata(client, tagger):
    resp = client.get("/v1/model")
    assert resp.status_code == 200
    meta = resp.get_json()
    assert meta["version"] == tagger.version
    assert meta["trained_at"] == meta["created"] == tagger.metadata["created"]
    assert meta["data"]["sha256"] == tagger.metadata["data"]["sha256"] and len(meta["data"]["sha256"]) == 64
    assert {"micro_f1", "macro_f1"} <= set(meta["metrics"])
    assert {"python", "scikit-learn", "numpy", "scipy", "joblib"} <= set(meta["libraries"])
    assert "signature" not in meta


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_readyz(client, tagger):
    resp = client.get("/readyz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ready", "model_version": tagger.version}


def test_openapi_json(client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    doc = resp.get_json()
    assert doc["openapi"].startswith("3.") and "/v1/predict" in doc["paths"]


def test_request_id_echoed_when_safe_replaced_when_not(client):
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123.X_y"}).headers["X-Request-Id"] == "abc-123.X_y"
    for bad in ("has space", "x" * 65, "semi;colon"):
        rid = client.get("/healthz", headers={"X-Request-Id": bad}).headers["X-Request-Id"]
        assert rid != bad and len(rid) == 32
    assert len(client.get("/healthz").headers["X-Request-Id"]) == 32


# -- metrics ------------------------------------------------------------------------------------
def scrape(client) -> dict:
    """{(sample name, frozenset(labels)): value} from /metrics."""
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    out = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_metrics_names_and_counts(client, tagger):
    resp = client.get("/metrics")
    assert "version=0.0.4" in resp.headers["Content-Type"]
    families = {f.name for f in text_string_to_metric_families(resp.get_data(as_text=True))}
    assert METRIC_NAMES <= families
    assert scrape(client)[("crimetag_model_info", frozenset({("version", tagger.version)}))] == 1

    before = scrape(client)
    results = client.post("/v1/predict", json={"texts": BATCH}).get_json()["results"]
    client.post("/v1/predict", json={"text": KNIFE})
    client.post("/v1/predict", json={"text": ""})  # an error scores nothing
    after = scrape(client)

    def delta(name, **labels):
        key = (name, frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("crimetag_texts_scored_total") == len(BATCH) + 1
    assert delta("crimetag_http_requests_total", endpoint="/v1/predict", method="POST", status="200") == 2
    assert delta("crimetag_http_requests_total", endpoint="/v1/predict", method="POST", status="400") == 1
    assert delta("crimetag_http_request_duration_seconds_count", endpoint="/v1/predict") == 3
    returned = [e["label"] for r in results for e in r["labels"]]
    assert delta("crimetag_labels_returned_total", label="weapons") == returned.count("weapons") + 1
    assert sum(delta("crimetag_labels_returned_total", label=lid) for lid in tagger.taxonomy.ids) == \
        len(returned) + len(tagger.predict([KNIFE])[0]["labels"])


# -- 400: the body --------------------------------------------------------------------------------
def raw(data, content_type="application/json"):
    return {"data": data, "content_type": content_type}


BAD_BODIES = [
    # (id, request kwargs, code)
    ("truncated", raw('{"text": "a'), "malformed_json"),
    ("not-json", raw("text=hello"), "malformed_json"),
    ("empty-body", raw(""), "malformed_json"),
    ("bad-utf8", raw(b'{"text": "\xff\xfe"}'), "malformed_json"),
    ("trailing-garbage", raw('{"text": "a"} x'), "malformed_json"),
    ("nested-too-deep", raw("[" * 100_000), "malformed_json"),
    ("array", {"json": ["a", "b"]}, "invalid_body"),
    ("string", {"json": "a text"}, "invalid_body"),
    ("null", raw("null"), "invalid_body"),
    ("number", raw("3"), "invalid_body"),
    ("both", {"json": {"text": "a", "texts": ["b"]}}, "invalid_body"),
    ("neither", {"json": {}}, "invalid_body"),
    ("only-explain", {"json": {"explain": True}}, "invalid_body"),
    ("unknown-field", {"json": {"text": "a", "lang": "en"}}, "invalid_body"),
    ("misspelt-field", {"json": {"txt": "a"}}, "invalid_body"),
    ("text-number", {"json": {"text": 5}}, "invalid_type"),
    ("text-null", {"json": {"text": None}}, "invalid_type"),
    ("text-list", {"json": {"text": ["a"]}}, "invalid_type"),
    ("texts-string", {"json": {"texts": "a"}}, "invalid_type"),
    ("texts-object", {"json": {"texts": {"a": 1}}}, "invalid_type"),
    ("texts-item-number", {"json": {"texts": ["a", 3]}}, "invalid_type"),
    ("texts-item-null", {"json": {"texts": ["a", None]}}, "invalid_type"),
    ("explain-string", {"json": {"text": "a", "explain": "yes"}}, "invalid_type"),
    ("explain-number", {"json": {"text": "a", "explain": 1}}, "invalid_type"),
    ("text-empty", {"json": {"text": ""}}, "empty_text"),
    ("text-blank", {"json": {"text": " \n\t "}}, "empty_text"),
    ("texts-empty", {"json": {"texts": []}}, "empty_text"),
    ("texts-item-empty", {"json": {"texts": ["a", ""]}}, "empty_text"),
]


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/explain"])
@pytest.mark.parametrize("kwargs, code", [pytest.param(kw, c, id=i) for i, kw, c in BAD_BODIES])
def test_400_bad_body(shared_client, path, kwargs, code):
    assert_error(shared_client.post(path, **kwargs), 400, code)


def test_unknown_field_is_named_only_when_it_looks_like_a_field(shared_client):
    resp = shared_client.post("/v1/predict", json={"text": "a", "lang": "en"})
    msg = assert_error(resp, 400, "invalid_body")["message"]
    assert "lang" in msg
    key = "Some sentence someone sent as a key"
    msg = assert_error(shared_client.post("/v1/predict", json={key: "a"}), 400, "invalid_body")["message"]
    assert key not in msg and "1 other" in msg


# -- 413: limits (defaults, then set by config or environment) -----------------------------------
@pytest.mark.parametrize("body, code", [
    pytest.param({"texts": ["a"] * 257}, "too_many_texts", id="257-texts"),
    pytest.param({"text": "a" * 20_001}, "text_too_long", id="20001-chars"),
    pytest.param({"texts": ["a", "a" * 20_001]}, "text_too_long", id="batch-item-too-long"),
])
def test_413_default_limits(shared_client, body, code):
    assert_error(shared_client.post("/v1/predict", json=body), 413, code)


def test_default_limits_are_inclusive(shared_client):
    assert shared_client.post("/v1/predict", json={"texts": ["a"] * 256}).status_code == 200
    assert shared_client.post("/v1/predict", json={"text": "a" * 20_000}).status_code == 200


def test_413_default_body_limit(shared_client):
    big = json.dumps({"text": "a" * (4 * 1024 * 1024)})
    assert_error(shared_client.post("/v1/predict", data=big, content_type="application/json"), 413, "payload_too_large")


LIMITS = [
    # (setting, value, body at the limit, body over it, code)
    ("MAX_BODY_BYTES", 200, {"text": "a" * 150}, {"text": "a" * 250}, "payload_too_large"),
    ("MAX_TEXTS", 3, {"texts": ["a"] * 3}, {"texts": ["a"] * 4}, "too_many_texts"),
    ("MAX_CHARS", 50, {"text": "a" * 50}, {"text": "a" * 51}, "text_too_long"),
]


@pytest.mark.parametrize("via", ["config", "env"])
@pytest.mark.parametrize("key, value, ok_body, big_body, code", LIMITS, ids=[row[0] for row in LIMITS])
def test_413_configurable_limits(clean_env, trained_store, via, key, value, ok_body, big_body, code):
    config = {"MODEL_DIR": str(trained_store.root)}
    if via == "config":
        config[key] = value
    else:
        clean_env.setenv(f"CRIMETAG_{key}", str(value))
    client = create_app(config).test_client()
    assert client.post("/v1/predict", json=ok_body).status_code == 200
    assert_error(client.post("/v1/predict", json=big_body), 413, code)
    assert_error(client.post("/v1/explain", json=big_body), 413, code)
    if key != "MAX_BODY_BYTES":  # the document states the per-text and per-batch limits in force
        schema = client.get("/openapi.json").get_json()["components"]["schemas"]["PredictRequest"]["properties"]
        assert value in (schema["text"]["maxLength"], schema["texts"]["maxItems"])


def test_413_body_without_content_length(clean_env, trained_store):
    """A chunked body (no Content-Length; the server terminates the stream, as gunicorn does) is cut off too."""
    client = create_app({"MODEL_DIR": str(trained_store.root), "MAX_BODY_BYTES": 200}).test_client()

    def post(text):
        return client.post("/v1/predict", input_stream=io.BytesIO(json.dumps({"text": text}).encode()),
                           content_type="application/json", headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})

    assert post("a" * 100).status_code == 200
    assert_error(post("a" * 1000), 413, "payload_too_large")
    # Over the limit only by padding after a complete object: still too large, not silently cut.
    padded = json.dumps({"text": "a" * 100}).encode() + b" " * 200
    resp = client.post("/v1/predict", input_stream=io.BytesIO(padded), content_type="application/json",
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert_error(resp, 413, "payload_too_large")


@pytest.mark.parametrize("value", ["abc", "0", "-5"])
def test_bad_limit_in_environment_is_a_clear_error(clean_env, trained_store, value):
    clean_env.setenv("CRIMETAG_MAX_TEXTS", value)
    with pytest.raises(ValueError, match="CRIMETAG_MAX_TEXTS must be a positive integer"):
        create_app({"MODEL_DIR": str(trained_store.root)})


# -- 415 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/predict", "/v1/explain"])
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml"])
def test_415_not_json(shared_client, path, content_type):
    kwargs = {"data": json.dumps({"text": "a"})}
    if content_type:
        kwargs["content_type"] = content_type
    assert_error(shared_client.post(path, **kwargs), 415, "unsupported_media_type")


# -- 404, 405 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, path", [
    ("GET", "/"), ("GET", "/nope"), ("GET", "/v1"), ("GET", "/v1/nope"), ("POST", "/v1/predict/extra"),
    ("GET", "/v2/labels"), ("GET", "/static/app.js"), ("POST", "/v1/admin/nope"), ("GET", "/healthz/"),
])
def test_404_unknown_path(shared_client, method, path):
    assert_error(shared_client.open(path, method=method), 404, "not_found")


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/v1/predict", {"POST"}), ("PUT", "/v1/predict", {"POST"}), ("DELETE", "/v1/explain", {"POST"}),
    ("GET", "/v1/explain", {"POST"}), ("GET", "/v1/admin/reload", {"POST"}),
    ("POST", "/v1/labels", {"GET"}), ("POST", "/v1/model", {"GET"}), ("PATCH", "/v1/model", {"GET"}),
    ("POST", "/healthz", {"GET"}), ("POST", "/readyz", {"GET"}), ("POST", "/metrics", {"GET"}),
    ("POST", "/openapi.json", {"GET"}),
])
def test_405_wrong_method(shared_client, method, path, allowed):
    resp = shared_client.open(path, method=method, json={"text": "a"})
    assert_error(resp, 405, "method_not_allowed")
    assert allowed <= {m.strip() for m in resp.headers["Allow"].split(",")}


# -- 503: no model ------------------------------------------------------------------------------
@pytest.mark.parametrize("method, path, kwargs", [
    ("GET", "/readyz", {}),
    ("POST", "/v1/predict", {"json": {"text": "a"}}),
    ("POST", "/v1/predict", {"json": {"texts": ["a", "b"]}}),
    ("POST", "/v1/explain", {"json": {"text": "a"}}),
    ("GET", "/v1/labels", {}),
    ("GET", "/v1/model", {}),
])
def test_503_without_a_model(empty_app, method, path, kwargs):
    client = empty_app.test_client()
    err = assert_error(client.open(path, method=method, **kwargs), 503, "not_ready")
    assert "Traceback" not in err["message"]


def test_empty_store_is_alive_and_serves_ops(empty_app):
    client = empty_app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert "no model loaded" in client.get("/readyz").get_json()["error"]["message"]


def test_reload_on_empty_store_fails_cleanly(empty_app):
    err = assert_error(empty_app.test_client().post("/v1/admin/reload", headers=AUTH), 409, "reload_failed")
    assert "still serving model none" in err["message"]


# -- admin reload ---------------------------------------------------------------------------------
@pytest.mark.parametrize("headers, status, code", [
    pytest.param({}, 401, "unauthorized", id="no-header"),
    pytest.param({"Authorization": ""}, 401, "unauthorized", id="empty"),
    pytest.param({"Authorization": "Bearer"}, 401, "unauthorized", id="bearer-no-token"),
    pytest.param({"Authorization": "Bearer "}, 401, "unauthorized", id="bearer-blank"),
    pytest.param({"Authorization": f"Basic {ADMIN_TOKEN}"}, 401, "unauthorized", id="basic"),
    pytest.param({"Authorization": ADMIN_TOKEN}, 401, "unauthorized", id="no-scheme"),
    pytest.param({"Authorization": "Bearer wrong-token"}, 403, "forbidden", id="wrong"),
    pytest.param({"Authorization": f"Bearer {ADMIN_TOKEN}x"}, 403, "forbidden", id="prefix-of-longer"),
    pytest.param({"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, 403, "forbidden", id="shorter"),
])
def test_reload_auth_errors(shared_client, headers, status, code):
    assert_error(shared_client.post("/v1/admin/reload", headers=headers), status, code)


@pytest.mark.parametrize("headers", [{}, AUTH, {"Authorization": "Bearer anything"}])
def test_reload_disabled_without_token(clean_env, trained_store, headers):
    client = create_app({"MODEL_DIR": str(trained_store.root)}).test_client()
    assert_error(client.post("/v1/admin/reload", headers=headers), 404, "admin_disabled")


def test_reload_token_from_environment(clean_env, trained_store):
    clean_env.setenv("CRIMETAG_ADMIN_TOKEN", "from-env")
    client = create_app({"MODEL_DIR": str(trained_store.root)}).test_client()
    assert client.post("/v1/admin/reload", headers={"Authorization": "Bearer from-env"}).status_code == 200
    assert_error(client.post("/v1/admin/reload", headers=AUTH), 403, "forbidden")


def test_reload_same_version(client, tagger):
    resp = client.post("/v1/admin/reload", headers=AUTH)
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "reloaded", "model_version": tagger.version, "previous_version": tagger.version}


def new_version(store, tagger) -> str:
    """Save the session's model again as a new current version (much faster than training)."""
    keep = {k: v for k, v in tagger.metadata.items()
            if k not in ("version", "created", "format", "model_sha256", "labels", "libraries", "signature")}
    return store.save(tagger, keep)


@pytest.fixture
def copy_client(clean_env, store_copy):
    return create_app({"MODEL_DIR": str(store_copy.root), "ADMIN_TOKEN": ADMIN_TOKEN}).test_client()


def test_reload_switches_to_the_new_current_version(copy_client, store_copy, tagger):
    old = tagger.version
    new = new_version(store_copy, tagger)
    assert new != old
    assert copy_client.post("/v1/predict", json={"text": KNIFE}).get_json()["model_version"] == old
    resp = copy_client.post("/v1/admin/reload", headers={"Authorization": f"bearer {ADMIN_TOKEN}"})
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "reloaded", "model_version": new, "previous_version": old}
    assert copy_client.post("/v1/predict", json={"text": KNIFE}).get_json()["model_version"] == new
    assert copy_client.post("/v1/predict", json={"texts": [KNIFE]}).get_json()["model_version"] == new
    assert copy_client.get("/v1/model").get_json()["version"] == new
    assert copy_client.get("/readyz").get_json()["model_version"] == new
    info = {dict(k[1]).get("version"): v for k, v in scrape(copy_client).items() if k[0] == "crimetag_model_info"}
    assert info == {old: 0, new: 1}


def _truncate_model(store, version):
    path = store.versions_dir / version / MODEL_FILE
    path.write_bytes(path.read_bytes()[:1000])


def _corrupt_metadata(store, version):
    (store.versions_dir / version / META_FILE).write_text("{not json", encoding="utf-8")


def _tamper_model(store, version):
    path = store.versions_dir / version / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _remove_version(store, version):
    import shutil

    shutil.rmtree(store.versions_dir / version)


@pytest.mark.parametrize("damage", [_truncate_model, _corrupt_metadata, _tamper_model, _remove_version])
@pytest.mark.parametrize("which", ["serving", "new"])
def test_reload_failure_keeps_the_old_model(copy_client, store_copy, tagger, damage, which):
    old = tagger.version
    target = old if which == "serving" else new_version(store_copy, tagger)
    damage(store_copy, target)
    err = assert_error(copy_client.post("/v1/admin/reload", headers=AUTH), 409, "reload_failed")
    assert f"still serving model {old}" in err["message"]
    resp = copy_client.post("/v1/predict", json={"text": KNIFE})
    assert resp.status_code == 200 and resp.get_json()["model_version"] == old
    assert copy_client.get("/readyz").get_json() == {"status": "ready", "model_version": old}
