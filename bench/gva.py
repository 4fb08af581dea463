"""crimetag against fastText on the GVA incident notes, both measured in this one run.

    python bench/gva.py                          # full GVA train/test (the large-data regime)
    python bench/gva.py --train-rows 2000 --test-rows 500 --latency-calls 200 --no-fasttext   # quick run

For each tool: fit time (CSV on disk to a saved model), in-process batch throughput over the
test set, single-text latency (median, p99) and micro/macro F1 by `training.evaluate.metrics`
on the same label-indicator matrices; for crimetag also the throughput of `crimetag predict`
as a whole process (start-up and model load included). fastText is a benchmark-only dependency
(`pip install -e '.[bench]'`); without it crimetag is measured alone and fastText is "skipped".
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# bench/ is a folder of scripts: its own entry goes last on the path, so bench/http.py never
# shadows the standard library's http, and `harness` is still found.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE] + [str(_HERE)]
import harness  # noqa: E402

FT_PARAMS = {"loss": "ova", "wordNgrams": 2, "epoch": 25}  # the settings; the rest are defaults
FT_THRESHOLD = 0.5
FT_NONE = "__label__(none)"  # fastText skips lines without a label: unlabelled notes train this one
_FT_TOKEN = re.compile(r"\w+|[^\w\s]")
TARGETS = {
    "micro_f1": ("crimetag micro-F1 - fastText micro-F1", ">= 0"),
    "process_throughput": ("crimetag `predict` process / fastText in-process texts/s", ">= 0.5"),
    "latency": ("crimetag / fastText single-text median latency", "<= 5"),
    "training": ("crimetag / fastText fit time (CSV to saved model, wall)", "<= 3"),
}


def ft_text(text: str) -> str:
    """fastText's input form: lower-cased, words and punctuation split by spaces, one line."""
    return " ".join(_FT_TOKEN.findall(text.lower()))


def one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


# -- crimetag ---------------------------------------------------------------------------------
def bench_crimetag(args, work: Path, train_csv: Path, texts: list[str], y_true, ids) -> dict:
    import numpy as np

    from model.store import ModelStore
    from training.evaluate import indicator, metrics
    from training.fit import train

    store = ModelStore(args.keep_store or work / "store")
    harness.say(f"crimetag: training (regime by data size; {args.cv_folds}-fold CV if small)")
    t0, c0 = time.perf_counter(), harness.tree_cpu_seconds()
    result = train(store, data_paths=[train_csv], taxonomy_path=args.data / "labels.json",
                   cv_folds=args.cv_folds, seed=0)
    fit_s, fit_cpu_s = time.perf_counter() - t0, harness.tree_cpu_seconds() - c0

    t0 = time.perf_counter()
    tagger = store.load()
    load_s = time.perf_counter() - t0

    harness.say("crimetag: in-process batch scoring")
    t0, c0 = time.perf_counter(), harness.tree_cpu_seconds()
    results = []
    for i in range(0, len(texts), args.batch_size):
        results += tagger.predict(texts[i:i + args.batch_size])
    batch_s, batch_cpu_s = time.perf_counter() - t0, harness.tree_cpu_seconds() - c0
    predicted = [[e["label"] for e in r["labels"]] for r in results]
    y_pred = indicator(predicted, ids)
    t0 = time.perf_counter()
    for i in range(0, len(texts), args.batch_size):
        tagger.scores(texts[i:i + args.batch_size])
    scores_s = time.perf_counter() - t0

    harness.say("crimetag: `predict` as a process")
    stdin_path, stdout_path = work / "test-texts.txt", work / "predict-out.jsonl"
    stdin_path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    cmd = [sys.executable, "-m", "training.cli", "predict", "--model-dir", str(store.root),
           "--batch-size", str(args.batch_size)]
    with open(stdin_path, "rb") as fin, open(stdout_path, "wb") as fout:
        t0, c0 = time.perf_counter(), harness.tree_cpu_seconds()
        proc = subprocess.run(cmd, stdin=fin, stdout=fout, stderr=subprocess.PIPE, cwd=harness.REPO,
                              timeout=args.max_seconds * 10)
        process_s, process_cpu_s = time.perf_counter() - t0, harness.tree_cpu_seconds() - c0
    if proc.returncode != 0:
        raise RuntimeError(f"crimetag predict failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")
    lines = stdout_path.read_text(encoding="utf-8").splitlines()
    same = sum(sorted(e["label"] for e in json.loads(line)["labels"]) == sorted(p)
               for line, p in zip(lines, predicted))

    m = metrics(y_true, y_pred, ids)
    return {
        "fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "fit_breakdown_s": result.report["timings"],
        "cv_folds": args.cv_folds, "model_selection": result.report["model_selection"],
        "model_load_s": load_s,
        "batch_texts_per_s": len(texts) / batch_s, "batch_cpu_s": batch_cpu_s,
        "scores_only_texts_per_s": len(texts) / scores_s,
        "process_texts_per_s": len(texts) / process_s, "process_s": process_s, "process_cpu_s": process_cpu_s,
        "process_lines_out": len(lines), "process_agrees_with_in_process": same / max(len(texts), 1),
        "latency_call": lambda: tagger.predict([harness.SHORT_TEXT]),
        "micro_f1": m["micro_f1"], "macro_f1": m["macro_f1"],
        "predicted_label_rate": float(np.mean(y_pred.sum(1) > 0)),
    }


