"""The OpenAPI document is valid, covers exactly the app's routes, and real responses match its schemas."""
from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from service import create_app
from tests.conftest import ADMIN_TOKEN

DOC_URI = "urn:crimetag:openapi"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
AUTOMATIC = {"HEAD", "OPTIONS"}  # added by Flask to every rule; not API operations
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KNIFE = "Caller reports her ex-partner is outside with a knife, breaching his non-molestation order."


@pytest.fixture(scope="module")
def apps(trained_store, tmp_path_factory):
    """Three apps: serving, no model in the store, admin disabled (tables below use all three)."""
    import os

    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("CRIMETAG_")]:
            mp.delenv(key)
        root = str(trained_store.root)
        return {
            "serving": create_app({"MODEL_DIR": root, "ADMIN_TOKEN": ADMIN_TOKEN}),
            "empty": create_app({"MODEL_DIR": str(tmp_path_factory.mktemp("empty")), "ADMIN_TOKEN": ADMIN_TOKEN}),
            "no-admin": create_app({"MODEL_DIR": root}),
        }


@pytest.fixture(scope="module")
def doc(apps) -> dict:
    resp = apps["serving"].test_client().get("/openapi.json")
    assert resp.status_code == 200
    return resp.get_json()


def to_json_schema(node):
    """OpenAPI 3.0 schema objects -> JSON Schema: `nullable: true` becomes "or null", and local
    references point into the document (registered as DOC_URI) wherever the schema is used."""
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if isinstance(out.get("$ref"), str) and out["$ref"].startswith("#"):
        out["$ref"] = DOC_URI + out["$ref"]
    return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") is True else out


def validator(doc: dict, schema: dict) -> jsonschema.Draft4Validator:
    """A validator for `schema` (from `doc`) with its `#/components/...` references resolved in `doc`."""
    resource = Resource.from_contents(to_json_schema(doc), default_specification=DRAFT4)
    return jsonschema.Draft4Validator(to_json_schema(schema), registry=Registry().with_resource(DOC_URI, resource))


def refs(node, found=None) -> set[str]:
    found = set() if found is None else found
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                found.add(v)
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)
    return found


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


# -- the document itself ---------------------------------------------------------------------------
def test_document_passes_openapi_spec_validator(doc):
    validate = pytest.importorskip("openapi_spec_validator").validate
    validate(copy.deepcopy(doc))


# The subset of OpenAPI 3.0 this document uses, as a JSON Schema: a structural check that needs
# nothing beyond jsonschema.
_MEDIA = {"type": "object", "required": ["schema"], "properties": {"schema": {"type": "object"}}}
_RESPONSE = {"type": "object", "required": ["description"], "additionalProperties": False, "properties": {
    "description": {"type": "string"}, "headers": {"type": "object"},
    "content": {"type": "object", "minProperties": 1, "additionalProperties": _MEDIA}}}
_OPERATION = {"type": "object", "required": ["responses", "operationId"], "additionalProperties": False, "properties": {
    "summary": {"type": "string"}, "description": {"type": "string"}, "operationId": {"type": "string"},
    "tags": {"type": "array"}, "parameters": {"type": "array"}, "security": {"type": "array"},
    "requestBody": {"type": "object", "required": ["content"], "properties": {
        "required": {"type": "boolean"}, "content": {"type": "object", "additionalProperties": _MEDIA}}},
    "responses": {"type": "object", "minProperties": 1, "additionalProperties": False,
                  "patternProperties": {"^([1-5][0-9][0-9]|default)$": _RESPONSE}}}}
OPENAPI_30_SUBSET = {
    "type": "object", "required": ["openapi", "info", "paths"], "properties": {
        "openapi": {"type": "string", "pattern": r"^3\.0\.\d+$"},
        "info": {"type": "object", "required": ["title", "version"]},
        "paths": {"type": "object", "additionalProperties": False, "patternProperties": {
            "^/": {"type": "object", "minProperties": 1, "additionalProperties": False,
                   "properties": {m: _OPERATION for m in HTTP_METHODS}}}},
        "components": {"type": "object", "properties": {
            "schemas": {"type": "object", "additionalProperties": {"type": "object"}},
            "securitySchemes": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["type"]}}}}}}


