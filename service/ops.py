"""Operational endpoints outside /v1: liveness, readiness, metrics, the OpenAPI document."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .errors import ApiError
from .openapi import document

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    holder = current_app.extensions["crimetag"]
    if holder.tagger is None:
        raise ApiError(503, "not_ready", f"no model loaded: {holder.last_error or 'not loaded yet'}")
    return jsonify({"status": "ready", "model_version": holder.tagger.version})


@bp.get("/metrics")
def metrics():
    body = current_app.extensions["crimetag_metrics"].render()
    return Response(body, mimetype="text/plain; version=0.0.4")


@bp.get("/openapi.json")
def openapi():
    return jsonify(document(current_app.config))