# -- fastText ---------------------------------------------------------------------------------
def bench_fasttext(args, work: Path, train_csv: Path, texts: list[str], y_true, ids) -> dict:
    try:
        import fasttext
    except ImportError:
        return {"skipped": "fastText is not installed (pip install -e '.[bench]' installs fasttext-numpy2)"}
    from training.data import read_labelled
    from training.evaluate import indicator, metrics

    threads = max(1, (os.cpu_count() or 1) - 1) if args.ft_threads is None else args.ft_threads
    harness.say(f"fastText: training ({threads} thread(s))")
    t0, c0 = time.perf_counter(), harness.tree_cpu_seconds()
    data = read_labelled([train_csv], ids)
    ft_train = work / "fasttext-train.txt"
    with open(ft_train, "w", encoding="utf-8") as fh:
        for text, labels in zip(data.texts, data.labels):
            tags = " ".join(f"__label__{lab}" for lab in labels) or FT_NONE
            fh.write(f"{tags} {ft_text(text)}\n")
    t1 = time.perf_counter()
    params = {**FT_PARAMS, **({"bucket": args.ft_bucket} if args.ft_bucket else {})}
    model = fasttext.train_supervised(input=str(ft_train), thread=threads, seed=0, verbose=0, **params)
    t2 = time.perf_counter()
    model.save_model(str(work / "fasttext.bin"))
    fit_s, fit_cpu_s = time.perf_counter() - t0, harness.tree_cpu_seconds() - c0
    breakdown = {"read_and_write_input_s": t1 - t0, "train_s": t2 - t1, "save_s": fit_s - (t2 - t0)}
    model_mib = (work / "fasttext.bin").stat().st_size / 2 ** 20

    t0 = time.perf_counter()
    fasttext.load_model(str(work / "fasttext.bin"))
    load_s = time.perf_counter() - t0

    harness.say("fastText: in-process batch scoring")
    t0, c0 = time.perf_counter(), harness.tree_cpu_seconds()
    labels, _probs = model.predict([ft_text(t) for t in texts], k=-1, threshold=FT_THRESHOLD)
    batch_s, batch_cpu_s = time.perf_counter() - t0, harness.tree_cpu_seconds() - c0
    known = set(ids)
    predicted = [[lab[len("__label__"):] for lab in row if lab[len("__label__"):] in known] for row in labels]
    y_pred = indicator(predicted, ids)

    m = metrics(y_true, y_pred, ids)
    return {
        "fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "fit_breakdown_s": breakdown, "model_file_mib": model_mib,
        "params": {**params, "thread": threads, "threshold": FT_THRESHOLD},
        "model_load_s": load_s, "batch_texts_per_s": len(texts) / batch_s, "batch_cpu_s": batch_cpu_s,
        "latency_call": lambda: model.predict(ft_text(harness.SHORT_TEXT), k=-1, threshold=FT_THRESHOLD),
        "micro_f1": m["micro_f1"], "macro_f1": m["macro_f1"],
    }


# -- ratios and output ------------------------------------------------------------------------
def ratios(ct: dict, ft: dict) -> dict:
    """The issue's four comparisons, each with its value, target and verdict (None when skipped)."""
    if "skipped" in ft:
        return {k: {"what": what, "target": target, "value": None, "pass": None}
                for k, (what, target) in TARGETS.items()}
    values = {
        "micro_f1": ct["micro_f1"] - ft["micro_f1"],
        "process_throughput": ct["process_texts_per_s"] / ft["batch_texts_per_s"],
        "latency": ct["latency"]["median_ms"] / ft["latency"]["median_ms"],
        "training": ct["fit_s"] / ft["fit_s"],
    }
    out = {}
    for k, (what, target) in TARGETS.items():
        op, bound = target.split()
        ok = values[k] >= float(bound) if op == ">=" else values[k] <= float(bound)
        out[k] = {"what": what, "target": target, "value": values[k], "pass": ok}
    ct_fit = sum(ct["fit_breakdown_s"][k] for k in ("features_s", "calibration_s", "final_fit_s"))
    out["training_only"] = {"what": "crimetag (features + CV + final fit) / fastText train_supervised, without I/O",
                            "target": None, "value": ct_fit / ft["fit_breakdown_s"]["train_s"], "pass": None}
    out["training_cpu"] = {"what": "crimetag / fastText fit CPU time", "target": None,
                           "value": ct["fit_cpu_s"] / ft["fit_cpu_s"], "pass": None}
    out["process_throughput_cpu"] = {
        "what": "as process_throughput, on CPU seconds instead of wall (robust to a busy machine)",
        "target": None, "value": ft["batch_cpu_s"] / ct["process_cpu_s"] if ct["process_cpu_s"] else None,
        "pass": None}
    out["latency_p99"] = {"what": "crimetag / fastText single-text p99 latency", "target": None,
                          "value": ct["latency"]["p99_ms"] / ft["latency"]["p99_ms"], "pass": None}
    return out


