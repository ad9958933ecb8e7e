"""The local streaming executor.

Rows flow through the steps in shards; each shard moves on to the next step as soon as it is
done (no barrier), except at global steps, which wait for every shard. Model steps of many shards
run at once so the model layer always has work queued. Every finished (step, shard) is written
atomically, so a killed run resumes from what is on disk and the request cache answers whatever
was in flight: zero repeated model calls.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from synthloom.pipeline.checkpoint import Checkpoints
from synthloom.pipeline.pipeline import Pipeline
from synthloom.pipeline.stats import CountingModel, Funnel, LiveTokens, PartUsage, part_stats
from synthloom.pipeline.step import Step, StepContext, apply_step, split_outcomes
from synthloom.records import META, Row, source_meta

SOURCE_STEP = "source"


class RunInterrupted(Exception):
    """The run was stopped (Ctrl-C or a budget); everything finished is on disk and resumable."""


@dataclass
class ExecutorConfig:
    run_dir: Path
    seed: int = 0
    shards_in_flight: int = 4
    grace_seconds: float = 10.0
    created_at: str = ""


@dataclass
class ExecutionResult:
    rows: list[Row]
    funnel: Funnel
    complete: bool
    seconds: float
    finished_shards: int = 0
    total_shards: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    new_parts: int | None = None  # parts computed in this session (0: a no-op resume); None: unknown


def _run_sync_step(step: Step, rows: list[Row], ctx: StepContext) -> list[Any]:
    """Entry point in a worker process for CPU-heavy steps."""
    return list(step.process(rows, ctx))


class LocalExecutor:
    def __init__(self, pipeline: Pipeline, models: dict[str, Any], config: ExecutorConfig,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 should_stop: Callable[[], str | None] | None = None):
        self.pipeline = pipeline
        self.live = LiveTokens()  # paid tokens and requests in flight, for budgets and the display
        self.models = {role: CountingModel(m, self.live) for role, m in models.items()}
        self.live.transports = transport_stats(models.values())
        self.new_parts = 0
        self.cfg = config
        self.ckpt = Checkpoints(config.run_dir)
        self.on_event = on_event or (lambda kind, data: None)
        self.should_stop = should_stop or (lambda: None)
        self.stop_reason: str | None = None
        self._pool: ProcessPoolExecutor | None = None
        self.funnel = Funnel([SOURCE_STEP] + [s.name for s in pipeline.steps])

    # --- control ----------------------------------------------------------------------
    def request_stop(self, reason: str = "interrupted") -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.on_event("stopping", {"reason": reason})

    def _stopping(self) -> bool:
        if self.stop_reason is None:
            reason = self.should_stop()
            if reason:
                self.request_stop(reason)
        return self.stop_reason is not None

    def _ctx(self, step: Step, index: int, usage: PartUsage) -> StepContext:
        return StepContext(run_seed=self.cfg.seed, recipe=self.pipeline.name, step_name=step.name,
                           step_index=index, models=self.models, usage=usage,
                           run_dir=self.cfg.run_dir, options=self.pipeline.options)

    def _add_resumed(self, step_name: str, stats: dict[str, Any]) -> None:
        """A part finished in an earlier session: count it in the funnel and in tokens paid."""
        self.funnel.add(step_name, stats)
        for model, u in stats.get("usage", {}).items():
            self.live.add(model, u.get("prompt_tokens", 0), u.get("completion_tokens", 0))

    # --- source -----------------------------------------------------------------------
    def _load_source(self) -> list[list[Row]]:
        size = max(1, self.pipeline.shard_size)
        if self.ckpt.global_parts(0, SOURCE_STEP) is not None:
            parts = self.ckpt.global_parts(0, SOURCE_STEP)
            shards = []
            for k in range(parts):
                rows, stats = self.ckpt.read_part(0, SOURCE_STEP, k)
                self.funnel.add(SOURCE_STEP, stats)
                shards.append(rows)
            return shards
        assert self.pipeline.source is not None
        rows = self.pipeline.source.load()
        for row in rows:
            row[META] = source_meta(row, self.pipeline.name, self.cfg.created_at)
        shards = [rows[i:i + size] for i in range(0, len(rows), size)] or [[]]
        for k, shard in enumerate(shards):
            stats = {"rows_in": len(shard), "rows_out": len(shard), "rejected": {}, "seconds": 0.0, "usage": {}}
            self.ckpt.write_part(0, SOURCE_STEP, k, shard, [], stats)
            self.funnel.add(SOURCE_STEP, stats)
        self.ckpt.mark_global_done(0, SOURCE_STEP, len(shards))
        return shards

    # --- one step on one shard --------------------------------------------------------
    async def _step_on_rows(self, step: Step, index: int, rows: list[Row]) -> tuple[list[Row], list[Any], dict]:
        usage = PartUsage(self.live)
        ctx = self._ctx(step, index, usage)
        t0 = time.perf_counter()
        if step.cpu_heavy and not step.is_global:
            loop = asyncio.get_running_loop()
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=os.cpu_count() or 1)
            plain = StepContext(ctx.run_seed, ctx.recipe, ctx.step_name, ctx.step_index, {}, None,
                                ctx.run_dir, ctx.options)
            outcomes = await loop.run_in_executor(self._pool, _run_sync_step, step, rows, plain)
            kept, rejected = split_outcomes(step, rows, outcomes)
        else:
            kept, rejected = await apply_step(step, rows, ctx)
        stats = part_stats(len(rows), kept, rejected, time.perf_counter() - t0, usage,
                           getattr(step, "branch_column", None))
        return kept, rejected, stats

    async def _run_shard(self, steps: list[tuple[int, Step]], shard: int, rows: list[Row]) -> list[Row] | None:
        for index, step in steps:
            if self.ckpt.has_part(index, step.name, shard):
                rows, stats = self.ckpt.read_part(index, step.name, shard)
                self._add_resumed(step.name, stats)
                self.on_event("part", {"step": step.name, "shard": shard, "stats": stats, "resumed": True})
                continue
            if self._stopping():
                return None
            kept, rejected, stats = await self._step_on_rows(step, index, rows)
            self.ckpt.write_part(index, step.name, shard, kept, rejected, stats)
            self.new_parts += 1
            self.funnel.add(step.name, stats)
            self.on_event("part", {"step": step.name, "shard": shard, "stats": stats, "resumed": False})
            rows = kept
        return rows

    async def _run_segment(self, steps: list[tuple[int, Step]], shards: list[list[Row]]) -> list[list[Row] | None]:
        results: list[list[Row] | None] = [None] * len(shards)
        sem = asyncio.Semaphore(max(1, self.cfg.shards_in_flight))

        async def one(k: int) -> None:
            async with sem:
                if self._stopping() and not all(self.ckpt.has_part(i, s.name, k) for i, s in steps):
                    return
                results[k] = await self._run_shard(steps, k, shards[k])

        tasks = [asyncio.create_task(one(k)) for k in range(len(shards))]
        try:
            await self._wait_with_grace(tasks)
        finally:
            for t in tasks:
                t.cancel()
            # collect every shard's outcome: when several shards fail at once (a wrong endpoint), the
            # first error is raised and the others must not surface later as "never retrieved"
            await asyncio.gather(*tasks, return_exceptions=True)
        return results

    async def _wait_with_grace(self, tasks: list[asyncio.Task]) -> None:
        """Wait for all tasks; once a stop is requested, give in-flight work a grace period."""
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, timeout=0.2, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise t.exception()  # type: ignore[misc]
            if pending and self._stopping():
                done, pending = await asyncio.wait(pending, timeout=self.cfg.grace_seconds)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                for t in done:
                    if not t.cancelled() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
                return

    async def _run_global(self, index: int, step: Step, shards: list[list[Row]]) -> list[list[Row]]:
        size = max(1, self.pipeline.shard_size)
        parts = self.ckpt.global_parts(index, step.name)
        if parts is None:
            rows = [r for shard in shards for r in shard]
            kept, rejected, stats = await self._step_on_rows(step, index, rows)
            out = [kept[i:i + size] for i in range(0, len(kept), size)] or [[]]
            empty = {"rows_in": 0, "rows_out": 0, "rejected": {}, "seconds": 0.0, "usage": {}}
            for k, shard in enumerate(out):
                # the whole step's numbers ride on part 0 so the funnel counts them once
                s = stats if k == 0 else empty
                self.ckpt.write_part(index, step.name, k, shard, rejected if k == 0 else [], s)
                self.funnel.add(step.name, s)
            self.ckpt.mark_global_done(index, step.name, len(out))
            self.new_parts += 1
            self.on_event("part", {"step": step.name, "shard": 0, "stats": stats, "resumed": False})
            return out
        out = []
        for k in range(parts):
            rows, stats = self.ckpt.read_part(index, step.name, k)
            self._add_resumed(step.name, stats)
            out.append(rows)
        return out

    # --- whole run --------------------------------------------------------------------
    async def run(self) -> ExecutionResult:
        t0 = time.perf_counter()
        for step in self.pipeline.steps:
            step.setup(self._ctx(step, 0, PartUsage()))
        shards = self._load_source()
        self.on_event("start", {"rows": sum(len(s) for s in shards), "shards": len(shards), "live": self.live})
        indexed = list(enumerate(self.pipeline.steps, start=1))
        segment: list[tuple[int, Step]] = []
        complete = True
        current: list[list[Row] | None] = list(shards)
        try:
            for index, step in indexed + [(-1, None)]:  # type: ignore[list-item]
                if step is not None and not step.is_global:
                    segment.append((index, step))
                    continue
                if segment:
                    current = await self._run_segment(segment, [s or [] for s in current])
                    segment = []
                if step is None:
                    break
                if any(s is None for s in current) or self._stopping():
                    complete = False
                    break
                current = await self._run_global(index, step, [s for s in current if s is not None])
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
            for index, step in indexed:
                done = step.teardown(self._ctx(step, index, PartUsage()))
                if asyncio.iscoroutine(done):
                    await done
        finished = [s for s in current if s is not None]
        complete = complete and len(finished) == len(current) and self.stop_reason is None
        rows = [r for s in finished for r in s]
        return ExecutionResult(rows=rows, funnel=self.funnel, complete=complete,
                               seconds=time.perf_counter() - t0, finished_shards=len(finished),
                               total_shards=len(current), new_parts=self.new_parts)


def transport_stats(models: Any) -> list[Any]:
    """The HTTP clients' counters (retries, statuses, time lost) under the run's model wrappers."""
    found: list[Any] = []
    for m in models:
        while m is not None:
            stats = getattr(m, "stats", None)
            if hasattr(stats, "retries") and hasattr(stats, "statuses") and all(stats is not f for f in found):
                found.append(stats)
            inner = getattr(m, "inner", None)
            m = inner if inner is not m else None
    return found
