"""Model signing: with CRIMETAG_SIGNING_KEY set, only models signed with that key are ever loaded.

    python reliability/signing.py [--json FILE] [--keep DIR]

- `crimetag train` with the key signs the metadata (HMAC-SHA256 over it, model digest included).
- An unsigned model, and one signed with another key, are refused by `crimetag predict`, by
  `crimetag models use`, by `crimetag serve` at start, and by a running server's reload (409,
  the old model keeps serving).
- Someone who can write to the store but lacks the key cannot plant a model: a pickle that runs
  code put in as model.joblib, with metadata.json rewritten to its digest (signature kept,
  dropped, or made with a guessed key; or a signed version edited in place), is refused and never
  unpickled (its marker file never appears).
- For contrast (INFO, not a failure): without a key the same planted version is accepted. Its
  pickle still does not run through `crimetag predict` (scoring reads only numpy arrays without
  pickle and JSON), but a writer could change what the model says: a store writable by others
  needs the key.

Prints a table and exits 1 if any check failed.
"""
from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

REPRODUCE = "python reliability/signing.py"
DATA_STEP = 24


def plant(store: Path, source: str, name: str, marker: Path, signature: str) -> str:
    """As a store writer without the key: a hostile model.joblib and metadata rewritten to match it."""
    from model.store import sha256_file, sign

    vdir = store / "versions" / name
    if name != source:
        shutil.copytree(store / "versions" / source, vdir)
    c.write_evil_pickle(vdir / "model.joblib", marker)
    meta = json.loads((vdir / "metadata.json").read_text())
    meta["model_sha256"] = meta["files"]["model.joblib"] = sha256_file(vdir / "model.joblib")
    if signature == "dropped":
        meta.pop("signature", None)
    elif signature.startswith("guess:"):
        meta["signature"] = sign(meta, signature[len("guess:"):])
    (vdir / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="also write the table as JSON to this file")
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temp dir, removed)")
    args = ap.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="crimetag-signing-"))
    work.mkdir(parents=True, exist_ok=True)
    table = c.Table("crimetag model signing", extra={"command": " ".join(sys.argv)})
    started = time.monotonic()
    try:
        run_checks(table, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    table.extra["seconds"] = round(time.monotonic() - started, 1)
    table.print()
    print(f"({table.extra['seconds']} s)")
    table.write_json(args.json)
    return table.exit_code()


def run_checks(table: c.Table, work: Path) -> None:
    from model.store import ModelStore, sign

    key, other_key = secrets.token_hex(16), secrets.token_hex(16)
    keyed = {"CRIMETAG_SIGNING_KEY": key}
    data = c.corpus_file(work / "data.jsonl", DATA_STEP)
    store = work / "store"
    marker = work / "PLANTED-MODEL-RAN"

    # 1. `crimetag train` with the key signs.
    res = c.run(c.crimetag_cmd("train", "--data", str(data), "--cv-folds", "2", "--quiet"),
                env=c.clean_env(CRIMETAG_MODEL_DIR=str(store), **keyed), timeout=600)
    if res.returncode != 0:
        table.add("train with CRIMETAG_SIGNING_KEY signs", False, f"train failed: {res.stderr.decode()[-300:]}",
                  reproduce=REPRODUCE)
        return
    signed = ModelStore(store, signing_key=key).current_version()
    meta = json.loads((store / "versions" / signed / "metadata.json").read_text())
    ok = meta.get("signature") == sign(meta, key)
    table.add("train with CRIMETAG_SIGNING_KEY signs", ok,
              f"metadata.json of {signed} carries an HMAC-SHA256 signature that verifies with the key" if ok
              else f"signature {meta.get('signature')!r} does not verify", reproduce=REPRODUCE)
    res = c.cli("predict", "--model-dir", str(store), c.PROBE_TEXT, env=keyed)
    table.add("signed model: predict with the key", res.exit_code == 0 and not res.exception,
              f"exit {res.exit_code}" + (f": {res.stderr.strip()[:200]}" if res.exit_code else ""), reproduce=REPRODUCE)

    # The bad versions: unsigned, signed with another key, and planted by a writer without the key.
    tagger = ModelStore(store, signing_key=key).load(with_pipeline=True)
    base_meta = {k: v for k, v in meta.items() if k in ("profile", "seed", "params", "data", "taxonomy_source", "metrics")}
    unsigned = ModelStore(store).save(tagger, base_meta, make_current=False)
    wrong = ModelStore(store, signing_key=other_key).save(tagger, base_meta, make_current=False)
    bad = [
        ("unsigned model", unsigned, "unsigned"),
        ("model signed with another key", wrong, "wrongly signed"),
        ("planted: hostile pickle, digest rewritten, signature kept",
         plant(store, signed, "planted-kept", marker, "kept"), "wrongly signed"),
        ("planted: hostile pickle, digest rewritten, signature dropped",
         plant(store, signed, "planted-dropped", marker, "dropped"), "unsigned"),
        ("planted: hostile pickle, digest rewritten, signed with a guessed key",
         plant(store, signed, "planted-guessed", marker, "guess:crimetag"), "wrongly signed"),
    ]
    edited = f"{signed}-edited"
    shutil.copytree(store / "versions" / signed, store / "versions" / edited)
    m = json.loads((store / "versions" / edited / "metadata.json").read_text())
    m["labels"][0]["threshold"] = 0.0  # make a label fire on everything, keep the signature
    (store / "versions" / edited / "metadata.json").write_text(json.dumps(m, indent=2, sort_keys=True))
    bad.append(("signed model with a threshold edited in metadata.json", edited, "wrongly signed"))

    server = c.Server(store, work / "server.log", workers=2, env_extra=keyed)
    try:
        server.wait_ready()
        for name, version, expected in bad:
            problems = []
            c.set_current(store, version)
            res = c.cli("predict", "--model-dir", str(store), c.PROBE_TEXT, env=keyed)
            if res.exception or res.exit_code != 1 or c.one_clear_error(res.stderr):
                problems.append(f"predict: exit {res.exit_code} {res.exception or c.one_clear_error(res.stderr) or ''}")
            elif expected not in res.stderr:
                problems.append(f"predict refused, but not as {expected!r}: {c.first_error_line(res.stderr)}")
            c.set_current(store, signed)
            use = c.cli("models", "use", version, "--model-dir", str(store), env=keyed)
            if use.exit_code != 1 or use.exception:
                problems.append(f"`models use` exit {use.exit_code} {use.exception or ''}")
            if (store / "CURRENT").read_text().strip() != signed:
                problems.append("`models use` switched to it")
            c.set_current(store, version)
            status, body = server.admin_reload()
            if status != 409:
                problems.append(f"reload answered {status}")
            served = {server.predict_version() for _ in range(6)}
            if served != {signed}:
                problems.append(f"server serves {sorted(map(str, served))}, not {signed}")
            c.set_current(store, signed)
            if marker.exists():
                problems.append("THE PLANTED PICKLE RAN (marker created)")
                marker.unlink()
            table.add(name, not problems,
                      "; ".join(problems) if problems else
                      f"predict refused ({c.first_error_line(res.stderr)[:110]}); `models use` refused; reload 409, "
                      f"still serving the signed model" + ("; never unpickled" if "planted" in name else ""),
                      reproduce=REPRODUCE)
    finally:
        server.stop()

    # A server must not start on an unsigned current model.
    c.set_current(store, unsigned)
    res = c.run(c.crimetag_cmd("serve", "--host", c.LOOPBACK, "--port", str(c.free_port()), "--workers", "1"),
                env=c.clean_env(CRIMETAG_MODEL_DIR=str(store), **keyed), timeout=120)
    stderr = res.stderr.decode(errors="replace")
    ok = res.returncode == 1 and not c.one_clear_error(stderr) and "unsigned" in stderr
    table.add("serve with the key on an unsigned current model", ok,
              f"exit {res.returncode}: {c.first_error_line(stderr)[:160]}", reproduce=REPRODUCE)

    # `crimetag models` with the key lists the bad versions as unusable, and still works.
    res = c.cli("models", "--model-dir", str(store), env=keyed)
    unusable = res.stdout.count("UNUSABLE")
    ok = res.exit_code == 0 and not res.exception and unusable == len(bad)
    table.add("`crimetag models` with the key", ok,
              f"exit {res.exit_code} {res.exception or ''}; {unusable} versions marked UNUSABLE, expected {len(bad)}"
              if not ok else f"exit 0; the {len(bad)} bad versions are marked UNUSABLE, the signed one is not",
              reproduce=REPRODUCE)

    # Contrast: with no key, the planted version (digests rewritten, no signature) is accepted.
    c.set_current(store, "planted-dropped")
    res = c.run(c.crimetag_cmd("predict", "--model-dir", str(store), c.PROBE_TEXT), timeout=120)
    ran = marker.exists()
    table.add("without a key: planted model with its digest rewritten (contrast)", None,
              f"accepted (exit {res.returncode}); {'unpickled: its code ran' if ran else 'its pickle was not unpickled: scoring reads arrays and JSON only'}; "
              "the digests guard against damage, not against a writer, who could change the scorer files: "
              "set CRIMETAG_SIGNING_KEY when others can write the store",
              lost="nothing (expected without a key)", reproduce=REPRODUCE)
    if ran:
        marker.unlink()
    c.set_current(store, signed)


if __name__ == "__main__":
    sys.exit(main())
