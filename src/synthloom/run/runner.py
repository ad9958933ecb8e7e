"""Run a pipeline into a run directory: models + cache, executor, outputs, stats, dataset card.

    runs/<name>/recipe.yaml   the resolved recipe          run.json    fingerprint, seed, input hash
    runs/<name>/steps/ ...    shard checkpoints            rejected/   rejected rows with reasons
    runs/<name>/cache.sqlite  request cache                stats.json  funnel, tokens, cost, timings
    runs/<name>/data/         final dataset (JSONL/Parquet) README.md  dataset card
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from synthloom import __version__
from synthloom.errors import BadInputError, ConfigError
from synthloom.io import remove_stale_temps, write_jsonl, write_parquet, write_text_atomic
from synthloom.pipeline.local import ExecutionResult, ExecutorConfig, LocalExecutor
from synthloom.pipeline.pipeline import Pipeline, Source, dump_yaml
from synthloom.records import Row, content_id
from synthloom.verdicts import tally

FORMATS = ("jsonl", "parquet")


@dataclass
class RunOptions:
    out: Path | None = None
    seed: int = 0
    formats: tuple[str, ...] = FORMATS
    overwrite: bool = False
    models: dict[str, str] = field(default_factory=dict)  # role -> spec overrides
    cache_path: Path | None = None
    shards_in_flight: int = 4
    limit: int | None = None
    input_path: Path | None = None
    price_file: Path | None = None
    model_options: dict[str, Any] = field(default_factory=dict)  # defaults for every backend
    max_tokens_total: int | None = None  # hard budget on paid (non-cached) tokens, all models
    max_cost: float | None = None  # hard budget in USD (needs a price table)
    report: bool = True  # write report.html at the end (charts take a few seconds)
    shard: tuple[int, int] | None = None  # (index, count): only the input rows hashed to this shard


@dataclass
class RunResult:
    run_dir: Path
    complete: bool
    stats: dict[str, Any]
    data_files: list[Path]
    rows: list[Row]
    stop_reason: str | None = None


def load_prices(opts: RunOptions) -> Any:
    if not opts.price_file:
        return None
    from synthloom.llm.usage import PriceTable

    return PriceTable.load(opts.price_file)


def budget_check(opts: RunOptions, prices: Any) -> Callable[[Any], str | None]:
    """A stop condition over the run's paid tokens: the reason once a budget is reached."""
    if opts.max_cost is not None and prices is None:
        raise ConfigError("--max-cost needs a price table: pass --prices FILE")

    def check(live: Any) -> str | None:
        if opts.max_tokens_total is not None and live.total >= opts.max_tokens_total:
            return f"token budget reached: {live.total} tokens >= --max-tokens-total {opts.max_tokens_total}"
        if opts.max_cost is not None:
            cost = live.cost(prices)
            if cost >= opts.max_cost:
                return f"cost budget reached: ${cost:.4f} >= --max-cost {opts.max_cost}"
        return None

    return check


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _prepare_run_dir(pipeline: Pipeline, opts: RunOptions) -> tuple[Path, dict[str, Any]]:
    run_dir = Path(opts.out or Path("runs") / pipeline.name)
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInputError(f"--out {run_dir} is a file; a run directory is needed (choose another path)")
    source = pipeline.source
    input_hash = None
    if source is not None and source.path is not None:
        p = Path(source.path)
        if not p.exists():
            raise BadInputError(f"input file {p} does not exist")
        input_hash = file_sha256(p) if p.is_file() else None
    identity = {"fingerprint": pipeline.fingerprint(), "seed": opts.seed, "input_sha256": input_hash,
                "limit": opts.limit, "shard": list(opts.shard) if opts.shard else None}
    run_json = run_dir / "run.json"
    if run_json.exists():
        previous = json.loads(run_json.read_text())
        same = all(previous.get(k) == v for k, v in identity.items())
        if not same and not opts.overwrite:
            changed = ", ".join(k for k, v in identity.items() if previous.get(k) != v)
            raise ConfigError(f"{run_dir} holds a run with a different {changed}; "
                              "use --overwrite to replace it or --out for a new run directory")
        if not same:
            for sub in ("steps", "rejected", "data"):
                shutil.rmtree(run_dir / sub, ignore_errors=True)
            previous = {}
        created_at = previous.get("created_at") or _now()
    else:
        previous, created_at = {}, _now()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInputError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
    # a kill during an atomic write leaves its temp file behind; this run owns the directory now
    remove_stale_temps([run_dir, run_dir / "data", *(run_dir / k for k in ("steps", "rejected")),
                        *run_dir.glob("steps/*/"), *run_dir.glob("rejected/*/")])
    # the run's name in the usage ledger: answers this run paid for, whichever process paid
    run_id = previous.get("run_id") or uuid.uuid4().hex
    info = {**identity, "created_at": created_at, "recipe": pipeline.name, "version": __version__,
            "run_id": run_id}
    write_text_atomic(run_json, json.dumps(info, indent=2))
    write_text_atomic(run_dir / "recipe.yaml", dump_yaml(pipeline.config()))
    return run_dir, info


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def resolve_model_specs(pipeline: Pipeline, opts: RunOptions) -> dict[str, str]:
    """role -> spec for the roles the pipeline's steps use (recipe defaults + --model overrides)."""
    specs = {**pipeline.models, **opts.models}
    unknown = set(opts.models) - set(pipeline.models) - pipeline.model_roles()
    if unknown:
        roles = ", ".join(sorted(pipeline.models)) or "none"
        raise ConfigError(f"recipe {pipeline.name!r} has no model role {sorted(unknown)[0]!r} (its roles: {roles})")
    used = pipeline.model_roles()
    missing = used - set(specs)
    if missing:
        raise ConfigError(f"recipe {pipeline.name!r} uses model role {sorted(missing)[0]!r} but names no model "
                          f"for it; pass --model {sorted(missing)[0]}=SPEC")
    return {role: spec for role, spec in specs.items() if role in used}


