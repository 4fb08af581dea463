"""What every benchmark shares: the machine, the GVA data, a trained model, timing, the server, output.

The benchmark scripts import this module by path (they are scripts, not a package). Nothing
here asserts a timing: figures are printed and written to files, never checked.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GVA = REPO.parent / "shared" / "data" / "gva"
LOOPBACK = "127.0.0.1"  # the only address any benchmark sends traffic to
# A short incident note written for these benchmarks (not taken from any data set).
SHORT_TEXT = "Man shot in the leg outside a bar; the suspect fled on foot."
LIBRARIES = ("crimetag", "scikit-learn", "numpy", "scipy", "joblib", "flask", "gunicorn", "fasttext-numpy2")


def say(msg: str) -> None:
    """Progress on stderr, so stdout holds only the results."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the machine ------------------------------------------------------------------------------
def machine() -> dict:
    """nproc, CPU model, RAM, OS, Python and library versions: what a figure was measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    libs = {}
    for name in LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "ram_gib": ram_gib,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "libraries": libs, "wrk": wrk_version(), "crimetag_code_digest": code_digest(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def code_digest() -> str:
    """A digest of crimetag's Python sources (model/, training/, service/): which code was measured."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for pkg in ("model", "training", "service") for p in (REPO / pkg).rglob("*.py")):
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def wrk_version() -> str | None:
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first else "wrk"


# -- data -------------------------------------------------------------------------------------
def write_subset(src: Path, dst: Path, limit: int | None) -> Path:
    """The header and first `limit` data rows of a CSV file (temp files only: data stays in shared/)."""
    if not limit:
        return src
    with open(src, newline="", encoding="utf-8") as fin, open(dst, "w", newline="", encoding="utf-8") as fout:
        reader, writer = csv.reader(fin), csv.writer(fout)
        writer.writerow(next(reader))
        for i, row in enumerate(reader):
            if i >= limit:
                break
            writer.writerow(row)
    return dst


def model_store(model_dir: Path | None, data_dir: Path, *, train_rows: int, work: Path) -> Path:
    """`model_dir` when given, else a crimetag model trained on the first `train_rows` of GVA train
    into `work/store` (for the scripts that serve a model: http.py, memory.py)."""
    if model_dir is not None:
        return model_dir
    from model.store import ModelStore
    from training.fit import train

    say(f"training a model on {train_rows} rows")
    data = write_subset(data_dir / "train.csv", work / "train-subset.csv", train_rows)
    train(ModelStore(work / "store"), data_paths=[data], taxonomy_path=data_dir / "labels.json", cv_folds=3, seed=0)
    return work / "store"


def test_texts(data_dir: Path, n: int) -> list[str]:
    """The first `n` texts of GVA test (request bodies for the serving benchmarks)."""
    from model.labels import load_taxonomy
    from training.data import read_labelled

    return read_labelled([data_dir / "test.csv"], load_taxonomy(data_dir / "labels.json").ids).texts[:n]


# -- timing -----------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def interleaved_latency(calls_by_name: dict, *, calls: int, max_seconds: float, rounds: int = 10,
                        warmup: int = 50) -> dict:
    """Single-call latency of each named callable, timed in alternating blocks of calls/rounds so
    that a slow spell of a shared machine falls on all of them alike: per name, median, p99 and
    mean in ms over all its calls (stopping after `max_seconds`)."""
    for call in calls_by_name.values():
        for _ in range(min(warmup, calls)):
            call()
    times: dict = {name: [] for name in calls_by_name}
    per_block = max(1, calls // rounds)
    deadline = time.perf_counter() + max_seconds
    for _ in range(rounds):
        for name, call in calls_by_name.items():
            for _ in range(per_block):
                t0 = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    out = {}
    for name, ts in times.items():
        ms = [t * 1000 for t in ts]
        out[name] = {"calls": len(ms), "median_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                     "mean_ms": sum(ms) / len(ms), "interleaved_with": sorted(set(calls_by_name) - {name})}
    return out


# -- the server -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (gunicorn's workers, for the master)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return sorted(set(out))


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (workers of gunicorn or of joblib, and their children)."""
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process, its reaped children and its live descendants.

    joblib keeps its worker processes alive between calls, so neither RUSAGE_SELF nor
    RUSAGE_CHILDREN sees their time; /proc/PID/stat does. Take differences of two readings.
    """
    import resource

    total = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))
    tick = os.sysconf("SC_CLK_TCK")
    for pid in descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def tree_pss_mib(pid: int) -> float:
    """Proportional set size of `pid` and its live descendants, in MiB (shared pages split, not doubled)."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total / 1024


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post_json(url: str, body: dict, timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextmanager
def serve(model_dir: Path, *, workers: int, log_path: Path, start_timeout: float = 120.0):
    """Run `crimetag serve` on a free loopback port; yields (base_url, master_pid); stops it after.

    The server's log (one access line per request) goes to `log_path`, not to a pipe that could
    fill up and stall it.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "training.cli", "serve", "--host", LOOPBACK, "--port", str(port),
           "--workers", str(workers), "--model-dir", str(model_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRIMETAG_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    base = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"crimetag serve exited with {proc.returncode}; see {log_path}:\n"
                                   + log_path.read_text(errors="replace")[-2000:])
            try:
                if http_get(base + "/readyz", timeout=2)[0] == 200 and len(children(proc.pid)) >= workers:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"crimetag serve not ready after {start_timeout:.0f} s; see {log_path}")
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # gunicorn: graceful stop of master and workers
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


# -- output -----------------------------------------------------------------------------------
def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def emit(name: str, summary: dict, table: str, out_dir: Path | None) -> None:
    """Print the markdown table, then the JSON summary, on stdout; also write both under `out_dir`."""
    text = json.dumps(summary, indent=2, sort_keys=False, default=float)
    print(table)
    print()
    print(text)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{name}.json").write_text(text + "\n", encoding="utf-8")
        (out_dir / f"{name}.md").write_text(table + "\n", encoding="utf-8")


def workdir():
    """A temp directory for stores, subsets and logs (never inside the repository)."""
    return tempfile.TemporaryDirectory(prefix="crimetag-bench-", ignore_cleanup_errors=True)
