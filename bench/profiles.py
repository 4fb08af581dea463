"""Both profiles side by side in one run: accuracy on real text and the cost of each.

usage: python bench/profiles.py [--out DIR] [--profiles fast,accurate] [--safecity-rows N]

For each profile: train on the bundled corpus (cross-validated report), recall on the real
probe texts (../shared/data/probes), SafeCity retrained with its own taxonomy and scored on
its dev split, single-text latency, batch throughput, training time and resident memory of a
process holding the model. Timings are medians of repeated runs in this one process.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from model.store import ModelStore  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.fit import train  # noqa: E402

SAFECITY_TAXONOMY = [{"id": "commenting", "name": "Commenting"}, {"id": "ogling", "name": "Ogling"},
                     {"id": "groping", "name": "Groping"}]
SHORT = "RP states ex-partner has been outside her address every night this week and followed her to work."


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def probe_recall(tagger) -> dict:
    out = {}
    ids = tagger.taxonomy.ids
    for label in ("missing_person", "mental_health"):
        texts = [json.loads(line)["text"] for line in (SHARED / "probes" / f"{label}.jsonl").open(encoding="utf-8")]
        pred = tagger.scores(texts) >= tagger.thresholds
        j = ids.index(label)
        out[label] = {"n": len(texts), "recall": round(float(pred[:, j].mean()), 4),
                      "other_label_share": round(float(np.delete(pred, j, axis=1).any(1).mean()), 4)}
    return out


def latency(tagger, n: int = 300) -> dict:
    tagger.predict([SHORT])
    times = []
    for i in range(n):
        text = f"{SHORT} ({i})"  # a new text each call: no embedding-cache hits
        t = time.perf_counter()
        tagger.predict([text])
        times.append(time.perf_counter() - t)
    times.sort()
    return {"median_ms": round(statistics.median(times) * 1000, 3), "p99_ms": round(times[int(0.99 * len(times)) - 1] * 1000, 3)}


def throughput(tagger, texts: list[str]) -> float:
    t = time.perf_counter()
    for i in range(0, len(texts), 256):
        tagger.predict(texts[i:i + 256])
    return round(len(texts) / (time.perf_counter() - t), 1)


def run(profile: str, work: Path, safecity_rows: int | None) -> dict:
    res: dict = {"profile": profile}
    store = ModelStore(work / f"{profile}-corpus")
    t = time.perf_counter()
    result = train(store, profile=profile)
    res["train_s"] = round(time.perf_counter() - t, 1)
    rep = result.report
    res["corpus_cv"] = {"macro_f1": rep["macro_f1"], "micro_f1": rep["micro_f1"], "C": rep["model_selection"]["C"],
                        "per_label_f1": {k: v["f1"] for k, v in rep["per_label"].items()},
                        "brier": round(rep["calibration"]["brier"], 4), "ece": round(rep["calibration"]["ece"], 4)}
    before = rss_mb()
    tagger = store.load()
    res["model_rss_mb"] = round(rss_mb() - before, 1)
    res["probes"] = probe_recall(tagger)
    res["single_text"] = latency(tagger)
    dev_texts = [r["text"] for r in map(json.loads, (SHARED / "probes" / "missing_person.jsonl").open())]
    # Texts the model has not seen in this process, so the embedding cache cannot help.
    res["batch_texts_per_s"] = throughput(tagger, [f"{t} (batch {i})" for i, t in enumerate((dev_texts * 2)[:1000])])
    if (SHARED / "safecity").exists():
        tax = work / "safecity_taxonomy.json"
        tax.write_text(json.dumps(SAFECITY_TAXONOMY))
        train_csv = SHARED / "safecity" / "train.csv"
        if safecity_rows:
            small = work / "safecity_train_small.csv"
            small.write_text("".join(train_csv.open(encoding="utf-8").readlines()[: safecity_rows + 1]), encoding="utf-8")
            train_csv = small
        sc = ModelStore(work / f"{profile}-safecity")
        t = time.perf_counter()
        train(sc, data_paths=[train_csv], taxonomy_path=tax, profile=profile)
        res["safecity_train_s"] = round(time.perf_counter() - t, 1)
        m = evaluate(sc.load(), [SHARED / "safecity" / "dev.csv"])
        res["safecity_dev"] = {k: m[k] for k in ("n", "example_jaccard", "label_accuracy", "macro_f1", "micro_f1")}
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/out")
    ap.add_argument("--profiles", default="fast,accurate")
    ap.add_argument("--safecity-rows", type=int, default=None, help="train SafeCity on the first N rows only (smoke)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for profile in args.profiles.split(","):
            results.append(run(profile, Path(tmp), args.safecity_rows))
            print(json.dumps(results[-1]), flush=True)
    (out / "profiles.json").write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
                                                   "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
