"""The crimetag HTTP service: `create_app` builds a Flask app around the model store."""
from __future__ import annotations

__all__ = ["create_app"]


def create_app(config: dict | None = None, *, holder=None):
    """Build the app: defaults, then CRIMETAG_* variables, then `config` (explicit settings win).

    `holder` lets the gunicorn master load the model once before forking, so workers share it.
    Imports happen here, not at package import, so `PROMETHEUS_MULTIPROC_DIR` can be set first.
    """
    from flask import Flask

    from model.store import ModelStore, default_model_dir

    from . import access, api, errors, ops
    from .config import DEFAULTS, from_environ, limits
    from .holder import ModelHolder
    from .metrics import Metrics

    app = Flask(__name__, static_folder=None)  # no /static route: the API serves no files
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    app.config.update({k: v for k, v in from_environ().items() if k not in (config or {})})
    # One byte over the limit: werkzeug silently cuts a streamed (chunked) body at this length, so
    # reading one more byte is how the API tells a body over the limit (413) from one at it.
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY_BYTES"] + 1
    app.json.sort_keys = False
    # Settings are read once, here: the request path does not rebuild them.
    app.extensions["crimetag_limits"] = limits(app.config)

    metrics = Metrics(multiprocess_mode=app.config["METRICS_MULTIPROCESS"])
    app.extensions["crimetag_metrics"] = metrics
    if holder is None:
        store = ModelStore(app.config["MODEL_DIR"] or default_model_dir(), signing_key=app.config["SIGNING_KEY"])
        holder = ModelHolder(store, app.config["RELOAD_MARKER"])
        holder.load_initial()
    holder.on_swap = metrics.model_swapped
    metrics.model_swapped(None, holder.tagger)
    app.extensions["crimetag"] = holder

    access.setup_logging()
    access.register(app)
    errors.register(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    return app
