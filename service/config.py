"""Service settings: defaults, then a mapping, then CRIMETAG_* environment variables."""
from __future__ import annotations

import os

from model.errors import CrimetagError
from model.text import Limits

DEFAULTS = {
    "MODEL_DIR": None,            # the model store; the CLI's default when unset
    "ADMIN_TOKEN": None,          # bearer token for /v1/admin/*; unset disables them
    "SIGNING_KEY": None,          # HMAC key: refuse unsigned or wrongly signed models
    "MAX_CHARS": Limits.max_chars,            # characters per text (413 text_too_long)
    "MAX_TEXTS": Limits.max_texts,            # texts per batch (413 too_many_texts)
    "MAX_BODY_BYTES": Limits.max_body_bytes,  # request body (413 payload_too_large)
    "RELOAD_MARKER": None,        # file whose change tells every worker to reload (set by `serve`)
    "ACCESS_LOG": True,           # one structured line per request (never the text)
    "METRICS_MULTIPROCESS": False,  # prometheus multiprocess mode (set by `serve`)
}
INT_KEYS = ("MAX_CHARS", "MAX_TEXTS", "MAX_BODY_BYTES")
BOOL_KEYS = ("ACCESS_LOG", "METRICS_MULTIPROCESS")


class ConfigError(CrimetagError, ValueError):
    """A bad CRIMETAG_* value: one line from the CLI (a CrimetagError), still a ValueError to hosts."""

    code = "invalid_config"


def from_environ(environ=os.environ) -> dict:
    """CRIMETAG_<KEY> for each known key, converted to its type; a bad value is a clear error."""
    out = {}
    for key, default in DEFAULTS.items():
        raw = environ.get(f"CRIMETAG_{key}")
        if raw is None or raw == "":
            continue
        if key in INT_KEYS:
            try:
                out[key] = int(raw)
                if out[key] <= 0:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"CRIMETAG_{key} must be a positive integer, got {raw!r}") from None
        elif key in BOOL_KEYS:
            out[key] = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            out[key] = raw
    return out


def limits(config) -> Limits:
    return Limits(max_chars=config["MAX_CHARS"], max_texts=config["MAX_TEXTS"],
                  max_body_bytes=config["MAX_BODY_BYTES"])
