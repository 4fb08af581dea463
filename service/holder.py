"""Holds the serving model and swaps it safely; a shared marker file makes every worker follow.

A reload loads and verifies the store's current version first; only a model that loaded is
swapped in, so a bad model leaves the old one serving. Under gunicorn, the worker that takes
`POST /v1/admin/reload` (or the master on SIGHUP) writes the new version to the marker file;
each worker checks the marker's change time before a request (one stat) and follows.
"""
from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

from model.errors import CrimetagError
from model.store import ModelStore
from model.tagger import Tagger


class ModelHolder:
    def __init__(self, store: ModelStore, marker: str | None = None, on_swap=None):
        self.store = store
        self.marker = Path(marker) if marker else None
        self.on_swap = on_swap
        self._tagger: Tagger | None = None
        self._lock = threading.Lock()
        self._seen_marker = None
        self.last_error: str | None = None

    @property
    def tagger(self) -> Tagger | None:
        return self._tagger

    def _swap(self, tagger: Tagger) -> None:
        """Serve `tagger` from now on, its lazy parts built first (before a fork, workers share them)."""
        old, self._tagger = self._tagger, tagger.warm()
        if self.on_swap:
            self.on_swap(old, tagger)

    def load_initial(self) -> None:
        """Load the current model at start; on failure stay not-ready and remember why."""
        try:
            self._swap(self.store.load())
            self.last_error = None
        except CrimetagError as exc:
            self.last_error = exc.message
        self._seen_marker = self._marker_stamp()

    def reload(self) -> Tagger:
        """Load the store's current version, swap it in, and tell the other workers. Raises on failure."""
        with self._lock:
            tagger = self.store.load()
            self._swap(tagger)
            self._announce(tagger.version)
            return tagger

    def _announce(self, version: str) -> None:
        if self.marker is None:
            return
        tmp = self.marker.with_name(f".{self.marker.name}.{uuid.uuid4().hex}")
        tmp.write_text(version + "\n", encoding="utf-8")
        os.replace(tmp, self.marker)
        self._seen_marker = self._marker_stamp()

    def _marker_stamp(self):
        if self.marker is None:
            return None
        try:
            st = os.stat(self.marker)
            return st.st_mtime_ns, st.st_ino
        except OSError:
            return None

    def follow(self) -> None:
        """Before a request: if another process announced a version, load exactly that one."""
        stamp = self._marker_stamp()
        if stamp == self._seen_marker:
            return
        with self._lock:
            stamp = self._marker_stamp()
            if stamp == self._seen_marker:
                return
            try:
                version = self.marker.read_text(encoding="utf-8").strip()
                if not self._tagger or self._tagger.version != version:
                    self._swap(self.store.load(version))
                self.last_error = None
            except (OSError, CrimetagError) as exc:
                # The announcer verified this version; if it fails here, keep serving the old one.
                self.last_error = getattr(exc, "message", None) or type(exc).__name__
            self._seen_marker = stamp
