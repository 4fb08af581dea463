"""Check the bundled corpus (SPEC section 6) and print its tables: `python -m training.corpus_check`.

Fails on unknown labels or registers, lengths outside 8-200 words, counts under the minimums,
near-duplicates (two texts sharing >= 60% of the word 4-grams of the shorter), and identity
terms that appear more often in hidden-harm texts than in texts without those harms.
"""
from __future__ import annotations

import itertools
import json
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from model.labels import load_taxonomy

REGISTERS = ("log", "call_summary", "referral", "statement", "court", "press_release", "news_uk",
             "news_intl", "forum", "case_study")
MIN_TOTAL, MIN_PER_LABEL, MIN_NONE_SHARE, MIN_MULTI_SHARE = 4000, 200, 0.15, 0.15
MIN_WORDS, MAX_WORDS = 8, 200
NEAR_DUPLICATE = 0.6
# Labels whose texts name communities; identity terms there must be as common elsewhere.
IDENTITY_LABELS = {"fgm", "forced_marriage", "honour_based_abuse", "terrorism"}
IDENTITY_TERMS = ("muslim", "islam", "islamic", "mosque", "sikh", "hindu", "christian", "church", "jewish",
                  "pakistan", "pakistani", "india", "indian", "bangladesh", "bangladeshi", "somalia", "somali",
                  "sudan", "sudanese", "egypt", "egyptian", "nigeria", "nigerian", "kurdish", "turkey", "turkish",
                  "afghanistan", "afghan", "iraq", "iraqi", "syria", "syrian", "arab", "asian", "african",
                  "gambia", "kenya", "eritrea", "yemen", "iran", "eid", "ramadan", "imam", "gurdwara")
_WORD = re.compile(r"[a-z0-9']+")


@dataclass
class Report:
    rows: list = field(default_factory=list)
    problems: list = field(default_factory=list)


def read_corpus(paths: list[Path], label_ids: set[str]) -> Report:
    rep = Report()
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path.name}:{n}"
            try:
                r = json.loads(line)
            except json.JSONDecodeError as exc:
                rep.problems.append(f"{where}: not valid JSON ({exc.msg})")
                continue
            text, labels, register = r.get("text"), r.get("labels"), r.get("register")
            if not isinstance(text, str) or not text.strip():
                rep.problems.append(f"{where}: empty text")
                continue
            if not isinstance(labels, list) or set(labels) - label_ids:
                rep.problems.append(f"{where}: unknown labels {labels!r}")
                continue
            if register not in REGISTERS:
                rep.problems.append(f"{where}: unknown register {register!r}")
            words = len(text.split())
            if not MIN_WORDS <= words <= MAX_WORDS:
                rep.problems.append(f"{where}: {words} words (must be {MIN_WORDS}-{MAX_WORDS})")
            rep.rows.append({"where": where, "text": text, "labels": sorted(set(labels)), "register": register})
    return rep


def near_duplicates(texts: list[str], threshold: float = NEAR_DUPLICATE) -> list[tuple[int, int, float]]:
    """Pairs whose shared word 4-grams are >= threshold of the shorter text's 4-grams."""
    grams = []
    for t in texts:
        w = _WORD.findall(t.lower())
        grams.append(set(zip(w, w[1:], w[2:], w[3:])))
    index = defaultdict(list)
    for i, g in enumerate(grams):
        for x in g:
            index[x].append(i)
    pairs = []
    for i, g in enumerate(grams):
        shared = Counter(j for x in g for j in index[x] if j > i)
        for j, c in shared.items():
            share = c / max(1, min(len(g), len(grams[j])))
            if share >= threshold:
                pairs.append((i, j, share))
    return pairs


