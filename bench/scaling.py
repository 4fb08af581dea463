"""Training time and peak memory of `crimetag train` at growing slices of GVA train.

    python bench/scaling.py                               # 10k, 25k, 50k and 100k rows (the large-data regime)
    python bench/scaling.py --sizes 1000,2000             # smoke run

Each size trains in its own child process (`python -m training.cli train --json`), so nothing
carries over between sizes. Peak memory is reported twice: the largest single process's ru_maxrss
(from os.wait4) and the largest sum of PSS over the child and its joblib workers, sampled every
0.2 s (the footprint of the whole training). The growth per doubling of rows is (t2/t1) ** (log 2 / log(n2/n1)): 2.0 is linear.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# bench/ is a folder of scripts: its own entry goes last on the path, so bench/http.py never
# shadows the standard library's http, and `harness` is still found.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE] + [str(_HERE)]
import harness  # noqa: E402

SIZES = (10_000, 25_000, 50_000, 100_000)


def train_child(data: Path, labels: Path, store: Path, cv_folds: int, timeout: float, log: Path) -> dict:
    """Run one `crimetag train` child; wall time, CPU time and peak RSS from its own rusage."""
    cmd = [sys.executable, "-m", "training.cli", "train", "--data", str(data), "--taxonomy", str(labels),
           "--cv-folds", str(cv_folds), "--model-dir", str(store), "--json", "--quiet"]
    out_path = log.with_suffix(".json")
    with open(out_path, "wb") as out, open(log, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=harness.REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        peak_tree = 0.0
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_tree = max(peak_tree, harness.tree_pss_mib(proc.pid))
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGKILL)
                pid, status, ru = os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise TimeoutError(f"training did not finish in {timeout:.0f} s")
            time.sleep(0.2)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"crimetag train exited {proc.returncode}: {log.read_text(errors='replace')[-800:]}")
    report = json.loads(out_path.read_text(encoding="utf-8"))
    # ru_maxrss is the largest single process (the trainer or one joblib worker); the sampled
    # PSS sum over the whole tree is the footprint of the training as a whole.
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": ru.ru_maxrss / 1024,
            "peak_tree_pss_mib": peak_tree,
            "timings": report["timings"], "heldout_micro_f1": report["micro_f1"], "heldout_macro_f1": report["macro_f1"],
            "regime": report["model_selection"]["regime"], "features": report["model_selection"]["features"]}


def per_doubling(n1: int, n2: int, v1: float, v2: float) -> float:
    """How much a value grows when the rows double, on the log-log line through two points."""
    return (v2 / v1) ** (math.log(2) / math.log(n2 / n1))


def growth(points: list[dict]) -> list[dict]:
    out = []
    pairs = list(zip(points, points[1:]))
    if len(points) > 2:
        pairs.append((points[0], points[-1]))
    for a, b in pairs:
        row = {"from_rows": a["rows"], "to_rows": b["rows"]}
        for key in ("wall_s", "cpu_s", "peak_rss_mib", "peak_tree_pss_mib"):
            row[key] = per_doubling(a["rows"], b["rows"], a[key], b[key])
        for key in ("features_s", "calibration_s", "final_fit_s"):
            row[key] = per_doubling(a["rows"], b["rows"], a["timings"][key], b["timings"][key])
        out.append(row)
    return out


def table(points: list[dict], grow: list[dict]) -> str:
    rows = [[p["rows"], p["regime"], p["wall_s"], p["cpu_s"], p["timings"]["features_s"], p["timings"]["calibration_s"],
             p["timings"]["final_fit_s"], p["peak_rss_mib"], p["peak_tree_pss_mib"]] for p in points]
    a = harness.markdown_table(["rows", "regime", "wall s", "CPU s", "features s", "held-out fits s", "final fit s",
                                "peak RSS MiB (largest process)", "peak PSS MiB (all processes)"], rows)
    b = harness.markdown_table(
        ["rows", "wall x per doubling", "CPU x", "features x", "held-out fits x", "final fit x", "peak RSS x", "peak PSS x"],
        [[f"{g['from_rows']} -> {g['to_rows']}", g["wall_s"], g["cpu_s"], g["features_s"], g["calibration_s"],
          g["final_fit_s"], g["peak_rss_mib"], g["peak_tree_pss_mib"]] for g in grow])
    return a + "\n\n" + b + "\n\n(x per doubling: 2.0 is linear; held-out fits (CV or holdout) and final fit are the classifier fits)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=harness.GVA, help="GVA folder (labels.json, train.csv)")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated row counts")
    p.add_argument("--cv-folds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=4 * 3600, help="seconds allowed per size")
    p.add_argument("--out", type=Path, default=None, help="also write scaling.json and scaling.md here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    points = []
    load = {"before": os.getloadavg()}
    with harness.workdir() as tmp:
        work = Path(tmp)
        for n in sizes:
            harness.say(f"training on {n} rows in a child process")
            data = harness.write_subset(args.data / "train.csv", work / f"train-{n}.csv", n)
            digest = harness.code_digest()  # the child imports the code as it is now
            point = train_child(data, args.data / "labels.json", work / f"store-{n}", args.cv_folds,
                                args.timeout, work / f"train-{n}.log")
            points.append({"rows": n, "crimetag_code_digest": digest, **point})
            harness.say(f"{n} rows: {json.dumps(points[-1])}")  # kept in the log if a later size dies
            data.unlink(missing_ok=True)
    load["after"] = os.getloadavg()
    grow = growth(points)
    summary = {"benchmark": "scaling", "machine": harness.machine(), "load_average": load,
               "command": " ".join(["python", "bench/scaling.py", *(argv if argv is not None else sys.argv[1:])]),
               "cv_folds": args.cv_folds, "points": points, "growth_per_doubling": grow}
    harness.emit("scaling", summary, table(points, grow), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
