"""Admin authentication (401 / 403 / 404, constant-time comparison) and privacy of logs.

Neither the admin token, nor any request text, nor any training text may appear in any log at
any level: records of every logger at DEBUG (caplog), and the stderr of `crimetag train` and
`crimetag predict` run as subprocesses on files with distinctive sentences, with and without
errors in them. A DataError names file:line and the problem; it never echoes the text.
"""
from __future__ import annotations

import ast
import inspect
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import service.api
from service import create_app
from tests.conftest import corpus_slice, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cr3t-Admin-Tok3n-4b1d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Distinctive sentences: no word of them occurs in the corpus, so any occurrence in a log is a leak.
SENTENCES = [
    "Ottoline Brackenwhistle reported that Cassius Pemberglow kept her passport in Kidderminster",
    "Thaddeus Quorndon-Vexley threatened his neighbour Marisol Evenbright over the hedgerow",
    "Persephone Wyrmhollow was last seen near Llanfairpwll wearing a mustard duffel coat",
]
WORDS = sorted({w for s in SENTENCES for w in s.replace("-", " ").split() if len(w) >= 9})


def assert_nothing_private(text: str, *, token: bool = True) -> None:
    for secret in SENTENCES + WORDS + ([TOKEN] if token else []):
        assert secret not in text, f"{secret!r} leaked: ...{text[max(0, text.find(secret) - 200):text.find(secret) + 200]}..."


@pytest.fixture
def every_log(caplog):
    """caplog at DEBUG on every logger, including those that do not propagate to the root."""
    caplog.set_level(logging.DEBUG)
    attached = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
            if not logger.propagate and caplog.handler not in logger.handlers:
                logger.addHandler(caplog.handler)
                attached.append(logger)
    yield caplog
    for logger in attached:
        logger.removeHandler(caplog.handler)


def logged(caplog, capfd) -> str:
    parts = [caplog.text]
    for r in caplog.records:
        parts += [r.getMessage(), str(r.msg), repr(r.args), r.exc_text or "", repr(r.exc_info)]
    out, err = capfd.readouterr()
    return "\n".join(parts + [out, err])


@pytest.fixture
def admin_app(clean_env, trained_store):
    return create_app({"MODEL_DIR": str(trained_store.root), "ADMIN_TOKEN": TOKEN})


# -- authentication -------------------------------------------------------------------------------
@pytest.mark.parametrize("headers, status, code", [
    pytest.param({}, 401, "unauthorized", id="none"),
    pytest.param({"Authorization": "Bearer"}, 401, "unauthorized", id="scheme-only"),
    pytest.param({"Authorization": "Bearer    "}, 401, "unauthorized", id="blank-token"),
    pytest.param({"Authorization": f"Token {TOKEN}"}, 401, "unauthorized", id="other-scheme"),
    pytest.param({"Authorization": TOKEN}, 401, "unauthorized", id="no-scheme"),
    pytest.param({"X-Admin-Token": TOKEN}, 401, "unauthorized", id="other-header"),
    pytest.param({"Authorization": "Bearer wrong"}, 403, "forbidden", id="wrong"),
    pytest.param({"Authorization": f"Bearer {TOKEN[:-1]}"}, 403, "forbidden", id="prefix"),
    pytest.param({"Authorization": f"Bearer {TOKEN}{TOKEN}"}, 403, "forbidden", id="longer"),
    pytest.param({"Authorization": f"Bearer {TOKEN.upper()}"}, 403, "forbidden", id="case-changed"),
    pytest.param({"Authorization": "Bearer caf\xe9"}, 403, "forbidden", id="latin-1"),
    pytest.param({"Authorization": f"bearer {TOKEN}"}, 200, None, id="scheme-case-insensitive"),
    pytest.param(AUTH, 200, None, id="right"),
])
def test_admin_reload_auth(admin_app, every_log, capfd, headers, status, code):
    resp = admin_app.test_client().post("/v1/admin/reload", headers=headers)
    assert resp.status_code == status
    if code:
        assert resp.get_json()["error"]["code"] == code
        assert TOKEN not in resp.get_data(as_text=True)
    assert_nothing_private(logged(every_log, capfd))


