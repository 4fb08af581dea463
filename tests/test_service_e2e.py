"""The real production server (`crimetag serve`: gunicorn, 2 workers) over real HTTP on 127.0.0.1.

Hot reload is tested under load: threads keep requests flowing while new models are trained
into the same store and reloaded; no request may fail, and afterwards every worker serves the
new version. Traffic goes only to 127.0.0.1 and every loop is bounded in count and time.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from model.store import ModelStore
from training.fit import train

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TOKEN = "e2e-admin-token"
TEXT = "Caller reports her ex-partner is outside with a knife, breaching his non-molestation order."
# A tiny, quickly trained model: these tests need new versions, not good ones.
FAST_PARAMS = {"C": 0.1, "word_max_features": 5000, "char_max_features": 5000}
MAX_BODY = 65_536
START_TIMEOUT = 60.0  # seconds for the server to become ready (a loaded CI machine is slow)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def base_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRIMETAG_", "PROMETHEUS_"))}
    env.update(extra)
    return env


class Server:
    """One `crimetag serve` process; `request` speaks HTTP/1.1 to it, one connection per call."""

    def __init__(self, store: ModelStore, log: Path):
        self.store, self.log, self.port = store, log, free_port()
        self._log = open(log, "wb")
        env = base_env(CRIMETAG_MODEL_DIR=str(store.root), CRIMETAG_ADMIN_TOKEN=TOKEN,
                       CRIMETAG_MAX_BODY_BYTES=str(MAX_BODY))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "training.cli", "serve", "--port", str(self.port), "--workers", "2"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    def request(self, method, path, body=None, headers=None, timeout=30.0):
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            ctype = resp.getheader("Content-Type", "")
            return resp.status, (json.loads(data) if ctype.startswith("application/json") else data.decode())
        finally:
            conn.close()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if self.request("GET", "/readyz", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {START_TIMEOUT}s:\n{self.log.read_text()[-3000:]}")

    def worker_pids(self) -> set[int]:
        """The master's live children: its workers."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(p) for p in path.read_text().split()}

    def model_info(self) -> dict[int, set[str]]:
        """{pid: versions at 1} from crimetag_model_info."""
        status, text = self.request("GET", "/metrics")
        assert status == 200
        out: dict[int, set[str]] = {}
        for family in text_string_to_metric_families(text):
            if family.name == "crimetag_model_info":
                for s in family.samples:
                    if s.value == 1:
                        out.setdefault(int(s.labels["pid"]), set()).add(s.labels["version"])
        return out

    def wait_all_workers_serve(self, version: str, timeout: float = 45.0) -> None:
        """Until every live worker reports exactly `version`, then the next responses all carry it."""
        deadline = time.monotonic() + timeout
        info = workers = None
        while time.monotonic() < deadline:
            info, workers = self.model_info(), self.worker_pids()
            if len(workers) == 2 and info == {pid: {version} for pid in workers}:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"workers {workers} do not all serve {version}: {info}")
        seen = {self.request("POST", "/v1/predict", {"text": TEXT})[1]["model_version"] for _ in range(20)}
        assert seen == {version}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class Load:
    """Threads posting predictions until stopped (bounded: at most `max_requests` each and `max_seconds`)."""

    def __init__(self, server: Server, threads: int = 4, max_requests: int = 5000, max_seconds: float = 150.0):
        self.server, self.max_requests, self.max_seconds = server, max_requests, max_seconds
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok: list[str] = []       # model_version of each successful response, in completion order
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, i: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        for n in range(self.max_requests):
            if self.stop_event.is_set() or time.monotonic() > deadline:
                return
            body = {"text": TEXT} if (n + i) % 3 else {"texts": [TEXT, "Nice day at the fete."], "explain": True}
            try:
                status, data = self.server.request("POST", "/v1/predict", body)
            except Exception as exc:  # any failure at all is what this test counts
                with self.lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            with self.lock:
                if status == 200:
                    self.ok.append(data["model_version"])
                else:
                    self.failures.append(f"{status}: {data}")

    def count(self) -> int:
        with self.lock:
            return len(self.ok) + len(self.failures)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads)