def table(ct: dict, ft: dict, r: dict) -> str:
    skipped = "skipped" in ft
    f = (lambda key, sub=None: None) if skipped else (lambda key, sub=None: ft[key][sub] if sub else ft[key])
    rows = [
        ["fit time, wall (s)", ct["fit_s"], f("fit_s")],
        ["fit time, CPU (s)", ct["fit_cpu_s"], f("fit_cpu_s")],
        ["batch throughput, in-process (texts/s)", ct["batch_texts_per_s"], f("batch_texts_per_s")],
        ["batch scoring CPU time, in-process (s)", ct["batch_cpu_s"], f("batch_cpu_s")],
        ["`crimetag predict` process throughput (texts/s)", ct["process_texts_per_s"], None],
        ["`crimetag predict` process CPU time (s)", ct["process_cpu_s"], None],
        ["single-text latency, median (ms)", ct["latency"]["median_ms"], f("latency", "median_ms")],
        ["single-text latency, p99 (ms)", ct["latency"]["p99_ms"], f("latency", "p99_ms")],
        ["micro-F1 (test)", ct["micro_f1"], f("micro_f1")],
        ["macro-F1 (test)", ct["macro_f1"], f("macro_f1")],
    ]
    out = [harness.markdown_table(["measure", "crimetag", "fastText"], rows), ""]
    verdict = {True: "pass", False: "FAIL", None: "skipped" if skipped else "-"}
    out.append(harness.markdown_table(
        ["comparison", "value", "target", "verdict"],
        [[v["what"], v["value"], v["target"], verdict[v["pass"]]] for v in r.values()]))
    if skipped:
        out += ["", f"fastText skipped: {ft['skipped']}"]
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=harness.GVA, help="GVA folder (labels.json, train.csv, test.csv)")
    p.add_argument("--train-rows", type=int, default=None, help="first N training rows (default: all)")
    p.add_argument("--test-rows", type=int, default=None, help="first N test rows (default: all)")
    p.add_argument("--cv-folds", type=int, default=3,
                   help="crimetag's cross-validation folds in the small-data regime (default 3)")
    p.add_argument("--batch-size", type=int, default=512, help="crimetag batch size, as `crimetag predict`")
    p.add_argument("--latency-calls", type=int, default=2000)
    p.add_argument("--max-seconds", type=float, default=60.0, help="cap on each latency loop")
    p.add_argument("--ft-threads", type=int, default=None, help="fastText threads (default: its own, nproc-1)")
    p.add_argument("--ft-bucket", type=int, default=None,
                   help="fastText n-gram hash buckets (default: its own, 2,000,000: a 760 MiB model)")
    p.add_argument("--no-fasttext", action="store_true", help="measure crimetag alone")
    p.add_argument("--keep-store", type=Path, default=None,
                   help="train crimetag into this store and keep it (for http.py / memory.py --model-dir)")
    p.add_argument("--out", type=Path, default=None, help="also write gva.json and gva.md here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from model.labels import load_taxonomy
    from training.data import read_labelled
    from training.evaluate import indicator

    ids = load_taxonomy(args.data / "labels.json").ids
    load = {"before": os.getloadavg()}
    code_at_start = harness.code_digest()  # another engineer may change the code mid-run
    with harness.workdir() as tmp:
        work = Path(tmp)
        train_csv = harness.write_subset(args.data / "train.csv", work / "train.csv", args.train_rows)
        test = read_labelled([args.data / "test.csv"], ids)
        n_test = args.test_rows or len(test)
        texts = [one_line(t) for t in test.texts[:n_test]]
        y_true = indicator(test.labels[:n_test], ids)
        ct = bench_crimetag(args, work, train_csv, texts, y_true, ids)
        ft = ({"skipped": "--no-fasttext"} if args.no_fasttext
              else bench_fasttext(args, work, train_csv, texts, y_true, ids))
        calls = {"crimetag": ct.pop("latency_call")}
        if "skipped" not in ft:
            calls["fastText"] = ft.pop("latency_call")
        harness.say(f"single-text latency: {args.latency_calls} calls each, in alternating blocks")
        lat = harness.interleaved_latency(calls, calls=args.latency_calls, max_seconds=args.max_seconds)
        ct["latency"] = lat["crimetag"]
        if "fastText" in lat:
            ft["latency"] = lat["fastText"]
    load["after"] = os.getloadavg()
    r = ratios(ct, ft)
    summary = {"benchmark": "gva", "machine": harness.machine(), "load_average": load,
               "crimetag_code_digest_at_start": code_at_start,
               "command": " ".join(["python", "bench/gva.py", *(argv if argv is not None else sys.argv[1:])]),
               "data": {"train_rows": args.train_rows or "all", "test_rows": n_test, "labels": len(ids),
                        "single_text": harness.SHORT_TEXT},
               "crimetag": ct, "fasttext": ft, "ratios": r}
    harness.emit("gva", summary, table(ct, ft, r), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
