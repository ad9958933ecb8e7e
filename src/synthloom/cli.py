"""The `synthloom` command line. Exit codes: 0 ok, 1 run failed, 2 bad input, 3 budget reached, 130 interrupted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from synthloom.errors import BadInputError, SynthloomError
from synthloom.options import parse_pairs

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Generate, verify, filter and evaluate synthetic data for language models.")
console = Console()
err_console = Console(stderr=True)


def print_error(message: str, label: str = "error:") -> None:
    """One line on stderr. A Text, not markup: "[c1]" stays and "openai:x:" never becomes an emoji."""
    err_console.print(Text.assemble((label, "bold red"), " ", message), highlight=False, soft_wrap=True)


def fail(message: str, code: int) -> None:
    print_error(message)
    raise typer.Exit(code)


def split_list_options(recipe: str, options: dict[str, Any]) -> dict[str, Any]:
    """`-o streams=ansaug,fobar`: a plain string given to a list option of a built-in recipe is a
    comma-separated list (JSON such as ["ansaug"] still works)."""
    import types
    import typing

    from synthloom.recipes.registry import BUILTIN_RECIPES, recipe_info

    if recipe not in BUILTIN_RECIPES:
        return options
    def is_list(annotation: Any) -> bool:  # list[...], or Optional[list[...]]
        kinds = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
            else (annotation,)
        return any(typing.get_origin(k) in (list, tuple, set) or k in (list, tuple, set) for k in kinds)

    fields = recipe_info(recipe).module.Options.model_fields
    out = dict(options)
    for key, value in options.items():
        field = fields.get(key)
        if field is not None and isinstance(value, str) and is_list(field.annotation):
            out[key] = [part.strip() for part in value.split(",") if part.strip()]
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' as (I, N) with 0 <= I < N, or a one-line BadInputError."""
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise BadInputError(f"--shard must look like I/N (e.g. 0/8), not {text!r}") from None
    if not 0 <= i < n:
        raise BadInputError(f"--shard {text}: need 0 <= I < N")
    return i, n