def build_models(pipeline: Pipeline, opts: RunOptions, cache_path: Path,
                 run_id: str | None = None) -> tuple[dict[str, Any], list[Any]]:
    """One cache-wrapped Model per role; roles with the same spec share one backend instance.
    With `run_id`, every answer is booked to the run in the cache's usage ledger."""
    from synthloom.llm.models import build_models as build

    return build(resolve_model_specs(pipeline, opts), cache_path, model_options=opts.model_options, run_id=run_id,
                 prices=load_prices(opts))


def prepare_run(pipeline: Pipeline, opts: RunOptions) -> tuple[Path, dict[str, Any]]:
    """Load and check the input, prepare the run directory; the pipeline's source becomes the rows.

    Shared by every executor (local, Ray) so they resume each other's run directories.
    """
    if opts.input_path is not None:
        pipeline.source = Source(path=str(opts.input_path))
    if pipeline.source is None:
        raise BadInputError(f"recipe {pipeline.name!r} needs input rows: pass --input FILE")
    if opts.limit is not None and opts.limit < 1:
        raise BadInputError(f"--limit must be a number of input rows >= 1, not {opts.limit}")
    probe = pipeline.source.load()
    if opts.limit is not None:
        probe = probe[: opts.limit]
    if not probe:
        raise BadInputError("no input rows left after --limit")
    if opts.shard is not None:
        probe = [row for row in probe if in_shard(row, *opts.shard)]
        if not probe:
            raise BadInputError(f"shard {opts.shard[0]}/{opts.shard[1]} holds no input rows; use fewer shards")
    pipeline.validate(set().union(*(r.keys() for r in probe[:100])))
    run_dir, info = _prepare_run_dir(pipeline, opts)
    pipeline.source = Source(rows=probe, description=pipeline.source.description)
    return run_dir, info


def in_shard(row: Row, index: int, count: int) -> bool:
    """Whether an input row belongs to shard `index` of `count`: a hash of its content id, so every
    row lands in exactly one shard, the same one on every machine and every run."""
    return int(content_id(row), 16) % count == index


async def run_pipeline_async(pipeline: Pipeline, opts: RunOptions | None = None,
                             on_event: Callable[[str, dict[str, Any]], None] | None = None,
                             models: dict[str, Any] | None = None,
                             executor_hook: Callable[[LocalExecutor], None] | None = None) -> RunResult:
    """Run `pipeline`; pass `models` to use already-built Model objects instead of specs."""
    opts = opts or RunOptions()
    run_dir, info = prepare_run(pipeline, opts)
    owned: list[Any] = []
    if models is None:
        models, owned = build_models(pipeline, opts, Path(opts.cache_path or run_dir / "cache.sqlite"),
                                     info["run_id"])
    check = budget_check(opts, load_prices(opts))
    executor = LocalExecutor(pipeline, models, ExecutorConfig(run_dir=run_dir, seed=opts.seed,
                             shards_in_flight=opts.shards_in_flight, created_at=info["created_at"]),
                             on_event=on_event, should_stop=lambda: check(executor.live))
    if executor_hook:
        executor_hook(executor)
    try:
        result = await executor.run()
    finally:
        from synthloom.llm.models import close_models

        await close_models(owned)
    return finish_run(pipeline, opts, run_dir, info, result, models, executor.stop_reason)