@pytest.fixture(scope="module")
def server(trained_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "store"
    shutil.copytree(trained_store.root, root)
    srv = Server(ModelStore(root), root.parent / "server.log")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def tiny_data(small_data, tmp_path_factory) -> Path:
    lines = small_data.read_text(encoding="utf-8").splitlines()[::5]
    path = tmp_path_factory.mktemp("tiny") / "tiny.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- plain HTTP ---------------------------------------------------------------------------------
def test_predict_over_http(server, tagger):
    status, one = server.request("POST", "/v1/predict", {"text": TEXT})
    assert status == 200 and one["model_version"] == tagger.version == server.store.current_version()
    assert one == tagger.predict([TEXT])[0]
    status, batch = server.request("POST", "/v1/predict", {"texts": [TEXT, "Nice day."]})
    assert status == 200 and batch["results"][0] == one and len(batch["results"]) == 2
    status, explained = server.request("POST", "/v1/explain", {"text": TEXT})
    assert status == 200 and all(e["evidence"] for e in explained["labels"])
    for path in ("/healthz", "/readyz", "/v1/labels", "/v1/model", "/openapi.json", "/metrics"):
        assert server.request("GET", path)[0] == 200, path


@pytest.mark.parametrize("method, path, body, headers, status, code", [
    ("POST", "/v1/predict", '{"text": ', {"Content-Type": "application/json"}, 400, "malformed_json"),
    ("POST", "/v1/predict", {"texts": "a"}, None, 400, "invalid_type"),
    ("POST", "/v1/predict", "text=a", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ("POST", "/v1/predict", {"text": "a" * MAX_BODY}, None, 413, "payload_too_large"),
    ("GET", "/v1/predict", None, None, 405, "method_not_allowed"),
    ("GET", "/nope", None, None, 404, "not_found"),
    ("POST", "/v1/admin/reload", None, None, 401, "unauthorized"),
    ("POST", "/v1/admin/reload", None, {"Authorization": "Bearer nope"}, 403, "forbidden"),
])
def test_errors_over_http(server, method, path, body, headers, status, code):
    got, data = server.request(method, path, body, headers)
    assert got == status and data == {"error": {"code": code, "message": data["error"]["message"]}}


def test_chunked_body_over_the_limit_is_413(server):
    """gunicorn terminates chunked bodies itself; one over the limit is refused, not cut short."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        chunks = [b'{"text": "', b"a" * MAX_BODY, b'"}']
        conn.request("POST", "/v1/predict", body=iter(chunks), headers={"Content-Type": "application/json"},
                     encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "payload_too_large"
    finally:
        conn.close()


# -- hot reload ---------------------------------------------------------------------------------
def test_hot_reload_under_load_drops_nothing(server, tiny_data):
    start = server.store.current_version()
    server.wait_all_workers_serve(start)
    versions = [start]
    with Load(server) as load:
        for seed in (11, 12, 13):
            before = load.count()
            version = train(server.store, data_paths=[tiny_data], cv_folds=2, seed=seed, params=FAST_PARAMS).version
            assert version not in versions
            status, body = server.request("POST", "/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
            assert status == 200, body
            assert (body["status"], body["model_version"]) == ("reloaded", version)
            assert body["previous_version"] == versions[-1]
            server.wait_all_workers_serve(version)
            assert load.count() > before, "no request was served while training and reloading"
            versions.append(version)
    assert load.failures == []
    assert len(load.ok) >= 20 and set(load.ok) <= set(versions)
    assert load.ok[-1] == versions[-1]


def test_sighup_reloads_the_current_version(server, tiny_data):
    """`crimetag models use` + SIGHUP to the master: new workers, the current version, no failed request."""
    others = [v["version"] for v in server.store.versions() if v["version"] != server.store.current_version()]
    target = others[0] if others else train(server.store, data_paths=[tiny_data], cv_folds=2, seed=21,
                                            params=FAST_PARAMS, make_current=False).version
    server.store.use(target)
    old_workers = server.worker_pids()
    with Load(server, threads=3) as load:
        time.sleep(0.3)
        os.kill(server.proc.pid, signal.SIGHUP)
        server.wait_all_workers_serve(target)
        time.sleep(0.3)
    assert server.worker_pids().isdisjoint(old_workers)
    assert load.failures == []
    assert load.ok and load.ok[-1] == target
    assert server.request("GET", "/readyz")[1]["model_version"] == target
    assert server.proc.poll() is None


def test_server_stops_cleanly(server):
    """Last in this module: SIGTERM stops master and workers and removes the runtime directory."""
    workers = server.worker_pids()
    server.stop()
    assert server.proc.returncode == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    log = server.log.read_text()
    assert "Traceback" not in log and "Exception" not in log


# -- cannot start -------------------------------------------------------------------------------
def serve_once(**env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training.cli", "serve", "--port", str(free_port()), "--workers", "2"],
        cwd=ROOT, env=base_env(**env), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def assert_one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    errors = [ln for ln in lines if ln.startswith("crimetag: error: ")]
    assert len(errors) == 1 and all(n in errors[0] for n in needles), proc.stderr
    assert all(ln.startswith(("crimetag: error: ", "crimetag: hint: ")) for ln in lines), proc.stderr


@pytest.mark.parametrize("make_store", ["empty", "missing"])
def test_serve_without_a_model_exits_with_one_line(tmp_path, make_store):
    store = tmp_path / "store"
    if make_store == "empty":
        store.mkdir()
    assert_one_error_line(serve_once(CRIMETAG_MODEL_DIR=str(store)), "cannot start", str(store))


def test_serve_with_a_bad_setting_exits_with_one_line(tmp_path):
    proc = serve_once(CRIMETAG_MODEL_DIR=str(tmp_path), CRIMETAG_MAX_TEXTS="many")
    assert_one_error_line(proc, "CRIMETAG_MAX_TEXTS must be a positive integer")