@app.command()
def run(
    recipe: str = typer.Argument(..., help="built-in recipe name (see `synthloom recipes`) or a recipe .yaml"),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="input rows (JSONL, Parquet, CSV, HF dir)"),
    model: list[str] = typer.Option([], "--model", "-m", help="ROLE=SPEC, e.g. generator=embedded or "
                                    "generator=openai:http://host:8000/v1#name"),
    option: list[str] = typer.Option([], "--option", "-o", help="recipe option KEY=VALUE"),
    limit: Optional[int] = typer.Option(None, help="use only the first N input rows"),
    seed: int = typer.Option(0, help="run seed: same inputs + seed + model => same dataset"),
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/<recipe>)"),
    format: str = typer.Option("both", help="jsonl, parquet or both"),
    resume: bool = typer.Option(True, help="continue a run in the same directory (the default)"),
    overwrite: bool = typer.Option(False, help="replace a run directory made by a different recipe/config"),
    cache: Optional[Path] = typer.Option(None, help="request cache path (share it across runs)"),
    prices: Optional[Path] = typer.Option(None, help="YAML/JSON price table for cost accounting"),
    shards_in_flight: int = typer.Option(4, help="shards processed concurrently"),
    max_tokens_total: Optional[int] = typer.Option(None, help="stop (resumably) once this many tokens are paid"),
    max_cost: Optional[float] = typer.Option(None, help="stop (resumably) once this many USD are spent (needs --prices)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="estimate requests, tokens, cost and time; write no dataset"),
    report: bool = typer.Option(True, help="write report.html at the end of the run"),
    executor: str = typer.Option("local", help="local or ray"),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to join (auto, HOST:PORT, ray://...); "
                                              "default: start a local one"),
    ray_workers: int = typer.Option(2, help="model-step actors on Ray"),
    shard: Optional[str] = typer.Option(None, help="I/N: run only shard I (0-based) of N, e.g. one Slurm array "
                                        "task; combine the shards' run directories with `synthloom merge`"),
    reference: Optional[Path] = typer.Option(None, help="real data the output stands in for: end the run with the "
                                             "trust audit's fidelity checks against it (docs/audit.md)"),
    private_seeds: Optional[Path] = typer.Option(None, "--private-seeds", help="private seed records: end the run "
                                                 "with the audit's leakage checks against them"),
    audit_column: str = typer.Option("output", help="column of the output the audit reads (with --reference or "
                                     "--private-seeds)"),
    fail_on_audit: bool = typer.Option(False, help="exit 4 when the audit fails (the dataset is still written)"),
) -> None:
    """Run a recipe and write the dataset, its card and stats into a run directory."""
    from synthloom.run.runner import RunOptions, run_pipeline_async
    from synthloom.progress import RunProgress
    from synthloom.recipes.registry import load_recipe

    formats = {"both": ("jsonl", "parquet"), "jsonl": ("jsonl",), "parquet": ("parquet",)}.get(format)
    if formats is None:
        raise BadInputError(f"--format must be jsonl, parquet or both, not {format!r}")
    if input is not None and not input.exists():
        raise BadInputError(f"input file {input} does not exist")
    pipeline = load_recipe(recipe, split_list_options(recipe, parse_pairs(option, "--option")))
    for path in (reference, private_seeds):
        if path is not None and not path.exists():
            raise BadInputError(f"audit file {path} does not exist")
    if reference is not None or private_seeds is not None:
        from synthloom.audit.steps import TrustAuditStep

        # after the verdict gate: the audit sees exactly the rows that reach train
        pipeline.steps.append(TrustAuditStep(name="trust_audit", column=audit_column,
                                             reference=str(reference) if reference else None,
                                             private_seeds=str(private_seeds) if private_seeds else None))
    if out is not None and not resume and (out / "run.json").exists() and not overwrite:
        raise BadInputError(f"{out} already holds a run; drop --no-resume to continue it or pass --overwrite")
    opts = RunOptions(out=out, seed=seed, formats=formats, overwrite=overwrite or not resume,
                      models={k: str(v) for k, v in parse_pairs(model, "--model").items()},
                      cache_path=cache, limit=limit, input_path=input, price_file=prices,
                      shards_in_flight=shards_in_flight, max_tokens_total=max_tokens_total, max_cost=max_cost,
                      report=report, shard=parse_shard(shard) if shard is not None else None)
    if dry_run:
        from synthloom.run.estimate import estimate_run

        _print_estimate(asyncio.run(estimate_run(pipeline, opts)))
        return
    from synthloom.run.runner import load_prices

    progress = RunProgress(["source"] + [s.name for s in pipeline.steps], err_console, prices=load_prices(opts))

    def hook(executor: Any) -> None:
        loop = asyncio.get_running_loop()
        presses = {"n": 0}

        def on_sigint() -> None:
            presses["n"] += 1
            if presses["n"] == 1:
                executor.request_stop("interrupted (Ctrl-C); press again to stop at once")
            else:
                for task in asyncio.all_tasks(loop):
                    task.cancel()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, lambda: executor.request_stop("terminated"))

    if executor not in ("local", "ray"):
        raise BadInputError(f"--executor must be local or ray, not {executor!r}")
    with progress:
        if executor == "ray":
            from synthloom.run.ray_executor import RayOptions, run_pipeline_ray

            result = asyncio.run(run_pipeline_ray(pipeline, opts, RayOptions(address=ray_address,
                                                                             model_workers=ray_workers),
                                                  on_event=progress.on_event, executor_hook=hook))
        else:
            result = asyncio.run(run_pipeline_async(pipeline, opts, on_event=progress.on_event,
                                                    executor_hook=hook))
    stats = result.stats
    _print_funnel(stats)
    files = ", ".join(str(p) for p in result.data_files)
    console.print(f"dataset: {files}\ncard:    {result.run_dir / 'README.md'}\nstats:   {result.run_dir / 'stats.json'}",
                  highlight=False)
    if (result.run_dir / "report.html").exists():
        console.print(f"report:  {result.run_dir / 'report.html'}", highlight=False)
    if not result.complete:
        why = result.stop_reason or "stopped"
        budget = why.startswith(("token budget", "cost budget"))
        hint = "raise the budget and run the same command to resume" if budget else "run the same command again to resume"
        fail(f"{why}; {stats['shards']['finished']}/{stats['shards']['total']} shards finished, the rows so far "
             f"are written — {hint}", 3 if budget else 130)
    audit_path = result.run_dir / "audit.json"
    if (reference is not None or private_seeds is not None) and audit_path.exists():
        audit = json.loads(audit_path.read_text())
        verdict = "passed" if audit.get("passed") else "FAILED: " + ", ".join(audit.get("failed") or [])
        console.print(f"audit:   {audit_path} ({verdict})", highlight=False)
        if fail_on_audit and not audit.get("passed"):
            fail(f"trust audit failed ({', '.join(audit.get('failed') or [])}); the dataset is written", 4)