def finish_run(pipeline: Pipeline, opts: RunOptions, run_dir: Path, info: dict[str, Any],
               result: ExecutionResult, models: dict[str, Any], stop_reason: str | None = None) -> RunResult:
    """Write data/, stats.json and the dataset card from what the executor finished."""
    from synthloom.report.card import write_card

    prices = load_prices(opts)
    if result.complete:
        fail_if_a_step_was_all_rejected(pipeline, run_dir, result)
    label = provenance_label(pipeline, models)
    stamp_labels(result.rows, label)
    data_files: list[Path] = []
    if "jsonl" in opts.formats:
        p = run_dir / "data" / "train.jsonl"
        write_jsonl(result.rows, p)
        data_files.append(p)
    if "parquet" in opts.formats:
        p = run_dir / "data" / "train.parquet"
        write_parquet(result.rows, p, label=label, image_columns=pipeline.options.get("image_columns"),
                      base_dir=run_dir)
        data_files.append(p)
    unverified = export_unverified(pipeline, opts, run_dir, label) if pipeline.keep_unverified else None
    cache_stats = {}
    for role, m in models.items():
        s = getattr(m, "stats", None)
        if s is not None and hasattr(s, "to_dict"):
            cache_stats[m.identity] = s.to_dict()
    stats = {
        "recipe": pipeline.name,
        "complete": result.complete,
        "stop_reason": stop_reason,
        "rows": len(result.rows),
        "seed": opts.seed,
        "created_at": info["created_at"],
        "finished_at": _now(),
        "wall_seconds": _wall_seconds(run_dir, result),
        "shards": {"finished": result.finished_shards, "total": result.total_shards},
        "funnel": result.funnel.to_dict(),
        "usage": result.funnel.usage_dict(prices),
        "cache": cache_stats,
        "models": {role: m.identity for role, m in models.items()},
        "transport": transport_dict(models),
        "ledger": ledger_dict(models, info.get("run_id")),
        "label": label,
        "required_checks": pipeline.required_checks,
        "advisory_checks": pipeline.advisory_checks,
        "train_verdicts": tally(result.rows),
        "unverified_rows": unverified,
    }
    write_text_atomic(run_dir / "stats.json", json.dumps(stats, indent=2, ensure_ascii=False))
    write_card(run_dir, pipeline, stats)
    if opts.report:
        write_report_safely(run_dir)
    return RunResult(run_dir=run_dir, complete=result.complete, stats=stats, data_files=data_files,
                     rows=result.rows, stop_reason=stop_reason)


def export_unverified(pipeline: Pipeline, opts: RunOptions, run_dir: Path, label: dict[str, Any]) -> int:
    """Write the rows the verdict gate stopped to data/unverified.* (a split of its own, never train)."""
    from synthloom.pipeline.checkpoint import Checkpoints

    from synthloom.pipeline.gate import is_gate

    index, gate = next((i, s) for i, s in enumerate(pipeline.steps, start=1) if is_gate(s))
    rows = []
    for rec in Checkpoints(run_dir).read_rejected(index, gate.name):
        rec["row"].setdefault("_meta", {})["unverified_reason"] = rec.get("reason")
        rows.append(rec["row"])
    stamp_labels(rows, label)
    if "jsonl" in opts.formats:
        write_jsonl(rows, run_dir / "data" / "unverified.jsonl")
    if "parquet" in opts.formats:
        write_parquet(rows, run_dir / "data" / "unverified.parquet", label=label,
                      image_columns=pipeline.options.get("image_columns"), base_dir=run_dir)
    return len(rows)


# A step whose every row was refused by the model server for one reason (a wrong parameter, a prompt
# template that overflows the context) has not produced an "empty dataset": it has failed.
_REQUEST_REJECTIONS = ("invalid_request",)


