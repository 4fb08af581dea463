"""No request text and no admin token in any log line or process output, on every path; the access line's shape."""
from __future__ import annotations

import json
import logging
import os
from urllib.parse import quote

import pytest

from service import create_app

SENTENCE = "Zephyrine Quillfeather told officers her brother-in-law took her passport in Wolverhampton"
FRAGMENTS = (SENTENCE, "Zephyrine", "Quillfeather", "Wolverhampton", quote(SENTENCE), json.dumps(SENTENCE))
TOKEN = "adm1n-Tok3n-e5b7c0d2f9"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMITS = {"MAX_CHARS": 500, "MAX_TEXTS": 4, "MAX_BODY_BYTES": 8192}
ACCESS_KEYS = {"method", "route", "status", "latency_ms", "request_id", "texts", "chars"}


@pytest.fixture(scope="module")
def private_app(trained_store):
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("CRIMETAG_")]:
            mp.delenv(key)
        return create_app({"MODEL_DIR": str(trained_store.root), "ADMIN_TOKEN": TOKEN, **LIMITS})


@pytest.fixture
def all_logs(caplog):
    """caplog at DEBUG on every logger, including those that do not propagate to the root."""
    caplog.set_level(logging.DEBUG)
    attached = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger):
            continue
        caplog.set_level(logging.DEBUG, logger=name)
        if not logger.propagate and caplog.handler not in logger.handlers:
            logger.addHandler(caplog.handler)
            attached.append(logger)
    yield caplog
    for logger in attached:
        logger.removeHandler(caplog.handler)


def everything_logged(caplog, capfd) -> str:
    """Every record (message, raw args, exception text) and everything written to fd 1 and 2."""
    parts = []
    for r in caplog.records:
        parts += [r.getMessage(), str(r.msg), repr(r.args), r.exc_text or "", str(r.exc_info or "")]
        if r.exc_info and r.exc_info[1] is not None:
            parts.append(repr(r.exc_info[1]))
    out, err = capfd.readouterr()
    return "\n".join(parts + [caplog.text, out, err])


def assert_private(text: str) -> None:
    for secret in FRAGMENTS + (TOKEN,):
        assert secret not in text, f"{secret!r} leaked into the logs"


def access_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "crimetag.access"]


def body(obj) -> dict:
    return {"data": json.dumps(obj), "content_type": "application/json"}


S = SENTENCE
CASES = [
    # (id, method, path, request kwargs, status, texts, chars in the access line)
    ("predict", "POST", "/v1/predict", body({"text": S}), 200, 1, len(S)),
    ("predict-batch-explain", "POST", "/v1/predict", body({"texts": [S, S], "explain": True}), 200, 2, 2 * len(S)),
    ("explain", "POST", "/v1/explain", body({"text": S}), 200, 1, len(S)),
    ("malformed-json", "POST", "/v1/predict", {"data": '{"text": "' + S, "content_type": "application/json"}, 400, 0, 0),
    ("bad-utf8", "POST", "/v1/predict", {"data": S.encode() + b"\xff\xfe", "content_type": "application/json"}, 400, 0, 0),
    ("nested-too-deep", "POST", "/v1/predict", {"data": "[" * 5_000 + json.dumps(S), "content_type": "application/json"}, 400, 0, 0),
    ("not-an-object", "POST", "/v1/predict", body([S]), 400, 0, 0),
    ("text-too-long", "POST", "/v1/predict", body({"text": S * 6}), 413, 0, 0),
    ("batch-item-too-long", "POST", "/v1/explain", body({"texts": [S, S * 6]}), 413, 0, 0),
    ("too-many-texts", "POST", "/v1/predict", body({"texts": [S] * 5}), 413, 0, 0),
    ("body-too-large", "POST", "/v1/predict", body({"text": S * 100}), 413, 0, 0),
    ("texts-not-a-list", "POST", "/v1/predict", body({"texts": S}), 400, 0, 0),
    ("text-not-a-string", "POST", "/v1/predict", body({"text": [S]}), 400, 0, 0),
    ("explain-not-bool", "POST", "/v1/predict", body({"text": S, "explain": S}), 400, 0, 0),
    ("unknown-field-value", "POST", "/v1/predict", body({"text": "a", "note": S}), 400, 0, 0),
    ("unknown-field-key", "POST", "/v1/predict", body({"text": "a", S: "a"}), 400, 0, 0),
    ("text-and-texts", "POST", "/v1/predict", body({"text": S, "texts": [S]}), 400, 0, 0),
    ("blank-in-batch", "POST", "/v1/predict", body({"texts": [S, " "]}), 400, 0, 0),
    ("not-json", "POST", "/v1/predict", {"data": S, "content_type": "text/plain"}, 415, 0, 0),
    ("wrong-method", "GET", "/v1/predict", body({"text": S}), 405, 0, 0),
    ("path", "GET", "/v1/predict/" + quote(S), {}, 404, 0, 0),
    ("path-and-query", "POST", "/v1/" + quote(S), {"query_string": {"q": S}, **body({"text": S})}, 404, 0, 0),
    ("request-id", "POST", "/v1/predict", {"headers": {"X-Request-Id": S}, **body({"text": S})}, 200, 1, len(S)),
    ("token-is-sentence", "POST", "/v1/admin/reload", {"headers": {"Authorization": f"Bearer {S}"}}, 403, 0, 0),
    ("basic-auth-sentence", "POST", "/v1/admin/reload", {"headers": {"Authorization": f"Basic {S}"}}, 401, 0, 0),
    ("token-prefix", "POST", "/v1/admin/reload", {"headers": {"Authorization": f"Bearer {TOKEN}x"}}, 403, 0, 0),
    ("reload-ok", "POST", "/v1/admin/reload", {"headers": AUTH}, 200, 0, 0),
]