def test_document_structure(doc):
    jsonschema.Draft4Validator(OPENAPI_30_SUBSET).validate(doc)
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))
    for _, _, op in operations(doc):
        for scheme in (s for req in op.get("security", []) for s in req):
            assert scheme in doc["components"]["securitySchemes"]


def test_every_ref_resolves_and_every_schema_is_valid(doc):
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft4Validator.check_schema(to_json_schema(schema))
    used = {r.rsplit("/", 1)[1] for r in refs(doc)}
    assert used == set(doc["components"]["schemas"]), "unused or missing component schemas"


@pytest.mark.parametrize("schema, instance", [
    ("Error", {"error": {"code": "x", "message": "y", "trace": "z"}}),
    ("Error", {"error": {"code": "x"}}),
    ("Result", {"model_version": "v", "labels": [{"label": "a", "score": 1.5}], "scores": {}}),
    ("Result", {"model_version": "v", "labels": [{"label": "a", "score": 0.5, "evidence": [{"text": "a"}]}],
                "scores": {}}),
    ("BatchResult", {"model_version": "v", "results": [{"model_version": "v", "labels": []}]}),
    ("Reload", {"status": "reloaded", "model_version": 3}),
])
def test_schemas_reject_wrong_shapes(doc, schema, instance):
    """The response checks below are not vacuous: references resolve and constraints bite."""
    assert not validator(doc, {"$ref": f"#/components/schemas/{schema}"}).is_valid(instance)


def test_nullable_is_understood(doc):
    reload = validator(doc, {"$ref": "#/components/schemas/Reload"})
    assert reload.is_valid({"status": "reloaded", "model_version": "v", "previous_version": None})


def test_document_is_json_serialisable_and_stable(apps, doc):
    again = apps["serving"].test_client().get("/openapi.json").get_json()
    assert again == doc and json.loads(json.dumps(doc)) == doc


# -- routes <-> paths -------------------------------------------------------------------------------
def flask_operations(app) -> set[tuple[str, str]]:
    ops = set()
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<", "{").replace(">", "}")
        ops |= {(path, m.lower()) for m in rule.methods - AUTOMATIC}
    return ops


def test_every_route_is_documented_and_nothing_else(apps, doc):
    documented = {(path, method) for path, method, _ in operations(doc)}
    for app in apps.values():
        assert flask_operations(app) == documented


# -- real responses against the document --------------------------------------------------------------
CASES = [
    # (id, app, method, path, request kwargs, status)
    ("predict-one", "serving", "POST", "/v1/predict", {"json": {"text": KNIFE}}, 200),
    ("predict-batch", "serving", "POST", "/v1/predict", {"json": {"texts": [KNIFE, "Nice day."]}}, 200),
    ("predict-explain", "serving", "POST", "/v1/predict", {"json": {"text": KNIFE, "explain": True}}, 200),
    ("explain-one", "serving", "POST", "/v1/explain", {"json": {"text": KNIFE}}, 200),
    ("explain-batch", "serving", "POST", "/v1/explain", {"json": {"texts": [KNIFE, KNIFE]}}, 200),
    ("labels", "serving", "GET", "/v1/labels", {}, 200),
    ("model", "serving", "GET", "/v1/model", {}, 200),
    ("healthz", "serving", "GET", "/healthz", {}, 200),
    ("readyz", "serving", "GET", "/readyz", {}, 200),
    ("metrics", "serving", "GET", "/metrics", {}, 200),
    ("openapi", "serving", "GET", "/openapi.json", {}, 200),
    ("reload", "serving", "POST", "/v1/admin/reload", {"headers": AUTH}, 200),
    ("malformed-json", "serving", "POST", "/v1/predict", {"data": "{", "content_type": "application/json"}, 400),
    ("invalid-body", "serving", "POST", "/v1/predict", {"json": [1]}, 400),
    ("invalid-type", "serving", "POST", "/v1/explain", {"json": {"text": 1}}, 400),
    ("empty-text", "serving", "POST", "/v1/predict", {"json": {"texts": []}}, 400),
    ("too-many-texts", "serving", "POST", "/v1/predict", {"json": {"texts": ["a"] * 257}}, 413),
    ("text-too-long", "serving", "POST", "/v1/explain", {"json": {"text": "a" * 20_001}}, 413),
    ("payload-too-large", "serving", "POST", "/v1/predict",
     {"data": "x" * (4 * 1024 * 1024 + 1), "content_type": "application/json"}, 413),
    ("not-json", "serving", "POST", "/v1/predict", {"data": "text=a", "content_type": "text/plain"}, 415),
    ("reload-no-token", "serving", "POST", "/v1/admin/reload", {}, 401),
    ("reload-wrong-token", "serving", "POST", "/v1/admin/reload", {"headers": {"Authorization": "Bearer no"}}, 403),
    ("reload-disabled", "no-admin", "POST", "/v1/admin/reload", {"headers": AUTH}, 404),
    ("reload-failed", "empty", "POST", "/v1/admin/reload", {"headers": AUTH}, 409),
    ("predict-not-ready", "empty", "POST", "/v1/predict", {"json": {"text": "a"}}, 503),
    ("explain-not-ready", "empty", "POST", "/v1/explain", {"json": {"text": "a"}}, 503),
    ("labels-not-ready", "empty", "GET", "/v1/labels", {}, 503),
    ("model-not-ready", "empty", "GET", "/v1/model", {}, 503),
    ("readyz-not-ready", "empty", "GET", "/readyz", {}, 503),
    ("healthz-empty", "empty", "GET", "/healthz", {}, 200),
]