def fail_if_a_step_was_all_rejected(pipeline: Pipeline, run_dir: Path, result: ExecutionResult) -> None:
    """Raise a run error, and forget that step's parts so a re-run after fixing the spec sends its
    requests again (no --overwrite), when every row into a step was refused with the same reason."""
    from synthloom.llm.base import ModelError
    from synthloom.pipeline.checkpoint import Checkpoints

    ckpt = Checkpoints(run_dir)
    for index, entry in enumerate(result.funnel.to_dict()[1:], start=1):
        reasons = entry["rejected"]
        if entry["rows_in"] == 0 or entry["rows_out"] or len(reasons) != 1 or next(iter(reasons)) not in _REQUEST_REJECTIONS:
            continue
        details = [rec.get("detail") or "" for rec in ckpt.read_rejected(index, entry["step"])]
        example = next((d for d in details if d), "no detail")
        for later in range(index, len(pipeline.steps) + 1):
            for kind in ("steps", "rejected"):
                shutil.rmtree(ckpt.step_dir(later, pipeline.steps[later - 1].name, kind), ignore_errors=True)
        raise ModelError(f"step {entry['step']!r}: the model server refused all {entry['rows_in']} requests "
                         f"({next(iter(reasons))}; {len(set(details))} distinct message(s)), e.g. {example[:300]}; "
                         "fix the recipe or model spec and run the same command again")


def _wall_seconds(run_dir: Path, result: ExecutionResult) -> float:
    """This session's time, or the original run's when this session only re-read finished parts."""
    if result.new_parts == 0:
        try:
            return float(json.loads((run_dir / "stats.json").read_text())["wall_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return round(result.seconds, 3)


def _unwrap(model: Any) -> list[Any]:
    chain = []
    while model is not None and all(model is not c for c in chain):
        chain.append(model)
        model = getattr(model, "inner", None)
    return chain


def transport_dict(models: dict[str, Any]) -> dict[str, Any]:
    """Per HTTP client: sends, retries, status counts, timeouts and time lost (stats.json)."""
    out: dict[str, Any] = {}
    for m in models.values():
        for layer in _unwrap(m):
            s = getattr(layer, "stats", None)
            if hasattr(s, "statuses") and hasattr(s, "to_dict"):
                out[layer.identity] = s.to_dict()
    return out


def ledger_dict(models: dict[str, Any], run_id: str | None) -> dict[str, Any]:
    """What the cache's usage ledger says this run paid for, per model, across all its sessions."""
    caches = {id(c): c for m in models.values() for c in [getattr(m, "cache", None)] if hasattr(c, "ledger")}
    if run_id is None or not caches:
        return {}
    out: dict[str, Any] = {}
    for cache in caches.values():
        out.update(cache.ledger(run_id))
    return out


def write_report_safely(run_dir: Path) -> None:
    """The HTML report is a convenience: a failure there must never fail a finished run."""
    import logging

    from synthloom.errors import SynthloomError

    try:
        from synthloom.report.html import write_report

        write_report(run_dir)
    except (SynthloomError, ImportError, OSError, ValueError) as e:
        logging.getLogger("synthloom").warning("report.html not written: %s", e)


def provenance_label(pipeline: Pipeline, models: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable "this is synthetic" label carried by every exported file."""
    watermarks = {}
    for role, m in models.items():
        scheme = getattr(getattr(m, "inner", m), "watermark", None)
        if scheme is not None:
            watermarks[role] = scheme.describe()  # key id and public parameters, never the key
    key_ids = sorted({w.get("key_id") for w in watermarks.values() if w.get("key_id")})
    return {"synthetic": True, "generator": "synthloom", "version": __version__, "recipe": pipeline.name,
            "models": {role: getattr(m, "identity", str(m)) for role, m in models.items()},
            "watermark_key_id": ",".join(key_ids) or pipeline.options.get("watermark_key_id"),
            "watermarks": watermarks}


def stamp_labels(rows: list[Row], label: dict[str, Any]) -> None:
    """Every exported row names its generator and watermark key id next to its provenance."""
    for row in rows:
        meta = row.setdefault("_meta", {})
        meta.setdefault("synthetic", False)
        meta["generator"] = label["generator"]
        meta["watermark_key_id"] = label.get("watermark_key_id")


def run_pipeline(pipeline: Pipeline, **kwargs: Any) -> RunResult:
    """Synchronous convenience wrapper for scripts: run_pipeline(p, out=Path('runs/x'), seed=1)."""
    models = kwargs.pop("models_objects", None)
    return asyncio.run(run_pipeline_async(pipeline, RunOptions(**kwargs), models=models))


__all__ = ["RunOptions", "RunResult", "build_models", "finish_run", "prepare_run", "resolve_model_specs",
           "run_pipeline", "run_pipeline_async"]