@pytest.mark.parametrize("method, path, kwargs, status, texts, chars", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_nothing_private_in_logs(private_app, all_logs, capfd, method, path, kwargs, status, texts, chars):
    resp = private_app.test_client().open(path, method=method, **kwargs)
    assert resp.status_code == status, resp.get_data(as_text=True)
    if status >= 400:  # an error never echoes the request either
        assert_private(resp.get_data(as_text=True))
        assert set(resp.get_json()) == {"error"}

    logged = everything_logged(all_logs, capfd)
    assert_private(logged)
    (line,) = access_lines(all_logs)
    assert ACCESS_KEYS <= set(line)
    assert line["method"] == method and line["status"] == status
    assert line["route"] == (path if status not in (404, 405) else "<unmatched>")  # never the raw path
    assert isinstance(line["latency_ms"], (int, float)) and line["latency_ms"] >= 0
    assert line["request_id"] == resp.headers["X-Request-Id"]
    assert (line["texts"], line["chars"]) == (texts, chars)
    if status >= 400:
        assert line["error"] == resp.get_json()["error"]["code"]
    assert json.dumps(line) in logged  # the line reached stderr too: the capture above saw the output


def test_access_line_keeps_a_safe_request_id(private_app, all_logs, capfd):
    resp = private_app.test_client().post("/v1/predict", json={"text": S}, headers={"X-Request-Id": "case-42.a_b"})
    assert resp.headers["X-Request-Id"] == "case-42.a_b"
    (line,) = access_lines(all_logs)
    assert line["request_id"] == "case-42.a_b" and line["route"] == "/v1/predict"
    assert_private(everything_logged(all_logs, capfd))


def test_unexpected_error_logs_only_its_type(clean_env, trained_store, all_logs, capfd):
    """A crash whose exception message holds the text: a bare 500, and the log names only the type."""
    app = create_app({"MODEL_DIR": str(trained_store.root), "ADMIN_TOKEN": TOKEN})
    tagger = app.extensions["crimetag"].tagger

    def explode(texts, explain=False):
        raise RuntimeError(f"could not score {texts[0]!r} with token {TOKEN}")

    clean_env.setattr(tagger, "predict", explode)
    clean_env.setattr(tagger, "predict_json", lambda text: explode([text]))
    resp = app.test_client().post("/v1/predict", json={"text": S})
    assert resp.status_code == 500
    assert resp.get_json() == {"error": {"code": "internal_error",
                                         "message": "internal error; see the server log by request id"}}
    logged = everything_logged(all_logs, capfd)
    assert_private(logged)
    assert "RuntimeError" in logged and resp.headers["X-Request-Id"] in logged
    assert "Traceback" not in logged


def test_failed_reload_logs_nothing_private(clean_env, store_copy, all_logs, capfd):
    from model.store import MODEL_FILE

    app = create_app({"MODEL_DIR": str(store_copy.root), "ADMIN_TOKEN": TOKEN})
    (store_copy.versions_dir / store_copy.current_version() / MODEL_FILE).write_bytes(b"not a model")
    assert app.test_client().post("/v1/admin/reload", headers=AUTH).status_code == 409
    assert app.test_client().post("/v1/predict", json={"text": S}).status_code == 200
    assert_private(everything_logged(all_logs, capfd))
