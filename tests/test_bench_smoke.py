"""Smoke runs of bench/*.py at tiny sizes: each completes and reports its keys.

No timing is asserted here (figures live only in bench/README.md); this only keeps the scripts
runnable. fastText is a benchmark-only dependency: gva.py runs without it and says so.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model.store import ModelStore
from tests.conftest import SHARED
from training.fit import train

BENCH = Path(__file__).resolve().parents[1] / "bench"
GVA = SHARED / "gva"
HAS_FASTTEXT = importlib.util.find_spec("fasttext") is not None

pytestmark = pytest.mark.skipif(not (GVA / "train.csv").exists(), reason=f"needs the GVA data in {GVA}")


def run(script: str, *args: str, out: Path, timeout: float = 900) -> tuple[str, dict]:
    """Run a benchmark script; return its stdout and the JSON summary it wrote."""
    res = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)],
                         capture_output=True, text=True, timeout=timeout, cwd=BENCH.parent)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / script.replace(".py", ".json")).read_text())
    assert json.loads(res.stdout[res.stdout.index("\n{") + 1:]) == summary  # stdout: table, then JSON
    assert {"machine", "command"} <= set(summary)
    assert {"nproc", "cpu_model", "ram_gib", "python", "libraries"} <= set(summary["machine"])
    return res.stdout, summary


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    """A model trained on the first 500 GVA rows, served by the http and memory smoke runs."""
    root = tmp_path_factory.mktemp("bench")
    with open(GVA / "train.csv", newline="", encoding="utf-8") as fin, \
            open(root / "train.csv", "w", newline="", encoding="utf-8") as fout:
        rows = csv.reader(fin)
        csv.writer(fout).writerows(row for _, row in zip(range(501), rows))
    train(ModelStore(root / "store"), data_paths=[root / "train.csv"], taxonomy_path=GVA / "labels.json",
          cv_folds=2)
    return root / "store"


GVA_ARGS = ["--train-rows", "500", "--test-rows", "100", "--cv-folds", "2", "--latency-calls", "20",
            "--ft-bucket", "100000"]


@pytest.mark.parametrize("with_fasttext", [False, True] if HAS_FASTTEXT else [False])
def test_gva(tmp_path, with_fasttext):
    stdout, s = run("gva.py", *GVA_ARGS, *([] if with_fasttext else ["--no-fasttext"]), out=tmp_path)
    ct = s["crimetag"]
    assert {"fit_s", "batch_texts_per_s", "process_texts_per_s", "latency", "micro_f1", "macro_f1"} <= set(ct)
    assert {"median_ms", "p99_ms"} <= set(ct["latency"])
    assert ct["process_lines_out"] == 100
    assert set(s["ratios"]) >= {"micro_f1", "process_throughput", "latency", "training"}
    if with_fasttext:
        assert {"fit_s", "batch_texts_per_s", "latency", "micro_f1", "macro_f1"} <= set(s["fasttext"])
        assert all(s["ratios"][k]["value"] is not None for k in ("micro_f1", "latency", "training"))
    else:
        assert "skipped" in s["fasttext"] and "fastText skipped" in stdout


@pytest.mark.parametrize("loadgen", ["auto", "python"] if shutil.which("wrk") else ["auto"])
def test_http(tmp_path, tiny_store, loadgen):
    stdout, s = run("http.py", "--model-dir", str(tiny_store), "--workers", "1", "--duration", "1",
                    "--connections", "1,16" if loadgen == "auto" else "2", "--loadgen", loadgen, out=tmp_path)
    assert s["loadgen"] == ("python" if loadgen == "python" or not shutil.which("wrk") else "wrk")
    for by_case in s["results"].values():
        assert set(by_case) == {"predict_single", "predict_batch32", "healthz"}
        for r in by_case.values():
            assert {"requests_per_s", "p50_ms", "p99_ms", "errors", "non_2xx"} <= set(r)
            assert r["requests"] > 0 and r["non_2xx"] == 0
    assert any(k.startswith("predict_single/healthz") for k in s["ratios"])


def test_memory(tmp_path, tiny_store):
    stdout, s = run("memory.py", "--model-dir", str(tiny_store), "--workers", "1", "--warmup", "10", out=tmp_path)
    (r,) = s["runs"]
    assert r["workers"] == 1 and r["worker_pids"] == 1 and r["warmup_failures"] == 0
    assert {"rss_mib", "pss_mib", "uss_mib"} <= set(r["total"]) and r["total"]["pss_mib"] > 0


def test_scaling(tmp_path):
    stdout, s = run("scaling.py", "--sizes", "200,400", "--cv-folds", "2", out=tmp_path)
    assert [p["rows"] for p in s["points"]] == [200, 400]
    assert {"wall_s", "cpu_s", "peak_rss_mib", "timings"} <= set(s["points"][0])
    assert {"wall_s", "peak_rss_mib"} <= set(s["growth_per_doubling"][0])