def _print_estimate(est: dict[str, Any]) -> None:
    t = Table(title=f"dry run of {est['recipe']}: {est['input_rows']} input rows, calibrated on "
                    f"{est['calibration_rows']} ({est['calibration_seconds']:.1f}s)")
    for col in ("model", "requests", "prompt tokens", "completion tokens", "cost (USD)"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for model, m in est["models"].items():
        t.add_row(model, str(m["requests"]), str(m["prompt_tokens"]), str(m["completion_tokens"]),
                  f"{m['cost_usd']:.4f}")
    console.print(t)
    console.print(f"estimated: {est['estimated_tokens']} tokens, ${est['estimated_cost_usd']:.4f}, "
                  f"~{est['estimated_seconds']:.0f}s, ~{est['estimated_output_rows']} output rows", highlight=False)
    if est.get("calibration_untimed_answers"):
        console.print(f"note: {est['calibration_untimed_answers']} cached answers have no recorded time "
                      "(cached before times were kept): the time estimate is low", highlight=False)


def _print_funnel(stats: dict[str, Any]) -> None:
    t = Table(title=f"{stats['recipe']}: {stats['rows']} rows in {stats['wall_seconds']:.1f}s")
    for col in ("step", "in", "out", "rejected", "top reasons"):
        t.add_column(col, justify="left" if col in ("step", "top reasons") else "right")
    for s in stats["funnel"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["rejected"].items(), key=lambda kv: -kv[1])[:3])
        t.add_row(s["step"], str(s["rows_in"]), str(s["rows_out"]), str(s["rejected_total"]), reasons)
    console.print(t)
    for model, u in stats.get("usage", {}).items():
        console.print(f"{model}: {u.get('prompt_tokens', 0)} prompt + {u.get('completion_tokens', 0)} completion "
                      f"tokens, {u.get('requests', 0)} requests ({u.get('cached_requests', 0)} cached), "
                      f"${u.get('cost_usd', 0.0):.4f}", highlight=False)
    for model, t in stats.get("transport", {}).items():  # why a run was slow: retries and what caused them
        if t.get("retries") or t.get("statuses"):
            codes = ", ".join(f"{k} x{v}" for k, v in sorted(t.get("statuses", {}).items()))
            console.print(f"{model}: {t.get('attempts', 0)} sends, {t.get('retries', 0)} retries ({codes}), "
                          f"{t.get('time_lost_s', 0.0):.1f}s lost to failed attempts and backoff (summed over "
                          "requests)", highlight=False, soft_wrap=True)


@app.command()
def recipes() -> None:
    """List the built-in recipes with their options."""
    from synthloom.recipes.registry import list_recipes

    for info in list_recipes():
        t = Table(title=f"[bold]{info.name}[/bold] — {info.description}", title_justify="left",
                  show_edge=False, expand=False)
        t.add_column("option (-o KEY=VALUE)")
        t.add_column("type")
        t.add_column("default")
        t.add_column("meaning")
        for opt, (typ, default, help_) in info.options.items():
            t.add_row(opt, typ, repr(default), help_)
        console.print(t)
        console.print()


@app.command()
def merge(
    runs: list[Path] = typer.Argument(..., help="the run directories of every shard (synthloom run --shard I/N)"),
    out: Path = typer.Option(..., "--out", help="directory for the merged dataset"),
    overwrite: bool = typer.Option(False, help="replace --out even if it is not a merged run"),
    dedup: Optional[str] = typer.Option(None, help="exact | minhash: also drop duplicates across shards"),
    dedup_column: str = typer.Option("text", help="the column --dedup compares"),
) -> None:
    """Merge the shards of a sharded run into one dataset (data, rejected rows, stats, card, report)."""
    from synthloom.run.merge import merge_runs

    stats = merge_runs(runs, out, overwrite=overwrite, dedup=dedup, dedup_column=dedup_column)
    _print_funnel(stats)
    console.print(f"merged {stats['shards']['total']} shards, {stats['rows']} rows -> {out / 'data'}")


@app.command()
def inspect(run_dir: Path = typer.Argument(..., help="a run directory"),
            rows: int = typer.Option(3, help="sample rows to show")) -> None:
    """Show a run's funnel, tokens and a few sample rows."""
    stats_path = run_dir / "stats.json"
    if not stats_path.exists():
        raise BadInputError(f"{run_dir} is not a finished run directory (no stats.json)")
    stats = json.loads(stats_path.read_text())
    _print_funnel(stats)
    data = run_dir / "data" / "train.jsonl"
    if data.exists() and rows > 0:
        with data.open(encoding="utf-8") as f:
            for _, line in zip(range(rows), f):
                console.print_json(line)