def identity_balance(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """For each identity term: (texts with an identity-linked harm, texts without one)."""
    out = {}
    for term in IDENTITY_TERMS:
        pat = re.compile(rf"\b{term}\b")
        harm = other = 0
        for r in rows:
            if pat.search(r["text"].lower()):
                if IDENTITY_LABELS & set(r["labels"]):
                    harm += 1
                else:
                    other += 1
        if harm or other:
            out[term] = (harm, other)
    return out


def check(paths: list[Path]) -> tuple[list[str], str]:
    """Return (problems, printable tables) for the corpus files."""
    ids = load_taxonomy().ids
    rep = read_corpus(paths, set(ids))
    rows, problems = rep.rows, list(rep.problems)
    for i, j, share in near_duplicates([r["text"] for r in rows]):
        problems.append(f"near-duplicate ({share:.0%} shared 4-grams): {rows[i]['where']} ~ {rows[j]['where']}")
    n = len(rows)
    per_label = Counter(l for r in rows for l in r["labels"])
    none = sum(not r["labels"] for r in rows)
    multi = sum(len(r["labels"]) >= 2 for r in rows)
    if n < MIN_TOTAL:
        problems.append(f"{n} texts; at least {MIN_TOTAL} needed")
    for lid in ids:
        if per_label[lid] < MIN_PER_LABEL:
            problems.append(f"label {lid}: {per_label[lid]} texts; at least {MIN_PER_LABEL} needed")
    if n and none / n < MIN_NONE_SHARE:
        problems.append(f"{none / n:.1%} of texts have no label; at least {MIN_NONE_SHARE:.0%} needed")
    if n and multi / n < MIN_MULTI_SHARE:
        problems.append(f"{multi / n:.1%} of texts have 2+ labels; at least {MIN_MULTI_SHARE:.0%} needed")
    balance = identity_balance(rows)
    for term, (harm, other) in balance.items():
        if harm > other:
            problems.append(f"identity term {term!r}: in {harm} hidden-harm texts but only {other} others")
    return problems, tables(rows, balance)


def tables(rows: list[dict], balance: dict) -> str:
    n = max(len(rows), 1)
    out = [f"texts: {len(rows)}", "", "| label | texts | share |", "|---|---:|---:|"]
    per_label = Counter(l for r in rows for l in r["labels"])
    for lid, c in sorted(per_label.items(), key=lambda kv: -kv[1]):
        out.append(f"| {lid} | {c} | {c / n:.1%} |")
    none = sum(not r["labels"] for r in rows)
    multi = sum(len(r["labels"]) >= 2 for r in rows)
    out += [f"| (none) | {none} | {none / n:.1%} |", f"| (two or more) | {multi} | {multi / n:.1%} |", "",
            "| register | texts |", "|---|---:|"]
    for reg, c in Counter(r["register"] for r in rows).most_common():
        out.append(f"| {reg} | {c} |")
    out += ["", "| label pair | texts |", "|---|---:|"]
    pairs = Counter(p for r in rows for p in itertools.combinations(r["labels"], 2))
    for (a, b), c in pairs.most_common(15):
        out.append(f"| {a} + {b} | {c} |")
    lengths = sorted(len(r["text"].split()) for r in rows) or [0]
    bands = Counter("8-24" if x < 25 else "25-80" if x <= 80 else "81-200" for x in lengths)
    out += ["", f"words: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]}; "
                + ", ".join(f"{k}: {bands[k]}" for k in ("8-24", "25-80", "81-200"))]
    out += ["", "identity terms (texts with FGM/forced marriage/HBA/terrorism vs all others): "
            + ", ".join(f"{t} {h}/{o}" for t, (h, o) in sorted(balance.items()))]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from .fit import bundled_corpus

    paths = [Path(p) for p in (argv if argv else sys.argv[1:])] or bundled_corpus()
    problems, table = check(paths)
    print(table)
    for p in problems[:50]:
        print(f"problem: {p}", file=sys.stderr)
    if len(problems) > 50:
        print(f"... and {len(problems) - 50} more problems", file=sys.stderr)
    print(f"corpus check: {'FAILED' if problems else 'passed'} ({len(problems)} problem(s))", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
