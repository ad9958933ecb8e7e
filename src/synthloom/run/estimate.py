"""`synthloom run --dry-run`: estimate requests, tokens, cost and time before paying for a run.

The recipe runs on a small calibration sample of the input in a scratch directory, sharing the
real run's request cache, so the calibration calls are not paid again by the real run. Per-row
figures are then scaled to the full input. Global steps (dedup, sampling) make yields non-linear,
so this is an estimate, and it says how many rows it was made from.

A warm cache must not make the estimate optimistic: an answer found in the cache is counted with
its own prompt / completion tokens (the cache keeps the answer's usage), and the calibration waits
on each hit as long as the model took to produce that answer (the cache records the time), so the
calibration's wall time is what the real calls take, at the pipeline's real concurrency. Answers
stored before times were recorded cannot be timed; the estimate says how many there were.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from synthloom.errors import BadInputError
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.run.runner import RunOptions, build_models, load_prices, run_pipeline_async


async def estimate_run(pipeline: Pipeline, opts: RunOptions, sample_rows: int = 3) -> dict[str, Any]:
    if opts.input_path is not None:
        pipeline.source = Source(path=str(opts.input_path))
    if pipeline.source is None:
        raise BadInputError(f"recipe {pipeline.name!r} needs input rows: pass --input FILE")
    rows = pipeline.source.load()
    total = len(rows) if opts.limit is None else min(len(rows), opts.limit)
    k = max(1, min(sample_rows, total))
    run_dir = Path(opts.out or Path("runs") / pipeline.name)
    cache = opts.cache_path or run_dir / "cache.sqlite"
    cache.parent.mkdir(parents=True, exist_ok=True)
    calibration = copy.copy(pipeline)
    calibration.source = Source(rows=rows[:k], description="calibration sample")
    with tempfile.TemporaryDirectory(prefix="synthloom-dryrun-") as tmp:
        sample_opts = replace(opts, out=Path(tmp) / "run", cache_path=cache, input_path=None, limit=None,
                              max_tokens_total=None, max_cost=None, formats=("jsonl",), report=False)
        models, owned = build_models(calibration, sample_opts, cache)
        for m in owned:
            m.replay_latency = True
        try:
            result = await run_pipeline_async(calibration, sample_opts, models=models)
        finally:
            for m in owned:
                await m.aclose()
    scale = total / k
    prices = load_prices(opts)
    per_model: dict[str, Any] = {}
    for model, u in result.stats["usage"].items():
        # the real run's work, wherever the calibration's answers came from, with their real split
        prompt = u.get("prompt_tokens", 0) + u.get("cached_prompt_tokens", 0)
        completion = u.get("completion_tokens", 0) + u.get("cached_completion_tokens", 0)
        est_p, est_c = round(prompt * scale), round(completion * scale)
        per_model[model] = {
            "requests": round(u.get("requests", 0) * scale),
            "prompt_tokens": est_p,
            "completion_tokens": est_c,
            "cost_usd": prices.cost(model, est_p, est_c) if prices else 0.0,
        }
    cache_stats = result.stats.get("cache", {})
    untimed = sum(int(c.get("untimed_hits", 0)) for c in cache_stats.values())
    return {
        "recipe": pipeline.name,
        "input_rows": total,
        "calibration_rows": k,
        "calibration_seconds": result.stats["wall_seconds"],
        "calibration_cached_requests": sum(int(c.get("hits", 0)) for c in cache_stats.values()),
        "calibration_untimed_answers": untimed,
        "estimated_seconds": round(result.stats["wall_seconds"] * scale, 1),
        "estimated_output_rows": round(result.stats["rows"] * scale),
        "models": per_model,
        "estimated_cost_usd": round(sum(m["cost_usd"] for m in per_model.values()), 6),
        "estimated_tokens": sum(m["prompt_tokens"] + m["completion_tokens"] for m in per_model.values()),
    }
