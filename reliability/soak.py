"""Soak: `crimetag serve` under steady concurrent load with hot reloads; errors, latency, memory.

    python reliability/soak.py [--duration 60] [--connections 32] [--workers 2] [--reloads 3]
                               [--json FILE] [--keep DIR]

Starts `crimetag serve --workers N` on 127.0.0.1 and keeps `--connections` threads sending
predict requests (half single texts, half batches of 8-32; a tenth with explain) for
`--duration` seconds. In the middle it trains a new version into the store and sends
POST /v1/admin/reload, `--reloads` times (the load runs on until 2 s after the last reload, at
most 120 s past `--duration`). Reports requests, errors (must be 0), p50/p99 latency, reloads, and the
resident size of master + workers (sum of VmRSS from /proc) after warm-up and at the end:
memory must stay flat (end <= 1.5 x start). Also fails on a response from an older model once
a reload has answered, on a worker restart, or if the workers do not all end on the last model.
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

DATA_STEP = 24
MAX_EXTRA_SECONDS = 120.0  # how long the load may run past --duration waiting for the reloads
RSS_LIMIT = 1.5


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Load:
    """`connections` threads sending predict requests until stopped; every outcome recorded."""

    def __init__(self, port: int, texts: list[str], connections: int, seed: int):
        self.port, self.texts, self.connections = port, texts, connections
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.records: list[tuple[float, float, str | None]] = []  # (start, latency s, version)
        self.errors: list[str] = []
        self.seed = seed

    def _one(self, rng: random.Random) -> None:
        if rng.random() < 0.5:
            body = {"text": rng.choice(self.texts)}
            n = 1
        else:
            n = rng.randint(8, 32)
            body = {"texts": rng.sample(self.texts, n)}
        if rng.random() < 0.1:
            body["explain"] = True
        start = time.monotonic()
        conn = http.client.HTTPConnection(c.LOOPBACK, self.port, timeout=60)
        try:
            conn.request("POST", "/v1/predict", body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            latency = time.monotonic() - start
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
            out = json.loads(data)
            results = [out] if n == 1 and "text" in body else out["results"]
            if len(results) != n:
                raise RuntimeError(f"{len(results)} results for {n} texts")
            with self.lock:
                self.records.append((start, latency, out["model_version"]))
        except Exception as exc:  # every failure is counted, whatever it is
            with self.lock:
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            conn.close()

    def _worker(self, i: int, hard_deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + i)
        while not self.stop.is_set() and time.monotonic() < hard_deadline:
            self._one(rng)

    def start(self, hard_deadline: float) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._worker, args=(i, hard_deadline), daemon=True)
                   for i in range(self.connections)]
        for t in threads:
            t.start()
        return threads


def serving_by_worker(server: c.Server) -> dict[str, set[str]]:
    """pid -> the versions each live worker reports serving (gauge 1) in /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = server.request("GET", "/metrics")
    out: dict[str, set[str]] = {}
    if status != 200:
        return out
    live = {str(p) for p in server.pids()}
    for family in text_string_to_metric_families(text):
        if family.name == "crimetag_model_info":
            for sample in family.samples:
                pid = sample.labels.get("pid", "?")
                if sample.value == 1 and pid in live:
                    out.setdefault(pid, set()).add(sample.labels.get("version"))
    return out


