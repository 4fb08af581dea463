"""The reliability scripts (reliability/*.py) in `make test`: faults and signing in full, soak short.

Each script prints its table and exits non-zero on any failed check; the table is shown here
when one fails. Traffic goes only to 127.0.0.1, and every run is bounded by a timeout.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

RELIABILITY = Path(__file__).resolve().parents[1] / "reliability"


def run(script: str, *args: str, tmp_path: Path, timeout: float) -> dict:
    out = tmp_path / f"{script}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRIMETAG_", "PROMETHEUS_"))}
    res = subprocess.run([sys.executable, str(RELIABILITY / script), *args, "--json", str(out)],
                         cwd=RELIABILITY.parent, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{script} failed:\n{res.stdout[-6000:]}\n{res.stderr[-2000:]}"
    summary = json.loads(out.read_text())
    assert summary["rows"] and all(r["status"] in ("PASS", "INFO") for r in summary["rows"])
    return summary


def test_faults(tmp_path):
    summary = run("faults.py", tmp_path=tmp_path, timeout=900)
    checks = " ".join(r["check"] for r in summary["rows"])
    for group in ("kill -9 train", "kill -9 inside save", "ENOSPC", "damaged store", "hostile pickle", "serve:"):
        assert group in checks


def test_signing(tmp_path):
    summary = run("signing.py", tmp_path=tmp_path, timeout=600)
    assert sum(r["check"].startswith("planted") for r in summary["rows"]) == 3


def test_soak_short(tmp_path):
    summary = run("soak.py", "--duration", "5", "--connections", "4", tmp_path=tmp_path, timeout=600)
    figures = summary["figures"]
    assert figures["errors"] == 0 and figures["requests"] > 0
    assert len(figures["reloads"]) == 3 and all(r["status"] == 200 for r in figures["reloads"])
    assert figures["rss_kib"]["end_over_start"] <= 1.5
