"""Resident memory of `crimetag serve` with 1, 2 and 4 workers, after a warm-up of requests.

    python bench/memory.py --model-dir STORE
    python bench/memory.py --train-rows 2000 --workers 1 --warmup 20     # smoke run

For the gunicorn master and each worker: RSS and PSS from /proc/PID/smaps_rollup (PSS splits
each shared page between the processes that map it, so the PSS sum is the server's real
footprint; the RSS sum counts the model shared before fork once per process), and USS (private
pages). The model is loaded in the master before fork; what a worker touches is copied.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

# bench/ is a folder of scripts: its own entry goes last on the path, so bench/http.py never
# shadows the standard library's http, and `harness` is still found.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE] + [str(_HERE)]
import harness  # noqa: E402

WORKERS = (1, 2, 4)


def smaps(pid: int) -> dict:
    """RSS, PSS and USS of one process in MiB, from /proc/PID/smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            fields[key.strip()] = int(parts[0]) / 1024
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss_mib": fields.get("Rss", 0.0), "pss_mib": fields.get("Pss", 0.0), "uss_mib": uss}


def warm_up(base: str, texts: list[str], requests: int, conns: int) -> int:
    """`requests` predict calls (single and batch alternating) over `conns` threads; returns failures."""
    failures = []

    def loop(n):
        for i in range(n):
            body = {"text": harness.SHORT_TEXT} if i % 2 == 0 else {"texts": texts}
            status, _ = harness.http_post_json(base + "/v1/predict", body, timeout=60)
            failures.append(status != 200)

    threads = [threading.Thread(target=loop, args=(requests // conns + 1,)) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return sum(failures)


def table(runs: list[dict]) -> str:
    rows = []
    for r in runs:
        w = r["workers"]
        per = r["per_worker"]
        rows.append([w, r["master"]["rss_mib"], sum(p["rss_mib"] for p in per) / len(per),
                     sum(p["uss_mib"] for p in per) / len(per), r["total"]["rss_mib"], r["total"]["pss_mib"]])
    return harness.markdown_table(["workers", "master RSS MiB", "RSS per worker MiB", "USS per worker MiB",
                                   "total RSS MiB (sum)", "total PSS MiB (sum)"], rows)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=harness.GVA, help="GVA folder (labels.json, train.csv, test.csv)")
    p.add_argument("--model-dir", type=Path, default=None, help="serve this model store (default: train one)")
    p.add_argument("--train-rows", type=int, default=10_000, help="rows to train on when no --model-dir is given")
    p.add_argument("--workers", default=",".join(map(str, WORKERS)), help="comma-separated worker counts")
    p.add_argument("--warmup", type=int, default=200, help="warm-up requests per worker")
    p.add_argument("--out", type=Path, default=None, help="also write memory.json and memory.md here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    texts = harness.test_texts(args.data, 32)
    runs = []
    code_at_start = harness.code_digest()  # another engineer may change the code mid-run
    with harness.workdir() as tmp:
        work = Path(tmp)
        model_dir = harness.model_store(args.model_dir, args.data, train_rows=args.train_rows, work=work)
        from model.store import MODEL_FILES

        model_mib = sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.name in MODEL_FILES) / 2 ** 20
        for w in [int(x) for x in args.workers.split(",") if x.strip()]:
            harness.say(f"{w} worker(s): starting, {args.warmup * w} warm-up requests")
            with harness.serve(model_dir, workers=w, log_path=work / f"serve-{w}.log") as (base, master):
                failed = warm_up(base, texts, args.warmup * w, conns=w)
                pids = harness.children(master)
                m, per = smaps(master), [smaps(pid) for pid in pids]
            total = {k: m[k] + sum(p[k] for p in per) for k in m}
            runs.append({"workers": w, "worker_pids": len(pids), "warmup_requests": args.warmup * w,
                         "warmup_failures": failed, "master": m, "per_worker": per, "total": total})
    summary = {"benchmark": "memory", "machine": harness.machine(),
               "crimetag_code_digest_at_start": code_at_start,
               "command": " ".join(["python", "bench/memory.py", *(argv if argv is not None else sys.argv[1:])]),
               "model": {"model_dir": str(args.model_dir or "trained here"),
                         "train_rows": None if args.model_dir else args.train_rows,
                         "store_model_files_mib": model_mib},
               "runs": runs}
    harness.emit("memory", summary, table(runs), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
