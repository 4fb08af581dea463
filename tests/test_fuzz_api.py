"""Schemathesis fuzzes every operation of the served /openapi.json through the Flask app (WSGI).

Valid (positive) and invalid (negative) requests are generated from the document the app serves;
every response must be a non-5xx with a documented status code, the documented content type and
a body matching its schema. Examples per operation and mode are bounded so this runs in
`make test`.

The operations are driven through `APIOperation.as_strategy` under plain hypothesis rather than
`schemathesis.pytest.from_fixture`: that loader reads `request.node._nodeid`, which pytest 9
removed (AttributeError at call time with schemathesis 4.32 / pytest 9.2).
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from service.config import DEFAULTS
from service.openapi import document
from tests.conftest import ADMIN_TOKEN

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 25
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
# The operations of the document (a pure function of the limits; no model needed to list them).
OPERATIONS = sorted((path, method.upper()) for path, item in document(DEFAULTS)["paths"].items() for method in item)
# Negative data exists only where the client sends something: the request bodies.
CASES = [(path, method, mode) for path, method in OPERATIONS for mode in GenerationMode
         if mode is GenerationMode.POSITIVE or "requestBody" in document(DEFAULTS)["paths"][path][method.lower()]]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def api_schema(app):
    """The document exactly as the app serves it, bound to the app for WSGI calls."""
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def fuzz(operation, mode: GenerationMode, headers: dict | None = None) -> set[int]:
    """Run the checks on up to MAX_EXAMPLES generated cases; the statuses seen."""
    seen: set[int] = set()

    @FUZZ
    @given(case=operation.as_strategy(mode))
    def run(case):
        seen.add(case.call_and_validate(headers=headers, checks=CHECKS).status_code)

    run()
    return seen


def test_the_served_document_lists_every_operation(api_schema):
    served = {(op.ok().path, op.ok().method.upper()) for op in api_schema.get_all_operations()}
    assert served | {("/openapi.json", "GET")} == set(OPERATIONS)


@pytest.mark.parametrize("path, method, mode", CASES, ids=lambda v: getattr(v, "value", v))
def test_operation_conforms(api_schema, path, method, mode):
    """Whatever the generator sends, valid or not: no 5xx, and every response is as documented."""
    seen = fuzz(api_schema[path][method], mode)
    assert seen and all(status < 500 for status in seen)


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_authorised_reload_conforms(api_schema, mode):
    """With the right token, reload answers as documented too (200 with the Reload body)."""
    seen = fuzz(api_schema["/v1/admin/reload"]["POST"], mode, headers=AUTH)
    assert 200 in seen or mode is GenerationMode.NEGATIVE, seen


@pytest.mark.parametrize("body", [{"text": " "}, {"text": "\t\n"}, {"texts": ["fine text", "\u3000"]},
                                  {"text": "\x00"}, {"text": "\u200b"}],
                         ids=["space", "tab-newline", "ideographic-space-in-batch", "nul", "zero-width-space"])
def test_the_schema_admits_exactly_the_texts_the_server_accepts(client, body):
    """SPEC 4: /openapi.json "describes exactly what the server does": a body the served
    PredictRequest schema admits is scored, and one the server refuses as empty is not admitted.
    (Before `"pattern": "\\S"` the schema admitted whitespace-only texts that `check_text` refuses.)"""
    import jsonschema

    served = client.get("/openapi.json").get_json()
    schema = {**served["components"]["schemas"]["PredictRequest"], "components": served["components"]}
    admitted = jsonschema.Draft4Validator(schema).is_valid(body)
    resp = client.post("/v1/predict", json=body)
    assert admitted == (resp.status_code == 200), (admitted, resp.status_code, resp.get_json())