@pytest.mark.parametrize("config_token", [None, ""])
@pytest.mark.parametrize("headers", [{}, AUTH, {"Authorization": "Bearer x"}])
def test_admin_disabled_without_a_token(clean_env, trained_store, config_token, headers):
    app = create_app({"MODEL_DIR": str(trained_store.root), "ADMIN_TOKEN": config_token})
    resp = app.test_client().post("/v1/admin/reload", headers=headers)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "admin_disabled"


def test_admin_token_comparison_uses_compare_digest_in_source():
    """service/api.py compares the token with hmac.compare_digest and never with == / != / in."""
    source = inspect.getsource(service.api.require_admin)
    tree = ast.parse(source)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    assert any(c.func.attr == "compare_digest" and getattr(c.func.value, "id", "") == "hmac" for c in calls)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            names = {getattr(n, "id", None) for n in ast.walk(node)}
            assert not names & {"token", "given"}, f"token compared with an operator: {ast.unparse(node)}"


def test_admin_token_comparison_goes_through_compare_digest(admin_app, monkeypatch):
    """Behaviour: every check (right or wrong token) calls hmac.compare_digest with the token."""
    calls = []
    real = service.api.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(service.api.hmac, "compare_digest", spy)
    client = admin_app.test_client()
    assert client.post("/v1/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.post("/v1/admin/reload", headers=AUTH).status_code == 200
    token_checks = [pair for pair in calls if TOKEN.encode() in pair]  # (the store uses it for digests too)
    assert sorted(token_checks) == sorted([(b"nope", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())])


# -- logs of the service, in process --------------------------------------------------------------
@pytest.mark.parametrize("method, path, kwargs", [
    ("POST", "/v1/predict", {"json": {"text": SENTENCES[0]}}),
    ("POST", "/v1/predict", {"json": {"texts": SENTENCES, "explain": True}}),
    ("POST", "/v1/explain", {"json": {"text": SENTENCES[1]}}),
    ("POST", "/v1/predict", {"json": {"text": SENTENCES[0] * 1000}}),            # 413
    ("POST", "/v1/predict", {"json": {"text": SENTENCES[0], SENTENCES[1]: 1}}),  # unknown key
    ("POST", "/v1/predict", {"data": SENTENCES[2], "content_type": "text/plain"}),
    ("POST", "/v1/predict", {"data": '{"text": "' + SENTENCES[2], "content_type": "application/json"}),
    ("GET", "/v1/" + SENTENCES[0].replace(" ", "/"), {}),
    ("POST", "/v1/admin/reload", {"headers": {"Authorization": f"Bearer {SENTENCES[1]}"}}),
    ("POST", "/v1/admin/reload", {"headers": AUTH}),
])
def test_service_logs_hold_no_text_and_no_token(admin_app, every_log, capfd, method, path, kwargs):
    admin_app.test_client().open(path, method=method, **kwargs)
    text = logged(every_log, capfd)
    assert '"event": "request"' in text  # the access line was captured, so a leak would have been seen
    assert_nothing_private(text)


def test_failed_reload_logs_no_token(clean_env, store_copy, every_log, capfd):
    from model.store import MODEL_FILE

    app = create_app({"MODEL_DIR": str(store_copy.root), "ADMIN_TOKEN": TOKEN})
    (store_copy.versions_dir / store_copy.current_version() / MODEL_FILE).write_bytes(b"junk")
    assert app.test_client().post("/v1/admin/reload", headers=AUTH).status_code == 409
    assert_nothing_private(logged(every_log, capfd))


# -- the command line, as subprocesses ------------------------------------------------------------
def crimetag(*args, stdin: bytes | None = None, env_extra: dict | None = None, timeout: float = 180):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRIMETAG_")}
    env.update({"CRIMETAG_ADMIN_TOKEN": TOKEN, **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "training.cli", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, timeout=timeout)


def distinctive_rows() -> list[dict]:
    return corpus_slice(12) + [{"text": s, "labels": []} for s in SENTENCES]


def test_train_output_holds_no_training_text(tmp_path, capfd):
    data = write_jsonl(tmp_path / "d.jsonl", distinctive_rows())
    res = crimetag("train", "--data", str(data), "--model-dir", str(tmp_path / "store"), "--cv-folds", "2")
    assert res.returncode == 0, res.stderr.decode()
    assert_nothing_private(res.stdout.decode() + res.stderr.decode())
    res = crimetag("predict", "--model-dir", str(tmp_path / "store"),
                   stdin="\n".join(SENTENCES + ["", "x" * 25_000]).encode() + b"\n\xff\xfe\n")
    assert res.returncode == 1  # the empty, too long and non-UTF-8 lines
    assert res.stderr.count(b"crimetag: stdin:") == 3
    assert_nothing_private(res.stderr.decode())


S0, S1, S2 = (json.dumps(s) for s in SENTENCES)
# Row-level problems that name file:line and the problem only; one file of each format.
BAD_JSONL_ROWS = [
    f'{{"text": {S0}, "labels": ["nope"]}}',
    f'{{"text": {S0}, "labels": [}}',
    f'{{"text": {S1}',
    f'{{"text": [{S0}], "labels": []}}',
    f'{{"text": {S0}}}',
    f'[{S0}, {S1}]',
    f'{{"text": {S0[:-1]}\udcff", "labels": []}}',
    f'{{"text": {S1}, "labels": "{SENTENCES[2]}"}}',
]
BAD_CSV = (f'text,labels\n"{SENTENCES[0]}\udcff",\n"{SENTENCES[1]}","[""weapons""]"\n'
           f'"{SENTENCES[2]}",{{"weapons"}}\n"{SENTENCES[0]}"x,weapons\n"{SENTENCES[1]}\n')
# Each of these echoes training text today (see the ids): training/data.py puts the CSV header
# row into "missing column" (`_csv_rows`, the `header has:` message) and the offending label value
# into "unknown label" (`_check_labels`, `{v!r}`), and an unquoted comma moves text into `labels`.
LEAKY_FILES = [
    ("csv-without-header-row", "d.csv", f"{SENTENCES[0]},weapons\n{SENTENCES[1]},\n"),
    ("csv-unquoted-comma-in-text", "d.csv", f"text,labels\n{SENTENCES[0].replace(' kept', ', kept')},weapons\n"),
    ("jsonl-sentence-as-label", "d.jsonl", f'{{"text": "see labels", "labels": [{S2}]}}\n'),
]


def write_bad(path: Path, content: str, *, good_rows: bool) -> Path:
    head = "".join(json.dumps(r) + "\n" for r in corpus_slice(12)) if good_rows else ""
    path.write_bytes((head + content).encode("utf-8", "surrogateescape"))
    return path


def train_output(tmp_path, *files: Path, skip_invalid: bool = False) -> tuple[int, str]:
    args = ["train", "--model-dir", str(tmp_path / "store"), "--cv-folds", "2"]
    for f in files:
        args += ["--data", str(f)]
    res = crimetag(*args, *(["--skip-invalid"] if skip_invalid else []))
    return res.returncode, res.stdout.decode() + res.stderr.decode(errors="replace")


def test_data_errors_name_file_and_line_not_the_text(tmp_path):
    """`crimetag train` on files with bad rows: a file:line message per row, none holding text."""
    jsonl = write_bad(tmp_path / "d.jsonl", "\n".join(BAD_JSONL_ROWS) + "\n", good_rows=False)
    csv = write_bad(tmp_path / "d.csv", BAD_CSV, good_rows=False)
    code, output = train_output(tmp_path, jsonl, csv)
    assert code == 1 and "Traceback" not in output
    for n in range(1, len(BAD_JSONL_ROWS) + 1):
        assert f"{jsonl}:{n}: " in output
    assert all(f"{csv}:{n}: " in output for n in (2, 3, 4, 6))
    assert_nothing_private(output)


def test_skip_invalid_report_holds_no_text(tmp_path):
    jsonl = write_bad(tmp_path / "d.jsonl", "\n".join(BAD_JSONL_ROWS) + "\n", good_rows=True)
    code, output = train_output(tmp_path, jsonl, skip_invalid=True)
    assert code == 0 and f"skipped {len(BAD_JSONL_ROWS)} invalid row(s)" in output, output
    assert_nothing_private(output)


@pytest.mark.parametrize("name, content", [pytest.param(*c[1:], id=c[0]) for c in LEAKY_FILES])
def test_data_error_does_not_echo_text(tmp_path, name, content):
    path = write_bad(tmp_path / name, content, good_rows=False)
    code, output = train_output(tmp_path, path)
    assert code == 1 and f"{path}:" in output and "Traceback" not in output
    assert_nothing_private(output)
