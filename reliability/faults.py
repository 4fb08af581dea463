"""Fault injection: what a crash, a full or read-only disk, a damaged store or a hostile pickle do.

    python reliability/faults.py [--kills 5] [--seed N] [--only GROUP] [--json FILE] [--keep DIR]

Groups (run in this order; --only runs one or more, comma-separated):
  kill      `kill -9` of `crimetag train` at random points of a normal run's duration, and at
            fixed points inside the store's save (model half written, before the rename into
            versions/, before CURRENT is switched, while it is switched)
  write     a write error while saving: a full tmpfs and a read-only remount (root with mount),
            else, and also, ENOSPC / EROFS injected at each write of the save
  corrupt   a truncated, bit-flipped or missing model file; a garbage, truncated, empty,
            missing, over-nested or mistyped metadata.json; a dangling or garbage CURRENT; a
            pickle that runs code placed as model.joblib. `crimetag predict` must refuse with one
            clear line, and a running server must answer POST /v1/admin/reload with 409 and keep
            serving the old model; the hostile pickle's marker file must never appear
  serve     `crimetag serve` on a missing, non-directory, unreadable or empty store: one clear
            line on stderr, no traceback

Prints a table (check, result, what was observed) and exits 1 if any check failed.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

GROUPS = ("kill", "write", "corrupt", "serve")
DATA_STEP = 24  # every 24th corpus row (~260 texts): a real but quick train
KILL_DATA_STEP = 48  # the trains killed at random points (~130 texts): only their duration matters


def reproduce(group: str) -> str:
    return f"python reliability/faults.py --only {group}"


# -- kill -9 ----------------------------------------------------------------------------------------
def check_after_kill(table: c.Table, name: str, store: Path, observed: str, reproduce_cmd: str,
                     before_current: str) -> None:
    from model.store import ModelStore

    problems = c.store_problems(store)
    res = c.cli("models", "--model-dir", str(store))
    if res.exit_code != 0 or res.exception or "UNUSABLE" in res.stdout:
        problems.append(f"`crimetag models` failed: {res.exception or res.stderr.strip() or res.stdout.strip()}")
    current = ModelStore(store).current_version()
    left = c.leftovers(store)
    n_versions = len(list((store / "versions").iterdir()))
    detail = (f"{observed}; {n_versions} versions, all complete and verified; current "
              f"{'unchanged' if current == before_current else 'is the new version'} and loads; "
              f"`crimetag models` ok; temp leftovers: {len(left)}")
    table.add(name, not problems, "; ".join(problems) if problems else detail,
              lost="nothing" if not problems else "see observed", reproduce=reproduce_cmd)


def kill_train(table: c.Table, work: Path, data: Path, base: Path, kills: int, rng: random.Random) -> None:
    from model.store import ModelStore

    store = work / "kill-store"
    shutil.copytree(base, store)
    env = c.clean_env(CRIMETAG_MODEL_DIR=str(store))
    cmd = c.crimetag_cmd("train", "--data", str(data), "--cv-folds", "2", "--quiet")
    t0 = time.monotonic()
    normal = c.run(cmd, env=env, timeout=600)
    duration = time.monotonic() - t0
    ok = normal.returncode == 0
    table.add("normal `crimetag train` (the reference duration)", ok,
              f"exit {normal.returncode} in {duration:.1f} s" + ("" if ok else f": {normal.stderr.decode()[-300:]}"),
              reproduce=reproduce("kill"))
    if not ok:
        return
    window = duration  # a run that finishes sooner narrows it: on a busy machine durations vary
    for i in range(1, kills + 1):
        delay = rng.uniform(0, window)
        before = ModelStore(store).current_version()
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=c.REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=c.die_with_parent)
        try:
            proc.wait(timeout=delay)
            took = time.monotonic() - started
            window = min(window, took)
            outcome = f"finished in {took:.1f} s, before the kill due at {delay:.1f} s (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            c.kill_group(proc)  # the train and its joblib workers: all started here
            proc.wait(30)
            outcome = f"SIGKILL at {delay:.1f} s (window {window:.1f} s)"
        check_after_kill(table, f"kill -9 train, run {i}/{kills}", store, outcome, reproduce("kill"), before)
    res = c.run(c.crimetag_cmd("models"), env=env, timeout=120)
    pred = c.run(c.crimetag_cmd("predict", c.PROBE_TEXT), env=env, timeout=120)
    ok = res.returncode == 0 and pred.returncode == 0 and b"model_version" in pred.stdout
    table.add("after the kills: `crimetag models` and `crimetag predict` (real processes)", ok,
              f"models exit {res.returncode}, predict exit {pred.returncode}"
              + ("" if ok else f": {(res.stderr + pred.stderr).decode()[-300:]}"), reproduce=reproduce("kill"))


def _crash_points(store_module, die):
    """name -> a function that patches the store module so that `die()` runs at that point of a save."""
    def model_half_written():
        import joblib  # the store imports it inside save: patching the module patches its call

        real_dump = joblib.dump

        def dump(obj, path, *a, **k):
            real_dump(obj, path, *a, **k)
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            die()
        joblib.dump = dump

    def before_rename():
        store_module.os.rename = lambda *a, **k: die()

    def before_current():
        store_module.ModelStore.use = lambda *a, **k: die()

    def while_current():
        store_module.os.replace = lambda *a, **k: die()

    return {"model file half written": model_half_written, "before the rename into versions/": before_rename,
            "after the rename, before CURRENT": before_current, "while CURRENT is replaced": while_current}


def kill_in_save(table: c.Table, work: Path, base: Path) -> None:
    """SIGKILL at fixed points inside ModelStore.save: a forked child patches the store, saves, and
    is killed at the point (fork: no interpreter start, and the kill is a real process death)."""
    import model.store as store_module
    from model.store import ModelStore

    base_store = ModelStore(base)
    tagger = base_store.load(with_pipeline=True)
    meta = {k: v for k, v in base_store.read_metadata(base_store.current_version()).items()
            if k in ("profile", "seed", "params", "data", "taxonomy_source", "metrics")}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    for name, patch in _crash_points(store_module, die).items():
        store = work / f"crash-{len(table.rows)}"
        shutil.copytree(base, store)
        before = ModelStore(store).current_version()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the script
            try:
                patch()
                ModelStore(store).save(tagger, meta)
            finally:
                os._exit(3)  # reached only if the crash point was never hit
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        observed = "killed (SIGKILL)" if killed else f"not killed (status {status}): the crash point was not reached"
        if not killed:
            table.add(f"kill -9 inside save: {name}", False, observed, reproduce=reproduce("kill"))
            continue
        check_after_kill(table, f"kill -9 inside save: {name}", store, observed, reproduce("kill"), before)


# -- write errors ---------------------------------------------------------------------------------
def failing_writes(err: int, matches):
    """Patches making every write to a file `matches(path)` write half its data and fail with `err`."""
    import builtins

    real_open = builtins.open

    class Failing:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise OSError(err, os.strerror(err))

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def failing_open(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        return Failing(fh) if "w" in mode and not isinstance(path, int) and matches(os.fspath(path)) else fh

    return [("model.store.open", failing_open), ("joblib.numpy_pickle.open", failing_open)]


def write_case(table: c.Table, name: str, store: Path, base: Path, data: Path, patches=(),
               expect_new_version: bool = False) -> None:
    """`crimetag train` into `store` with its writes failing: one clear line, nothing half-written.

    The fit is replaced by the base store's model (the write is under test, not the fit); the
    CLI's own code runs in this process, so an escaped exception is a traceback for a user."""
    from unittest import mock

    import training.fit as tf
    from model.store import ModelStore

    base_store = ModelStore(base)
    tagger = base_store.load(with_pipeline=True)
    report = dict(base_store.read_metadata(base_store.current_version())["metrics"], timings={})
    before = c.snapshot(store)
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(tf, "fit", lambda *a, **k: tf.FitResult(tagger, report)))
        for target, value in patches:
            stack.enter_context(mock.patch(target, value, create=True))
        res = c.cli("train", "--data", str(data), "--model-dir", str(store), "--quiet")
    problems = []
    if res.exception:
        problems.append(f"traceback: {res.exception[:150]}")
    elif res.exit_code != 1 or c.one_clear_error(res.stderr):
        problems.append(f"exit {res.exit_code}; stderr: {c.one_clear_error(res.stderr) or 'no error'}")
    after = c.snapshot(store)
    added = sorted(set(after) - set(before))
    changed = sorted(k for k in before if after.get(k) != before[k])
    if expect_new_version:  # the version was written whole; only switching CURRENT failed
        added = [a for a in added if not a.startswith("versions/")]
    if changed or added:
        problems.append(f"store changed: {', '.join(changed + added)[:200]}")
    problems += c.store_problems(store)  # every version whole and verified; the current one loads
    if ModelStore(store).current_version() != base_store.current_version():
        problems.append("CURRENT moved")
    table.add(name, not problems,
              "; ".join(problems) if problems else f"exit 1, one line: {c.first_error_line(res.stderr)}; "
              f"store {'unchanged' if not expect_new_version else 'has the new version, complete but not current'}; "
              "current model loads",
              lost="nothing" if not problems else "see observed", reproduce=reproduce("write"))


def mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, timeout=30)


def write_errors(table: c.Table, work: Path, data: Path, base: Path) -> None:
    model_size = sum(p.stat().st_size for p in (base / "versions").rglob("*") if p.is_file())

    # A real full disk and a real read-only file system: a tiny tmpfs (needs root and mount).
    mnt = work / "tmpfs"
    mnt.mkdir()
    used_kib = sum((p.stat().st_size + 4095) // 4096 * 4 for p in base.rglob("*") if p.is_file()) + 64
    size_kib = used_kib + model_size // 2048  # room for about half of a new model file
    mounted = os.geteuid() == 0 and bool(shutil.which("mount")) and mount("-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(mnt)).returncode == 0
    if mounted:
        try:
            store = mnt / "store"
            shutil.copytree(base, store)
            write_case(table, f"disk full (tmpfs of {size_kib} KiB, a new model needs {model_size // 1024} KiB more)",
                       store, base, data)
            remount = mount("-o", "remount,ro", str(mnt))
            if remount.returncode == 0:
                write_case(table, "read-only store (tmpfs remounted ro)", store, base, data)
            else:
                table.add("read-only store (tmpfs remounted ro)", None,
                          f"not run: remount failed: {remount.stderr.decode().strip()}", reproduce=reproduce("write"))
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)
    else:
        table.add("disk full / read-only on a real tmpfs", None,
                  "not run: mounting a tmpfs needs root and mount; the injected errors below stand in",
                  reproduce=reproduce("write"))

    def read_only(*_a, **_k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    # The same errors injected at each write of the save, so every step's failure is seen.
    injected = [
        ("ENOSPC writing model.joblib (injected)", failing_writes(errno.ENOSPC, lambda p: p.endswith("model.joblib")), False),
        ("ENOSPC writing metadata.json (injected)", failing_writes(errno.ENOSPC, lambda p: p.endswith("metadata.json")), False),
        ("ENOSPC writing CURRENT (injected)", failing_writes(errno.ENOSPC, lambda p: ".CURRENT." in p), True),
        ("EROFS creating the version directory (injected)", [("pathlib.Path.mkdir", read_only)], False),
    ]
    for name, patches, new_version in injected:
        store = work / f"write-{len(table.rows)}"
        shutil.copytree(base, store)
        write_case(table, name, store, base, data, patches, expect_new_version=new_version)


# -- corrupted stores -------------------------------------------------------------------------------
def flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


CORRUPTIONS = {
    # name: (file, damage); `marker` is the path the hostile pickle would create
    "model.joblib truncated to half": ("model.joblib", lambda p, m: truncate(p)),
    "model.joblib with one byte flipped": ("model.joblib", lambda p, m: flip_byte(p)),
    "model.joblib missing": ("model.joblib", lambda p, m: p.unlink()),
    "model.joblib replaced by a pickle that runs code": ("model.joblib", lambda p, m: c.write_evil_pickle(p, m)),
    "metadata.json garbage bytes": ("metadata.json", lambda p, m: p.write_bytes(os.urandom(512))),
    "metadata.json truncated to half": ("metadata.json", lambda p, m: truncate(p)),
    "metadata.json empty": ("metadata.json", lambda p, m: p.write_bytes(b"")),
    "metadata.json missing": ("metadata.json", lambda p, m: p.unlink()),
    "metadata.json nested 100k deep": ("metadata.json", lambda p, m: p.write_bytes(b"[" * 100_000)),
    "metadata.json with a mistyped field (libraries: a string)":
        ("metadata.json", lambda p, m: p.write_text(p.read_text().replace('"libraries": {', '"libraries": "x", "_": {', 1))),
}


def corrupt(table: c.Table, work: Path, base: Path) -> None:
    from model.store import ModelStore

    store = work / "corrupt-store"
    shutil.copytree(base, store)
    good = ModelStore(store).current_version()
    marker = work / "UNPICKLED-MARKER"
    server = c.Server(store, work / "corrupt-server.log", workers=2)
    try:
        server.wait_ready()
        cases = [(name, file, damage) for name, (file, damage) in CORRUPTIONS.items()]
        cases += [("CURRENT names a missing version", None, "dangling"), ("CURRENT holds garbage bytes", None, "garbage")]
        for i, (name, file, damage) in enumerate(cases):
            if file:
                version = f"damaged-{i:02d}"
                shutil.copytree(store / "versions" / good, store / "versions" / version)
                damage(store / "versions" / version / file, marker)
                c.set_current(store, version)
            elif damage == "dangling":
                c.set_current(store, "20991231-000000-deadbeef")
            else:
                (store / "CURRENT").write_bytes(b"\xff\xfe\x00garbage\n")
            problems = []
            # `crimetag predict` refuses with one clear line (the CLI's own code, in this process) ...
            res = c.cli("predict", "--model-dir", str(store), c.PROBE_TEXT)
            if res.exception:
                problems.append(f"predict: traceback ({res.exception[:120]})")
            elif res.exit_code != 1 or c.one_clear_error(res.stderr):
                problems.append(f"predict: exit {res.exit_code}, {c.one_clear_error(res.stderr) or 'no refusal'}")
            # ... and the running server answers the reload with 409 and keeps serving the good model.
            status, body = server.admin_reload()
            code = body.get("error", {}).get("code") if isinstance(body, dict) else None
            if status != 409 or code != "reload_failed":
                problems.append(f"reload answered {status} {code or str(body)[:80]}")
            served = {server.predict_version() for _ in range(6)}
            if served != {good}:
                problems.append(f"served {sorted(map(str, served))} after the reload, not {good}")
            if marker.exists():
                problems.append("THE HOSTILE PICKLE RAN (marker file created)")
                marker.unlink()
            table.add(f"damaged store: {name}", not problems,
                      "; ".join(problems) if problems else
                      f"predict refused: {c.first_error_line(res.stderr)[:150]}; reload 409; old model still served"
                      + ("; pickle never loaded (no marker)" if "pickle" in name else ""),
                      lost="nothing" if not problems else "see observed", reproduce=reproduce("corrupt"))
            c.set_current(store, good)
        # The hostile pickle through a real `crimetag predict` process as well.
        version = "damaged-evil-real"
        shutil.copytree(store / "versions" / good, store / "versions" / version)
        c.write_evil_pickle(store / "versions" / version / "model.joblib", marker)
        c.set_current(store, version)
        res = c.run(c.crimetag_cmd("predict", "--model-dir", str(store), c.PROBE_TEXT), timeout=120)
        stderr = res.stderr.decode(errors="replace")
        ok = res.returncode == 1 and not c.one_clear_error(stderr) and not marker.exists()
        table.add("hostile pickle, real `crimetag predict` process", ok,
                  f"exit {res.returncode}: {c.first_error_line(stderr)[:150]}; marker "
                  f"{'CREATED' if marker.exists() else 'never created'}", reproduce=reproduce("corrupt"))
        c.set_current(store, good)
        alive = server.proc.poll() is None and server.predict_version() == good
        table.add("server after every damaged reload", alive,
                  f"still up and serving {good}" if alive else "server died or changed model",
                  reproduce=reproduce("corrupt"))
    finally:
        server.stop()


# -- serve on a bad store -------------------------------------------------------------------------------
def serve_bad_store(table: c.Table, work: Path, base: Path) -> None:
    cases = []
    cases.append(("store directory missing", work / "no-such-store", None))
    a_file = work / "store-is-a-file"
    a_file.write_text("not a directory\n")
    cases.append(("store path is a file", a_file, None))
    empty = work / "empty-store"
    empty.mkdir()
    cases.append(("store directory empty (no model)", empty, None))
    unreadable = work / "unreadable-store"
    shutil.copytree(base, unreadable)
    os.chmod(unreadable, 0)
    prefix = None
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that let it
        if shutil.which("setpriv"):
            prefix = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                      "--bounding-set=-dac_override,-dac_read_search"]
        else:
            table.add("store directory unreadable", None, "not run: root without setpriv reads any directory",
                      reproduce=reproduce("serve"))
    inner = work / "unreadable-inside"
    shutil.copytree(base, inner)
    os.chmod(inner / "CURRENT", 0)
    os.chmod(inner / "versions", 0)
    if prefix is not None or os.geteuid() != 0:
        cases.append(("store directory unreadable (mode 000)", unreadable, prefix))
        cases.append(("CURRENT and versions/ unreadable (mode 000)", inner, prefix))
    # All at once: each should refuse within a few seconds, and they share nothing.
    procs = []
    for name, root, prefix in cases:
        cmd = c.crimetag_cmd("serve", "--host", c.LOOPBACK, "--port", str(c.free_port()), "--workers", "1")
        env = c.clean_env(CRIMETAG_MODEL_DIR=str(root))
        procs.append((name, subprocess.Popen((prefix or []) + cmd, cwd=c.REPO, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                             start_new_session=True, preexec_fn=c.die_with_parent)))
    deadline = time.monotonic() + 90
    for name, proc in procs:
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.kill_group(proc)
            proc.communicate(timeout=30)
            table.add(f"serve: {name}", False, "still running after 90 s (it should refuse to start)",
                      reproduce=reproduce("serve"))
            continue
        stderr = err.decode(errors="replace")
        bad = c.one_clear_error(stderr)
        ok = proc.returncode == 1 and not bad and not out
        table.add(f"serve: {name}", ok,
                  f"exit {proc.returncode}: {c.first_error_line(stderr)[:160]}" + (f" ({bad})" if bad else ""),
                  reproduce=reproduce("serve"))
    for path in (unreadable, inner / "CURRENT", inner / "versions"):
        os.chmod(path, 0o755)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=5, help="random kill -9 points (default 5)")
    ap.add_argument("--seed", type=int, default=None, help="seed for the kill points (default: random, printed)")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {', '.join(GROUPS)}")
    ap.add_argument("--json", help="also write the table as JSON to this file")
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temp dir, removed)")
    args = ap.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        ap.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="crimetag-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    table = c.Table(f"crimetag fault injection (seed {seed})", extra={"seed": seed, "command": " ".join(sys.argv)})
    started = time.monotonic()
    try:
        data = c.corpus_file(work / "data.jsonl", DATA_STEP)
        base = work / "base-store"  # one small model, copied wherever a store with a model is needed
        c.quick_version(base, data)
        if "kill" in groups:
            kill_data = c.corpus_file(work / "kill-data.jsonl", KILL_DATA_STEP)
            kill_train(table, work, kill_data, base, args.kills, random.Random(seed))
            kill_in_save(table, work, base)
        if "write" in groups:
            write_errors(table, work, data, base)
        if "corrupt" in groups:
            corrupt(table, work, base)
        if "serve" in groups:
            serve_bad_store(table, work, base)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    table.extra["seconds"] = round(time.monotonic() - started, 1)
    table.print()
    print(f"({table.extra['seconds']} s)")
    table.write_json(args.json)
    return table.exit_code()


if __name__ == "__main__":
    sys.exit(main())
