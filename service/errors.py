"""Every error as `{"error": {"code", "message"}}` with its status: the service's one error handler.

Domain errors know nothing about HTTP; their statuses are decided here. Messages never carry
request text, and unexpected exceptions become a bare 500 whose log line names only the type.
"""
from __future__ import annotations

import logging

from flask import Flask, g, jsonify
from werkzeug.exceptions import HTTPException

from model.errors import CrimetagError, IncompatibleModel, IntegrityError, InvalidInput, ModelNotFound, StoreError

log = logging.getLogger("crimetag.service")

INPUT_STATUS = {"text_too_long": 413, "too_many_texts": 413}
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
              415: "unsupported_media_type"}


class ApiError(Exception):
    """An error the API answers with a given status and code (auth, readiness, media type)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str):
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    g.error_code = code
    return resp


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(InvalidInput)
    def _invalid(exc: InvalidInput):
        return error_response(INPUT_STATUS.get(exc.code, 400), exc.code, exc.message)

    @app.errorhandler(ModelNotFound)
    def _not_ready(exc: ModelNotFound):
        return error_response(503, "not_ready", f"no model loaded: {exc.message}")

    @app.errorhandler(CrimetagError)
    def _other(exc: CrimetagError):
        status = 409 if isinstance(exc, (IntegrityError, IncompatibleModel, StoreError)) else 400
        return error_response(status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        messages = {400: "the request body is not valid JSON", 413: "the request body is too large",
                    405: "method not allowed for this endpoint", 404: "no such endpoint"}
        resp = error_response(status, HTTP_CODES.get(status, "http_error"), messages.get(status, exc.name))
        if getattr(exc, "valid_methods", None):  # a 405 must say which methods the endpoint allows
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.error("unhandled %s on request %s", type(exc).__name__, g.get("request_id", "-"))
        return error_response(500, "internal_error", "internal error; see the server log by request id")