@app.command()
def provenance(file: Path = typer.Argument(..., help="a JSONL or Parquet file written by synthloom"),
               rows: int = typer.Option(5, help="rows to list"),
               verify: bool = typer.Option(False, "--verify", help="check the rows' Ed25519 signatures"),
               public_key: Optional[str] = typer.Option(None, help="public key (base64 or file) for --verify"),
               sign: Optional[Path] = typer.Option(None, "--sign", help="sign every row with this Ed25519 key (PEM)"),
               keygen: Optional[Path] = typer.Option(None, "--keygen", help="write a new Ed25519 key here first")) -> None:
    """Show where each row came from; fails loudly if the synthetic-data labels were stripped,
    forged or (with --verify) changed since they were signed."""
    from synthloom.provenance import generate_signing_key, inspect_provenance, sign_file, verify_file

    if keygen is not None:
        console.print(f"new signing key {keygen} (key id {generate_signing_key(keygen)})", highlight=False)
    if sign is not None:
        block = sign_file(file, sign)
        console.print(f"signed {block['rows']} rows with key {block['key_id']}; public key {block['public_key']} "
                      f"recorded on {block['card'] or 'no dataset card (keep it yourself)'}", highlight=False)
    if verify:
        checked = verify_file(file, public_key)
        console.print(f"signatures valid: {checked['rows']} rows, key {checked['key_id']}"
                      + ("" if checked["manifest_ok"] is None else ", no row removed, added or reordered"),
                      highlight=False)
    info = inspect_provenance(file)
    console.print(f"{info['file']}: {info['rows']} rows, {info['synthetic_rows']} model-generated; "
                  f"recipes {info['recipes']}; models {info['models']}", highlight=False)
    if info["file_label"]:
        console.print(f"file label: {json.dumps(info['file_label'])}", highlight=False)
    for origin in info["origins"][:rows]:
        console.print(json.dumps(origin), highlight=False)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run directory")) -> None:
    """Write the run's self-contained report.html (funnel, tokens, lengths, diversity, samples)."""
    from synthloom.report.html import write_report

    console.print(f"report: {write_report(run_dir)}", highlight=False)


@app.command()
def view(run_dir: Path = typer.Argument(..., help="a run directory"),
         host: str = typer.Option("127.0.0.1", help="bind address (loopback only)"),
         port: int = typer.Option(8765, help="port"),
         compare: Optional[Path] = typer.Option(None, help="a second run directory to compare funnels with"),
         reviewer: str = typer.Option("reviewer", help="your name for expert-review decisions")) -> None:
    """Browse, search and review a run's rows in a local web page."""
    from synthloom.viewer import serve_viewer

    console.print(f"viewer on http://{host}:{port}/ (Ctrl-C to stop)", highlight=False)
    serve_viewer(run_dir, host=host, port=port, compare=compare, reviewer=reviewer)


@app.command("review-export")
def review_export(run_dir: Path = typer.Argument(..., help="a reviewed run directory"),
                  out: Path = typer.Argument(..., help="output JSONL"),
                  mode: str = typer.Option("filter", help="filter (accepted rows) or gold (evaluation set)")) -> None:
    """Export expert-reviewed rows as a filtered dataset or a gold evaluation set."""
    from synthloom.viewer import export_reviewed

    if mode not in ("filter", "gold"):
        raise BadInputError(f"--mode must be filter or gold, not {mode!r}")
    n = export_reviewed(run_dir, out, mode=mode)  # type: ignore[arg-type]
    console.print(f"wrote {n} rows to {out}", highlight=False)


@app.command()
def serve(model: str = typer.Option("embedded", help="model spec to serve"),
          host: str = typer.Option("127.0.0.1", help="bind address (loopback by default)"),
          port: int = typer.Option(8000, help="port"),
          max_body_mb: float = typer.Option(4.0, help="largest request body in MiB (larger: 413)"),
          max_queue: int = typer.Option(256, help="requests waiting or running at once (more: 503 + Retry-After)")) -> None:
    """Serve a model (the embedded one by default) as an OpenAI-compatible HTTP API."""
    from synthloom.llm.server import limits_from
    from synthloom.llm.server import serve as serve_model
    from synthloom.llm.spec import load_model

    limits = limits_from(max_body_mb, max_queue)
    serve_model(load_model(model), host=host, port=port, limits=limits)


def _register_optional_commands() -> None:
    """Command groups that live with their subsystems."""
    import importlib

    for module in ("synthloom.quality.commands", "synthloom.eval.commands", "synthloom.watermark.commands",
                   "synthloom.selfimprove.commands", "synthloom.audit.commands"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        mod.register(app)


_register_optional_commands()


def main() -> None:
    try:
        rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except SynthloomError as e:
        print_error(str(e))
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("[yellow]aborted[/yellow]")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - a bug: still one line unless debugging
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(2)
        if os.environ.get("SYNTHLOOM_DEBUG"):
            raise
        print_error(f"{type(e).__name__}: {e} (set SYNTHLOOM_DEBUG=1 for a traceback)", "internal error:")
        sys.exit(1)


if __name__ == "__main__":
    main()
