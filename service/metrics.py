"""Prometheus metrics: requests by endpoint and status, latency, texts scored, labels returned,
the serving model version; per-process registry, or multiprocess mode under gunicorn."""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The service's metric objects, owned by one app (no module-level registry)."""

    def __init__(self, multiprocess_mode: bool = False):
        self.multiprocess = multiprocess_mode and bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        reg = None if self.multiprocess else CollectorRegistry()
        self.registry = reg
        self.requests = Counter("crimetag_http_requests_total", "HTTP requests by endpoint and status",
                                ["endpoint", "method", "status"], registry=reg)
        self.latency = Histogram("crimetag_http_request_duration_seconds", "Request latency by endpoint",
                                 ["endpoint"], buckets=BUCKETS, registry=reg)
        self.texts = Counter("crimetag_texts_scored_total", "Texts scored", registry=reg)
        self.labels = Counter("crimetag_labels_returned_total", "Labels returned, by label", ["label"], registry=reg)
        self.model = Gauge("crimetag_model_info", "1 for the model version this process serves",
                           ["version"], registry=reg, multiprocess_mode="liveall")

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def scored(self, n_texts: int, labels: list[str]) -> None:
        """Count the texts scored and each label returned."""
        self.texts.inc(n_texts)
        for label in labels:
            self.labels.labels(label).inc()

    def model_swapped(self, old, new) -> None:
        if old is not None:
            self.model.labels(old.version).set(0)
        if new is not None:
            self.model.labels(new.version).set(1)

    def render(self) -> bytes:
        if self.multiprocess:
            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)
            return generate_latest(reg)
        return generate_latest(self.registry)
