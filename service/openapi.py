"""The OpenAPI 3 document: exactly the endpoints, bodies, responses and errors the service has."""
from __future__ import annotations


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: str | dict) -> dict:
    ref = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    return {"description": description, "content": {"application/json": {"schema": ref}}}


COMMON_ERRORS = {"405": _error("Method not allowed")}


def document(config) -> dict:
    """Build the document for this app's limits (they appear in the schemas)."""
    max_chars, max_texts = config["MAX_CHARS"], config["MAX_TEXTS"]
    predict_errors = {
        "400": _error("Malformed JSON, wrong types, empty text, unknown field (codes: malformed_json, "
                      "invalid_body, invalid_type, empty_text)"),
        "413": _error("Body, batch or text over its limit (codes: payload_too_large, too_many_texts, text_too_long)"),
        "415": _error("Body is not application/json (code: unsupported_media_type)"),
        "503": _error("No model loaded (code: not_ready)"),
        **COMMON_ERRORS,
    }
    predict_body = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}}
    predict_ok = {"description": "One result for `text`, or a batch for `texts`",
                  "content": {"application/json": {"schema": {"oneOf": [
                      {"$ref": "#/components/schemas/Result"}, {"$ref": "#/components/schemas/BatchResult"}]}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "crimetag", "version": "1",
                 "description": "Tags free text with UK crime and vulnerability categories. Errors are "
                                "always {\"error\": {\"code\", \"message\"}}; request text is never logged."},
        "paths": {
            "/v1/predict": {"post": {"summary": "Tag one text or a batch", "operationId": "predict",
                                     "requestBody": predict_body,
                                     "responses": {"200": predict_ok, **predict_errors}}},
            "/v1/explain": {"post": {"summary": "Tag and always explain", "operationId": "explain",
                                     "requestBody": predict_body,
                                     "responses": {"200": predict_ok, **predict_errors}}},
            "/v1/labels": {"get": {"summary": "The taxonomy with thresholds in use", "operationId": "labels",
                                   "responses": {"200": _ok("Labels", "Labels"),
                                                 "503": _error("No model loaded"), **COMMON_ERRORS}}},
            "/v1/model": {"get": {"summary": "Current model metadata", "operationId": "model",
                                  "responses": {"200": _ok("Metadata", "ModelMetadata"),
                                                "503": _error("No model loaded"), **COMMON_ERRORS}}},
            "/v1/admin/reload": {"post": {
                "summary": "Load the store's current model in every worker", "operationId": "reload",
                "security": [{"bearer": []}],
                "responses": {"200": _ok("Reloaded", "Reload"),
                              "401": _error("No bearer token (code: unauthorized)"),
                              "403": _error("Wrong token (code: forbidden)"),
                              "404": _error("Admin disabled: no token configured (code: admin_disabled)"),
                              "409": _error("The model failed to load or verify; the old one still serves (code: reload_failed)"),
                              **COMMON_ERRORS}}},
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz",
                                 "responses": {"200": _ok("Alive", "Health"), **COMMON_ERRORS}}},
            "/readyz": {"get": {"summary": "Readiness: a model is loaded", "operationId": "readyz",
                                "responses": {"200": _ok("Ready", "Ready"), "503": _error("Not ready (code: not_ready)"),
                                              **COMMON_ERRORS}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                                 "responses": {"200": {"description": "Prometheus text format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}},
                                               **COMMON_ERRORS}}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                      "responses": {"200": _ok("OpenAPI document", {"type": "object"}), **COMMON_ERRORS}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {
                    "error": {"type": "object", "required": ["code", "message"], "additionalProperties": False,
                              "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "PredictRequest": {
                    "type": "object", "additionalProperties": False,
                    "description": "Exactly one of `text` or `texts`.",
                    "oneOf": [{"required": ["text"]}, {"required": ["texts"]}],
                    "properties": {
                        "text": {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": "\\S",
                                 "description": "At least one non-whitespace character."},
                        "texts": {"type": "array", "minItems": 1, "maxItems": max_texts,
                                  "items": {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": "\\S"}},
                        "explain": {"type": "boolean", "default": False}}},
                "Evidence": {"type": "object", "required": ["text", "start", "end", "weight"], "properties": {
                    "text": {"type": "string"}, "start": {"type": "integer", "minimum": 0},
                    "end": {"type": "integer", "minimum": 0}, "weight": {"type": "number"}}},
                "LabelScore": {"type": "object", "required": ["label", "score"], "properties": {
                    "label": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1},
                    "evidence": {"type": "array", "items": {"$ref": "#/components/schemas/Evidence"}}}},
                "Result": {"type": "object", "required": ["model_version", "labels", "scores"], "properties": {
                    "model_version": {"type": "string"},
                    "labels": {"type": "array", "items": {"$ref": "#/components/schemas/LabelScore"}},
                    "scores": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}}}},
                "BatchResult": {"type": "object", "required": ["model_version", "results"], "properties": {
                    "model_version": {"type": "string"},
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}}}},
                "Labels": {"type": "object", "required": ["model_version", "labels"], "properties": {
                    "model_version": {"type": "string"},
                    "labels": {"type": "array", "items": {"type": "object", "required": ["id", "name", "threshold"],
                               "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                              "description": {"type": "string"},
                                              "threshold": {"type": "number", "minimum": 0, "maximum": 1}}}}}},
                "ModelMetadata": {"type": "object",
                                  "required": ["version", "created", "trained_at", "labels", "libraries", "metrics"],
                                  "properties": {"version": {"type": "string"}, "created": {"type": "string"},
                                                 "trained_at": {"type": "string", "format": "date-time"},
                                                 "profile": {"type": "string"},
                                                 "data": {"type": "object"}, "metrics": {"type": "object"},
                                                 "libraries": {"type": "object"},
                                                 "labels": {"type": "array", "items": {"type": "object"}}}},
                "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}},
                "Ready": {"type": "object", "required": ["status", "model_version"], "properties": {
                    "status": {"type": "string", "enum": ["ready"]}, "model_version": {"type": "string"}}},
                "Reload": {"type": "object", "required": ["status", "model_version"], "properties": {
                    "status": {"type": "string", "enum": ["reloaded"]}, "model_version": {"type": "string"},
                    "previous_version": {"type": "string", "nullable": True}}},
            },
        },
    }
