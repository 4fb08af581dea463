"""Run the service under gunicorn: model loaded in the master before fork, SIGHUP reloads it.

Importing this module does not import the app, so the runtime directory (reload marker and
prometheus multiprocess files) is set up before prometheus_client reads its environment.
"""
from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile

from gunicorn.app.base import BaseApplication
from gunicorn.config import Config


def default_workers() -> int:
    """CPUs + 1, at most 8. Scoring is CPU-bound: on 2 CPUs, 3 sync workers served more requests
    per second than 5 at 1 and 16 connections, for every request measured (bench/README.md)."""
    return min((os.cpu_count() or 1) + 1, 8)


class _Gunicorn(BaseApplication):
    def __init__(self, app, options: dict):
        self.application, self.options = app, options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.application


def serve(*, host: str, port: int, workers: int | None, model_dir: str, extra_config: dict | None = None) -> None:
    """Load the current model, then serve it with `workers` gunicorn sync workers until stopped."""
    runtime = tempfile.mkdtemp(prefix="crimetag-run-")
    prom = os.path.join(runtime, "prometheus")
    os.mkdir(prom)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom
    owner = os.getpid()
    try:
        _run(host, port, workers or default_workers(), model_dir, runtime, extra_config or {})
    finally:
        # A gunicorn worker leaves by SystemExit through this frame too: only the master may
        # remove the directory the other processes still use.
        if os.getpid() == owner:
            shutil.rmtree(runtime, ignore_errors=True)


def _run(host, port, workers, model_dir, runtime, extra_config):
    from prometheus_client import multiprocess

    from model.errors import CrimetagError
    from model.store import ModelStore

    from . import create_app
    from .config import from_environ
    from .holder import ModelHolder

    env = from_environ()
    store = ModelStore(model_dir, signing_key=env.get("SIGNING_KEY"))
    holder = ModelHolder(store, os.path.join(runtime, "reload-marker"))
    holder.load_initial()
    if holder.tagger is None:
        # One clear line, not a traceback: nothing to serve.
        raise CrimetagError(f"cannot start: {holder.last_error}", hint="run `crimetag train` first, or set CRIMETAG_MODEL_DIR")
    app = create_app({"MODEL_DIR": model_dir, "RELOAD_MARKER": holder.marker, "METRICS_MULTIPROCESS": True,
                      **extra_config}, holder=holder)
    metrics = app.extensions["crimetag_metrics"]
    # The master serves no request: drop its crimetag_model_info series, or it would report the
    # version loaded at start for as long as it lives (its later writes go to the unlinked file).
    multiprocess.mark_process_dead(os.getpid())

    def post_fork(_server, _worker):
        # prometheus_client gives a forked worker fresh, empty files: record what this worker serves.
        metrics.model_swapped(None, holder.tagger)

    def on_reload(arbiter):
        try:
            tagger = holder.reload()
            arbiter.log.info("SIGHUP: now serving model %s", tagger.version)
        except CrimetagError as exc:
            arbiter.log.error("SIGHUP: reload failed, still serving %s: %s",
                              holder.tagger.version if holder.tagger else "none", exc.message)

    def child_exit(_server, worker):
        multiprocess.mark_process_dead(worker.pid)

    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        "preload_app": True,
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 2,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "on_reload": on_reload,
        "post_fork": post_fork,
        "child_exit": child_exit,
        "proc_name": "crimetag",
    }
    if "control_socket" in Config().settings:  # gunicorn >= 25.1: one per server, not ~/.gunicorn/ shared by all
        options["control_socket"] = os.path.join(runtime, "gunicorn.ctl")
    sys.argv = sys.argv[:1]  # gunicorn must not parse crimetag's own options
    # Move what the master loaded out of the collector's reach, so workers' collections do not
    # write to (and so un-share) the model's pages after fork.
    gc.collect()
    gc.freeze()
    _Gunicorn(app, options).run()
