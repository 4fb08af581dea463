"""The /v1 blueprint: predict (single and batch), explain, labels, model metadata, admin reload."""
from __future__ import annotations

import hmac
import json
import re

from flask import Blueprint, current_app, g, jsonify, request

from model.errors import CrimetagError, InvalidInput
from model.text import check_text

from .errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/v1")
# Unknown keys are named in the error only when they look like field names: a key is client
# data too, and an error message never carries request text.
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


def holder():
    return current_app.extensions["crimetag"]


def ready_tagger():
    """The serving model, or 503 not_ready."""
    tagger = holder().tagger
    if tagger is None:
        raise ApiError(503, "not_ready", "no model is loaded yet")
    return tagger


def _limits():
    return current_app.extensions["crimetag_limits"]


def json_body() -> dict:
    """The request's JSON object, or the right 413/415/400 error.

    Reads the WSGI environ directly (werkzeug's header parsing and stream wrappers cost tens of
    microseconds per request on cold caches); a body without a usable Content-Length (chunked)
    goes through werkzeug, which enforces the size limit while reading.
    """
    lim = _limits()
    environ = request.environ
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length > lim.max_body_bytes:
        raise ApiError(413, "payload_too_large", f"the request body is over {lim.max_body_bytes} bytes")
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = environ["wsgi.input"].read(length) if length >= 0 else request.get_data(cache=False)
    if len(raw) > lim.max_body_bytes:
        raise ApiError(413, "payload_too_large", f"the request body is over {lim.max_body_bytes} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deeply
        raise ApiError(400, "malformed_json", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    return body


def parse_predict(body: dict, *, force_explain: bool = False) -> tuple[list[str], bool, bool]:
    """Validate a predict body: exactly one of text/texts, optional boolean explain."""
    lim = _limits()
    unknown = set(body) - {"text", "texts", "explain"}
    if unknown:
        named = sorted(k for k in unknown if _FIELD_NAME.match(k))[:10]
        more = len(unknown) - len(named)
        listed = ", ".join(named + ([f"{more} other(s)"] if more else []))
        raise ApiError(400, "invalid_body", f"unknown field(s): {listed}; allowed: text, texts, explain")
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        raise InvalidInput("'explain' must be true or false", code="invalid_type")
    if ("text" in body) == ("texts" in body):
        raise ApiError(400, "invalid_body", "send exactly one of 'text' (a string) or 'texts' (a list of strings)")
    if "text" in body:
        texts, single = [check_text(body["text"], lim, where="'text'")], True
    else:
        raw = body["texts"]
        if not isinstance(raw, list):
            raise InvalidInput(f"'texts' must be a list of strings, got {type(raw).__name__}", code="invalid_type")
        if not raw:
            raise InvalidInput("'texts' is empty", code="empty_text")
        if len(raw) > lim.max_texts:
            raise InvalidInput(f"'texts' has {len(raw)} items; the limit is {lim.max_texts}", code="too_many_texts")
        texts, single = [check_text(t, lim, where=f"texts[{i}]") for i, t in enumerate(raw)], False
    g.n_texts, g.n_chars = len(texts), sum(map(len, texts))
    return texts, explain or force_explain, single


def _predict(force_explain: bool):
    body = json_body()
    tagger = ready_tagger()
    texts, explain, single = parse_predict(body, force_explain=force_explain)
    metrics = current_app.extensions["crimetag_metrics"]
    if single and not explain:  # the hot path: JSON text straight from the scores
        body, labels = tagger.predict_json(texts[0])
        metrics.scored(1, labels)
        return current_app.response_class(body + "\n", mimetype="application/json")
    results = tagger.predict(texts, explain=explain)
    metrics.scored(len(results), [e["label"] for r in results for e in r["labels"]])
    return _json(results[0] if single else {"model_version": tagger.version, "results": results})


_encode = json.JSONEncoder(separators=(",", ":")).encode


def _json(obj: dict):
    """The same body as `jsonify` in production (compact, keys in order), without its per-call set-up:
    predict is the hot path."""
    return current_app.response_class(_encode(obj) + "\n", mimetype="application/json")


@bp.post("/predict")
def predict():
    """Tag one text ({"text"}) or a batch ({"texts"}); "explain": true adds evidence."""
    return _predict(False)


@bp.post("/explain")
def explain():
    """As predict, always with evidence for each returned label."""
    return _predict(True)


@bp.get("/labels")
def labels():
    tagger = ready_tagger()
    return jsonify({"model_version": tagger.version, "labels": [
        {**rec, "threshold": round(float(t), 6)} for rec, t in zip(tagger.taxonomy.to_records(), tagger.thresholds)]})


@bp.get("/model")
def model_info():
    tagger = ready_tagger()
    meta = {k: v for k, v in tagger.metadata.items() if k != "signature"}
    meta.setdefault("trained_at", meta.get("created"))  # SPEC 4 names the training time `trained_at`
    return jsonify(meta)


def require_admin() -> None:
    """Bearer-token check for admin endpoints (constant-time); disabled with no token set."""
    token = current_app.config.get("ADMIN_TOKEN")
    if not token:
        raise ApiError(404, "admin_disabled", "admin endpoints are disabled: set CRIMETAG_ADMIN_TOKEN")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <admin token>")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(403, "forbidden", "the admin token is not valid")


@bp.post("/admin/reload")
def reload():
    """Load the store's current model; on failure the old model keeps serving."""
    require_admin()
    old = holder().tagger
    try:
        tagger = holder().reload()
    except CrimetagError as exc:
        serving = old.version if old else "none"
        raise ApiError(409, "reload_failed", f"{exc.message}; still serving model {serving}") from None
    return jsonify({"status": "reloaded", "model_version": tagger.version,
                    "previous_version": old.version if old else None})
