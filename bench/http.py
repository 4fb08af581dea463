"""HTTP throughput and latency of `crimetag serve`: one short predict, a batch of 32, and /healthz.

    python bench/http.py --model-dir STORE                 # 10 s per case, at 1 and 16 connections
    python bench/http.py --train-rows 2000 --duration 1 --workers 1    # smoke run (trains a tiny model)

All cases run against one server (same port, same workers), on 127.0.0.1 only. The load comes
from `wrk` when it is on PATH, else from a Python generator (http.client, one process per
connection); `--loadgen python` forces the fallback. The load generator shares the machine's
CPUs with the server, which lowers every figure alike; the predict/healthz ratio cancels most of it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# bench/ is a folder of scripts, and this one is named http: its folder must not come before the
# standard library on the path, or `import http.client` (here and in urllib) would find this file.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
import http.client  # noqa: E402

sys.path.append(str(_HERE))
import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import harness  # noqa: E402

CONCURRENCY = (1, 16)
BATCH = 32
MAX_REQUESTS_PER_CONNECTION = 1_000_000  # the time limit ends a run; this bounds it as well
WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "socket_errors": %d, "non_2xx": %d, '
    .. '"p50_us": %d, "p99_us": %d, "mean_us": %f}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99),
    latency.mean))
end
"""


def cases(texts: list[str]) -> list[dict]:
    """The three requests measured: method, path, JSON body (or None)."""
    return [
        {"name": "predict_single", "method": "POST", "path": "/v1/predict", "body": {"text": harness.SHORT_TEXT},
         "texts": 1},
        {"name": f"predict_batch{BATCH}", "method": "POST", "path": "/v1/predict", "body": {"texts": texts[:BATCH]},
         "texts": BATCH},
        {"name": "healthz", "method": "GET", "path": "/healthz", "body": None, "texts": 0},
    ]


# -- wrk --------------------------------------------------------------------------------------
def run_wrk(base: str, case: dict, conns: int, duration: float, work: Path) -> dict:
    script = work / f"{case['name']}.lua"
    lines = []
    if case["body"] is not None:
        body = json.dumps(case["body"], ensure_ascii=True)
        lines += [f'wrk.method = "{case["method"]}"', f"wrk.body = [==[{body}]==]",
                  'wrk.headers["Content-Type"] = "application/json"']
    script.write_text("\n".join(lines) + WRK_DONE, encoding="utf-8")
    threads = max(1, min(conns, os.cpu_count() or 1))
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{max(1, round(duration))}s", "--timeout", "30s",
           "-s", str(script), base + case["path"]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    r = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    seconds = r["duration_us"] / 1e6
    return {"requests": r["requests"], "seconds": seconds, "requests_per_s": r["requests"] / seconds,
            "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000, "mean_ms": r["mean_us"] / 1000,
            "errors": r["socket_errors"], "non_2xx": r["non_2xx"]}