@pytest.mark.parametrize("app_name, method, path, kwargs, status",
                         [pytest.param(*row[1:], id=row[0]) for row in CASES])
def test_response_matches_document(apps, doc, app_name, method, path, kwargs, status):
    resp = apps[app_name].test_client().open(path, method=method, **kwargs)
    assert resp.status_code == status, resp.get_data(as_text=True)
    documented = doc["paths"][path][method.lower()]["responses"]
    assert str(status) in documented, f"{method} {path} answered {status}, which the document does not list"
    content = documented[str(status)]["content"]
    assert resp.mimetype in content, f"{resp.mimetype} not documented for {status}"
    if resp.mimetype == "application/json":
        validator(doc, content[resp.mimetype]["schema"]).validate(resp.get_json())
    else:
        assert resp.get_data(as_text=True)


@pytest.mark.parametrize("method, path", [("GET", "/v1/predict"), ("DELETE", "/v1/explain"), ("POST", "/v1/labels"),
                                          ("POST", "/v1/model"), ("GET", "/v1/admin/reload"), ("POST", "/healthz"),
                                          ("POST", "/readyz"), ("POST", "/metrics"), ("POST", "/openapi.json")])
def test_405_matches_document(apps, doc, method, path):
    resp = apps["serving"].test_client().open(path, method=method)
    assert resp.status_code == 405
    allowed = {m.strip().lower() for m in resp.headers["Allow"].split(",")} - {"head", "options"}
    assert allowed == {m for m in doc["paths"][path] if m in HTTP_METHODS}
    for m in allowed:
        schema = doc["paths"][path][m]["responses"]["405"]["content"]["application/json"]["schema"]
        validator(doc, schema).validate(resp.get_json())


def test_404_body_matches_error_schema(apps, doc):
    resp = apps["serving"].test_client().get("/no/such/path")
    assert resp.status_code == 404
    validator(doc, {"$ref": "#/components/schemas/Error"}).validate(resp.get_json())


# -- requests against the document ----------------------------------------------------------------------
GOOD = [{"text": "a"}, {"texts": ["a", "b"]}, {"text": "a", "explain": True}, {"texts": ["a"], "explain": False}]
BAD = [{}, {"explain": True}, {"text": "a", "texts": ["b"]}, {"text": "a", "lang": "en"}, {"text": 1},
       {"text": None}, {"texts": "a"}, {"texts": []}, {"texts": ["a", 2]}, {"text": "a", "explain": "yes"},
       {"text": ""}, {"texts": ["a"] * 257}, {"text": "a" * 20_001}, [], "a"]


@pytest.mark.parametrize("body", GOOD)
def test_request_the_document_accepts_is_served(apps, doc, body):
    schema = doc["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator(doc, schema).validate(body)
    assert apps["serving"].test_client().post("/v1/predict", json=body).status_code == 200


@pytest.mark.parametrize("body", BAD, ids=[json.dumps(b)[:40] for b in BAD])
def test_request_the_document_rejects_is_refused(apps, doc, body):
    schema = doc["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert not validator(doc, schema).is_valid(body)
    assert apps["serving"].test_client().post("/v1/predict", json=body).status_code in (400, 413)