def rss_total(server: c.Server) -> tuple[int, int, int]:
    """(sum of VmRSS KiB, sum of PSS KiB, number of processes) of master and workers."""
    pids = server.pids()
    return sum(c.rss_kib(p) for p in pids), sum(c.pss_kib(p) for p in pids), len(pids)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    ap.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    ap.add_argument("--reloads", type=int, default=3, help="hot reloads in the middle (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temp dir, removed)")
    args = ap.parse_args(argv)
    if not (1 <= args.connections <= 256 and 0 < args.duration <= 3600 and 1 <= args.workers <= 16):
        ap.error("need 1-256 connections, 0-3600 s and 1-16 workers")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="crimetag-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    table = c.Table(f"crimetag soak: {args.duration:g} s, {args.connections} connections, {args.workers} workers, "
                    f"{args.reloads} reloads", extra={"command": " ".join(sys.argv)})
    try:
        soak(table, work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    table.print()
    table.write_json(args.json)
    return table.exit_code()


def soak(table: c.Table, work: Path, args) -> None:
    reproduce = (f"python reliability/soak.py --duration {args.duration:g} --connections {args.connections} "
                 f"--workers {args.workers}")
    data = c.corpus_file(work / "data.jsonl", DATA_STEP)
    texts = [json.loads(line)["text"] for line in data.read_text().splitlines()]
    store = work / "store"
    first = c.quick_version(store, data)
    versions = [first]
    server = c.Server(store, work / "server.log", workers=args.workers)
    try:
        server.wait_ready()
        rss_ready = rss_total(server)
        load = Load(server.port, texts, args.connections, args.seed)
        t0 = time.monotonic()
        hard_deadline = t0 + args.duration + MAX_EXTRA_SECONDS
        threads = load.start(hard_deadline)
        # Warm-up: every worker has scored texts (token caches filled) before memory is measured.
        warm_until = t0 + min(5.0, args.duration * 0.2)
        while time.monotonic() < warm_until:
            time.sleep(0.1)
        rss_start = rss_total(server)
        samples = [(time.monotonic() - t0, *rss_start)]
        reloads: list[dict] = []
        schedule = [t0 + args.duration * (i + 1) / (args.reloads + 1) for i in range(args.reloads)]
        next_sample = time.monotonic() + 1.0
        while time.monotonic() < hard_deadline:
            now = time.monotonic()
            if schedule and now >= schedule[0]:
                schedule.pop(0)
                tr = time.monotonic()
                version = c.quick_version(store, data, seed=len(versions))  # trained under the load
                train_s = time.monotonic() - tr
                status, body = server.admin_reload()
                done = time.monotonic()
                versions.append(version)
                reloads.append({"at_s": round(done - t0, 2), "train_s": round(train_s, 2), "status": status,
                                "version": version, "answer": body if status != 200 else None, "done": done})
                c.say(f"reload {len(reloads)}: trained {version} in {train_s:.1f} s; reload answered {status}")
            if now >= next_sample:
                samples.append((now - t0, *rss_total(server)))
                next_sample = now + 1.0
            # Load runs on for 2 s after the last reload, so every worker serves the new model under it.
            if now >= t0 + args.duration and not schedule and (not reloads or now >= reloads[-1]["done"] + 2.0):
                break
            time.sleep(0.05)
        load.stop.set()
        for t in threads:
            t.join(timeout=90)
        elapsed = time.monotonic() - t0
        rss_end = rss_total(server)
        samples.append((elapsed, *rss_end))
        final = {server.predict_version() for _ in range(8 * args.workers)}
        per_worker = serving_by_worker(server)
        restarts = server.log.read_text(errors="replace").count("Booting worker") - args.workers
        tracebacks = server.log.read_text(errors="replace").count("Traceback")
        alive = server.proc.poll() is None
    finally:
        server.stop()

    # Responses from an older model after a reload had answered (and the workers were told).
    order = {v: i for i, v in enumerate(versions)}
    stale = 0
    for i, r in enumerate(reloads):
        if r["status"] != 200:
            continue
        stale += sum(1 for start, _lat, v in load.records if start > r["done"] and order.get(v, -1) < i + 1)
    lat_ms = [lat * 1000 for _s, lat, _v in load.records]
    n_req, n_err = len(load.records) + len(load.errors), len(load.errors)
    ratio = rss_end[0] / rss_start[0] if rss_start[0] else float("nan")
    figures = {
        "duration_s": round(elapsed, 1), "connections": args.connections, "workers": args.workers,
        "requests": n_req, "errors": n_err, "throughput_rps": round(n_req / elapsed, 1),
        "p50_ms": round(percentile(lat_ms, 50), 1), "p99_ms": round(percentile(lat_ms, 99), 1),
        "max_ms": round(max(lat_ms), 1) if lat_ms else None,
        "reloads": [{k: v for k, v in r.items() if k != "done"} for r in reloads],
        "rss_kib": {"ready": rss_ready[0], "start": rss_start[0], "end": rss_end[0],
                    "max": max(s[1] for s in samples), "end_over_start": round(ratio, 3)},
        "pss_kib": {"start": rss_start[1], "end": rss_end[1]}, "processes": rss_end[2],
        "samples_s_rss_pss_kib": [(round(t, 1), r, p) for t, r, p, _n in samples],
        "serving_by_worker": {pid: sorted(v) for pid, v in per_worker.items()},
        "stale_responses_after_reload": stale, "worker_restarts": restarts, "tracebacks_in_log": tracebacks,
        "error_examples": load.errors[:5],
    }
    table.extra["figures"] = figures
    table.add("requests answered 200 (errors must be 0)", n_err == 0 and n_req > 0,
              f"{n_req} requests in {elapsed:.1f} s ({n_req / elapsed:.1f}/s), {n_err} errors"
              + (f": {load.errors[0]}" if n_err else ""), reproduce=reproduce)
    table.add("latency", None, f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms",
              reproduce=reproduce)
    ok = len(reloads) == args.reloads and all(r["status"] == 200 for r in reloads)
    table.add(f"{args.reloads} hot reloads under load", ok,
              "; ".join(f"{r['version']} at {r['at_s']} s -> {r['status']}" for r in reloads)
              + ("" if len(reloads) == args.reloads else f"; only {len(reloads)} done"), reproduce=reproduce)
    table.add("no response from an older model after a reload answered", stale == 0,
              f"{stale} stale responses", reproduce=reproduce)
    workers_ok = (final == {versions[-1]} and len(per_worker) == args.workers
                  and all(v == {versions[-1]} for v in per_worker.values()))
    table.add("every worker ends on the last model", workers_ok,
              f"responses: {sorted(map(str, final))}; per worker (/metrics crimetag_model_info): "
              f"{ {pid: sorted(v) for pid, v in per_worker.items()} }; last trained {versions[-1]}", reproduce=reproduce)
    table.add("server alive, no worker restarted, no traceback in its log",
              alive and restarts == 0 and tracebacks == 0,
              f"alive={alive}, restarts={restarts}, tracebacks={tracebacks}", reproduce=reproduce)
    table.add(f"memory flat (RSS end <= {RSS_LIMIT} x start)", ratio <= RSS_LIMIT,
              f"master+{rss_end[2] - 1} workers: {rss_start[0] / 1024:.0f} MiB after warm-up -> "
              f"{rss_end[0] / 1024:.0f} MiB at the end (x{ratio:.2f}; max {figures['rss_kib']['max'] / 1024:.0f} MiB; "
              f"{rss_ready[0] / 1024:.0f} MiB at ready; PSS {rss_start[1] / 1024:.0f} -> {rss_end[1] / 1024:.0f} MiB)",
              reproduce=reproduce)


if __name__ == "__main__":
    sys.exit(main())
