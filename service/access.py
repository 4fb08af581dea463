"""Request ids, one structured access line per request, and request metrics.

The line holds method, route, status, latency, request id, number of texts and characters:
never the text, never the raw path (a path can carry text), never a header value.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid

from flask import Flask, g, request

log = logging.getLogger("crimetag.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _Stderr(logging.StreamHandler):
    """Writes to sys.stderr as it is at each record, not as it was when the first app was built
    (a host or test harness that redirects stderr later still gets every line)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging() -> None:
    """Send crimetag's loggers to stderr, one line each, unless the host app configured them."""
    root = logging.getLogger("crimetag")
    if not root.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


def register(app: Flask) -> None:
    metrics = app.extensions["crimetag_metrics"]
    holder = app.extensions["crimetag"]

    @app.before_request
    def _start():
        g.t0 = time.perf_counter()
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        holder.follow()

    @app.after_request
    def _finish(resp):
        seconds = time.perf_counter() - g.get("t0", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "<unmatched>"
        resp.headers["X-Request-Id"] = g.get("request_id", "-")
        metrics.observe(endpoint, request.method, resp.status_code, seconds)
        if app.config["ACCESS_LOG"]:
            log.info(json.dumps({
                "event": "request", "method": request.method, "route": endpoint, "status": resp.status_code,
                "latency_ms": round(seconds * 1000, 3), "request_id": g.get("request_id"),
                "texts": g.get("n_texts", 0), "chars": g.get("n_chars", 0),
                "error": g.get("error_code"), "pid": os.getpid(),
            }))
        return resp