# -- the Python fallback ----------------------------------------------------------------------
def _connection(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(harness.LOOPBACK, port, timeout=30)


def _client(port: int, case: dict, start: float, stop: float, results) -> None:
    """One connection's loop: back-to-back requests from `start` until `stop` (wall clock)."""
    body = None if case["body"] is None else json.dumps(case["body"]).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    latencies, errors, non_2xx = [], 0, 0
    time.sleep(max(0.0, start - time.time()))
    conn = _connection(port)
    for _ in range(MAX_REQUESTS_PER_CONNECTION):
        t0 = time.time()
        if t0 >= stop:
            break
        try:
            conn.request(case["method"], case["path"], body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = _connection(port)
            continue
        latencies.append(time.time() - t0)
        non_2xx += not 200 <= resp.status < 300
        if resp.will_close:  # gunicorn's sync workers close after each response
            conn.close()
            conn = _connection(port)
    conn.close()
    results.put((latencies, errors, non_2xx))


def run_python(base: str, case: dict, conns: int, duration: float) -> dict:
    port = int(base.rsplit(":", 1)[1])
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    start = time.time() + 0.5  # every client process is up before the clock starts
    stop = start + duration
    procs = [ctx.Process(target=_client, args=(port, case, start, stop, results), daemon=True)
             for _ in range(conns)]
    for p in procs:
        p.start()
    latencies, errors, non_2xx = [], 0, 0
    for _ in procs:
        lat, err, bad = results.get(timeout=duration + 90)
        latencies += lat
        errors += err
        non_2xx += bad
    for p in procs:
        p.join(timeout=10)
    ms = [x * 1000 for x in latencies]
    return {"requests": len(ms), "seconds": duration, "requests_per_s": len(ms) / duration,
            "p50_ms": harness.percentile(ms, 50), "p99_ms": harness.percentile(ms, 99),
            "mean_ms": sum(ms) / len(ms) if ms else float("nan"), "errors": errors, "non_2xx": non_2xx}


# -- the benchmark ----------------------------------------------------------------------------
def check(base: str, case: dict) -> None:
    """One request of each case before timing: it must succeed, or the figures mean nothing."""
    if case["body"] is None:
        status, raw = harness.http_get(base + case["path"])
    else:
        status, raw = harness.http_post_json(base + case["path"], case["body"])
    if status != 200:
        raise RuntimeError(f"{case['method']} {case['path']} answered {status}: {raw[:300]!r}")


def table(results: dict, ratios: dict, loadgen: str) -> str:
    rows = []
    for conns, by_case in results.items():
        for name, r in by_case.items():
            rows.append([name, conns, r["requests_per_s"], r["p50_ms"], r["p99_ms"], r["requests"],
                         r["errors"] + r["non_2xx"]])
    out = [harness.markdown_table(["request", "connections", "requests/s", "p50 ms", "p99 ms", "requests",
                                   "errors"], rows), ""]
    out.append(harness.markdown_table(
        ["ratio", "connections", "value", "target", "verdict"],
        [[k.split("@")[0], k.split("@")[1], v["value"], v["target"] or "",
          {True: "pass", False: "FAIL", None: "-"}[v["pass"]]] for k, v in ratios.items()]))
    out += ["", f"load generator: {loadgen}"]
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=harness.GVA, help="GVA folder (labels.json, train.csv, test.csv)")
    p.add_argument("--model-dir", type=Path, default=None, help="serve this model store (default: train one)")
    p.add_argument("--train-rows", type=int, default=10_000, help="rows to train on when no --model-dir is given")
    p.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: `crimetag serve`'s own)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per case and concurrency")
    p.add_argument("--connections", default=",".join(map(str, CONCURRENCY)), help="comma-separated, e.g. 1,16")
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--out", type=Path, default=None, help="also write http.json and http.md here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from service.server import default_workers

    workers = args.workers or default_workers()
    loadgen = "wrk" if args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk")) else "python"
    conns_list = [int(c) for c in args.connections.split(",") if c.strip()]
    texts = harness.test_texts(args.data, BATCH)
    with harness.workdir() as tmp:
        work = Path(tmp)
        model_dir = harness.model_store(args.model_dir, args.data, train_rows=args.train_rows, work=work)
        results: dict = {}
        code_at_start = harness.code_digest()  # another engineer may change the code mid-run
        load = {"before": os.getloadavg()}
        with harness.serve(model_dir, workers=workers, log_path=work / "serve.log") as (base, _pid):
            for case in cases(texts):
                check(base, case)
            for conns in conns_list:
                results[conns] = {}
                for case in cases(texts):
                    harness.say(f"{case['name']} at {conns} connection(s) for {args.duration:g} s ({loadgen})")
                    run = (run_wrk(base, case, conns, args.duration, work) if loadgen == "wrk"
                           else run_python(base, case, conns, args.duration))
                    run["texts_per_s"] = run["requests_per_s"] * case["texts"]
                    results[conns][case["name"]] = run
        load["after"] = os.getloadavg()
    ratios = {}
    for conns, by_case in results.items():
        health = by_case["healthz"]["requests_per_s"]
        for name in by_case:
            if name != "healthz":
                value = by_case[name]["requests_per_s"] / health if health else float("nan")
                single = name == "predict_single"
                ratios[f"{name}/healthz requests/s@{conns}"] = {
                    "value": value, "target": ">= 0.6" if single else None, "pass": (value >= 0.6) if single else None}
    summary = {"benchmark": "http", "machine": harness.machine(), "load_average": load,
               "crimetag_code_digest_at_start": code_at_start,
               "command": " ".join(["python", "bench/http.py", *(argv if argv is not None else sys.argv[1:])]),
               "server": {"workers": workers, "worker_class": "sync", "model_dir": str(args.model_dir or "trained here"),
                          "train_rows": None if args.model_dir else args.train_rows},
               "loadgen": loadgen, "duration_s": args.duration, "single_text": harness.SHORT_TEXT,
               "results": {str(c): r for c, r in results.items()}, "ratios": ratios}
    harness.emit("http", summary, table(results, ratios, loadgen), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
