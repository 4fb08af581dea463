"""What the reliability scripts share: the project, data, stores, the CLI, the server, the table.

The scripts import this module by path (they are scripts, not a package). Every process they
start is stopped by its own id; traffic goes only to 127.0.0.1; every wait is bounded in time.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LOOPBACK = "127.0.0.1"
TOKEN = "reliability-admin-token"
PROBE_TEXT = "RP states ex-partner outside her address with a knife, breaching a non-mol order"
# Small, fast models: these scripts need versions that load, not good ones.
QUICK_PARAMS = {"C": 0.1}


def say(msg: str) -> None:
    """Progress on stderr; the table goes to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
            "nproc": os.cpu_count(), "cpu_model": cpu, "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "load_1min": load}


# -- processes ------------------------------------------------------------------------------------
def clean_env(**extra: str) -> dict:
    """This environment without CRIMETAG_* and PROMETHEUS_* (a developer's shell must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRIMETAG_", "PROMETHEUS_"))}
    env.update(extra)
    return env


def crimetag_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "training.cli", *args]


def run(cmd: list[str], *, env: dict | None = None, timeout: float = 300, stdin: bytes | None = None,
        prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run a command to completion (bounded by `timeout`), output captured as text."""
    return subprocess.run((prefix or []) + cmd, cwd=REPO, env=env or clean_env(), input=stdin,
                          capture_output=True, timeout=timeout)


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if this script dies first (killed, or timed out by a
    test), so no server or train outlives the script that started it (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process group of a process this script started (start_new_session=True)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    exception: str | None  # an exception that escaped the CLI's handler (a traceback for a user)


def cli(*args: str, env: dict | None = None, stdin: str | None = None) -> CliResult:
    """`crimetag ARGS` in this process through click's runner: the CLI's code and error handling,
    without an interpreter start per call. An escaped exception is what a user sees as a traceback."""
    from click.testing import CliRunner

    from training.cli import main

    base = {k: None for k in os.environ if k.startswith("CRIMETAG_")}
    res = CliRunner().invoke(main, list(args), env={**base, **(env or {})}, input=stdin)
    escaped = None
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        escaped = f"{type(res.exception).__name__}: {res.exception}"
    return CliResult(res.exit_code, res.stdout, res.stderr, escaped)


def one_clear_error(stderr: str) -> str | None:
    """None when stderr is one `crimetag: error:` line (and at most a hint); else what is wrong."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if any("Traceback" in line for line in lines):
        return "a traceback"
    errors = [line for line in lines if line.startswith("crimetag: error: ")]
    others = [line for line in lines if not line.startswith(("crimetag: error: ", "crimetag: hint: "))]
    if len(errors) != 1:
        return f"{len(errors)} error lines"
    if others:
        return f"other output: {others[0][:120]!r}"
    return None


def first_error_line(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("crimetag: error: "):
            return line[len("crimetag: error: "):]
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# -- data and stores -------------------------------------------------------------------------------
def corpus_file(path: Path, step: int) -> Path:
    """Every `step`-th row of the bundled corpus as JSONL: all labels, small enough to train fast."""
    from model.labels import load_taxonomy
    from training.data import read_labelled
    from training.fit import bundled_corpus

    data = read_labelled(bundled_corpus(), load_taxonomy().ids)
    rows = list(zip(data.texts, data.labels))[::step]
    path.write_text("".join(json.dumps({"text": t, "labels": ls}) + "\n" for t, ls in rows), encoding="utf-8")
    return path


def quick_version(store_root: Path, data: Path, *, signing_key: str | None = None, make_current: bool = True,
                  seed: int = 0) -> str:
    """Fit a small model in this process (one job, fixed C) and save it as a new version."""
    from model.labels import load_taxonomy
    from model.store import ModelStore
    from training.data import read_labelled
    from training.fit import fit

    taxonomy = load_taxonomy()
    dataset = read_labelled([data], taxonomy.ids)
    try:
        result = fit(dataset, taxonomy, seed=seed, cv_folds=2, params=QUICK_PARAMS, n_jobs=1)
    except TypeError:  # a fit without n_jobs
        result = fit(dataset, taxonomy, seed=seed, cv_folds=2, params=QUICK_PARAMS)
    meta = {"profile": "fast", "seed": seed, "params": QUICK_PARAMS,
            "data": {"files": [data.name], "n": len(dataset), "dropped": 0, "sha256": dataset.digest},
            "taxonomy_source": "bundled",
            "metrics": {k: v for k, v in result.report.items() if k != "timings"}}
    return ModelStore(store_root, signing_key=signing_key).save(result.tagger, meta, make_current=make_current)


def snapshot(root: Path) -> dict:
    """Every file under `root` with its SHA-256: "unchanged" means equal snapshots."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def store_problems(root: Path, signing_key: str | None = None) -> list[str]:
    """What is wrong with a store after a fault: partial versions, bad digests, an unloadable current."""
    from model.errors import CrimetagError
    from model.store import META_FILE, MODEL_FILES, ModelStore

    store = ModelStore(root, signing_key=signing_key)
    problems = []
    for vdir in sorted((root / "versions").iterdir()):
        missing = [f for f in (*MODEL_FILES, META_FILE) if not (vdir / f).is_file()]
        if missing:
            problems.append(f"partial version {vdir.name}: no {', '.join(missing)}")
            continue
        try:
            store.read_metadata(vdir.name, verify_model=True)
        except CrimetagError as exc:
            problems.append(f"version {vdir.name}: {exc.message}")
    try:
        store.load()
    except CrimetagError as exc:
        problems.append(f"current model does not load: {exc.message}")
    return problems


def leftovers(root: Path) -> list[str]:
    """Temporary files a killed writer left: harmless (never read, swept after a day), but counted."""
    tmp = [f".tmp/{p.name}" for p in (root / ".tmp").iterdir()] if (root / ".tmp").is_dir() else []
    return tmp + [p.name for p in root.glob(".CURRENT.*")]


def set_current(root: Path, version: str) -> None:
    """Point CURRENT at `version` without verifying it (as a store writer could)."""
    (root / "CURRENT").write_text(version + "\n", encoding="utf-8")


class Marker:
    """A pickle that runs code when unpickled: it creates `path`. It must never run."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({str(self.path)!r}, 'w').write('unpickled')",))


def write_evil_pickle(target: Path, marker: Path) -> None:
    import joblib

    joblib.dump({"format": 1, "payload": Marker(marker)}, target)


# -- the server -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return sorted(out)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    """One `crimetag serve` process on a free loopback port; its log goes to a file."""

    def __init__(self, store_root: Path, log: Path, *, workers: int = 2, env_extra: dict | None = None):
        self.port, self.log, self.workers = free_port(), log, workers
        self._log = open(log, "wb")
        env = clean_env(CRIMETAG_MODEL_DIR=str(store_root), CRIMETAG_ADMIN_TOKEN=TOKEN, **(env_extra or {}))
        self.proc = subprocess.Popen(crimetag_cmd("serve", "--host", LOOPBACK, "--port", str(self.port),
                                                  "--workers", str(workers)),
                                     cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=die_with_parent)

    def request(self, method: str, path: str, body=None, headers: dict | None = None, timeout: float = 30.0):
        """(status, parsed JSON or text) over a fresh connection."""
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            if (resp.getheader("Content-Type") or "").startswith("application/json"):
                return resp.status, json.loads(data)
            return resp.status, data.decode(errors="replace")
        finally:
            conn.close()

    def admin_reload(self):
        return self.request("POST", "/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})

    def predict_version(self) -> str | None:
        status, body = self.request("POST", "/v1/predict", {"text": PROBE_TEXT})
        return body.get("model_version") if status == 200 else None

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"crimetag serve exited with {self.proc.returncode}: "
                                   + self.log.read_text(errors="replace")[-1500:])
            try:
                if self.request("GET", "/readyz", timeout=2)[0] == 200 and len(children(self.proc.pid)) >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"crimetag serve not ready after {timeout:.0f} s")

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                self.proc.wait(10)
        else:
            kill_group(self.proc)  # workers of a master that died
        self._log.close()


# -- the table ------------------------------------------------------------------------------------
@dataclass
class Row:
    check: str
    status: str          # PASS, FAIL or INFO (expected by design; never fails the run)
    observed: str
    lost: str = "nothing"
    reproduce: str = ""


@dataclass
class Table:
    title: str
    rows: list[Row] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def add(self, check: str, ok: bool | None, observed: str, *, lost: str = "nothing", reproduce: str = "") -> bool:
        status = "INFO" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append(Row(check, status, observed.replace("\n", " ")[:300], lost, reproduce))
        say(f"{status} {check}: {observed[:160]}")
        return bool(ok) or ok is None

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.status == "FAIL"]

    def print(self) -> None:
        width = max([len(r.check) for r in self.rows] + [5])
        print(f"\n{self.title}")
        print(f"{'check':<{width}}  result  observed")
        print(f"{'-' * width}  ------  --------")
        for r in self.rows:
            print(f"{r.check:<{width}}  {r.status:<6}  {r.observed}")
        print(f"\n{len(self.rows) - len(self.failed)}/{len(self.rows)} passed" +
              (f"; FAILED: {', '.join(r.check for r in self.failed)}" if self.failed else ""))

    def write_json(self, path: str | None) -> None:
        if path:
            Path(path).write_text(json.dumps({"title": self.title, "machine": machine(), **self.extra,
                                              "rows": [asdict(r) for r in self.rows]}, indent=2) + "\n")

    def exit_code(self) -> int:
        return 1 if self.failed else 0
