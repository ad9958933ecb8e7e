"""The Ray executor: the local executor's contracts, with the work spread over a Ray cluster.

It reuses `LocalExecutor`'s orchestration (shards, segments, checkpoints, funnel, resume, stop
and grace) and only replaces *where* one step runs on one shard:

* steps that call models -> a pool of `ModelWorker` actors holding cache-wrapped clients
  (least-loaded actor first; each actor runs many parts concurrently);
* other map/expand/filter steps -> one Ray task per (step, shard);
* `dedup_exact` / `dedup_minhash` -> a shuffle over Ray tasks (`ray_global`);
* any other global step (the Self-Instruct pool, sampling, ...) -> one ordered stage on one
  worker, announced with a log line.

Checkpoints are written by the driver in the same layout, so a run started on one executor resumes
on the other, and per-request seeds do not depend on scheduling, so both give the same dataset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthloom.errors import ConfigError

try:
    import ray
except ImportError:  # pragma: no cover - depends on the environment
    raise ConfigError("the Ray executor needs the 'ray' package: pip install 'ray[data]'") from None

from synthloom.pipeline.local import ExecutionResult, ExecutorConfig, LocalExecutor
from synthloom.pipeline.pipeline import Pipeline
from synthloom.run.ray_global import distributed_outcomes, has_distributed_version
from synthloom.run.ray_workers import (
    CacheConfig,
    ModelWorker,
    RunInfo,
    await_ref,
    cpu_part,
    merge_cache_rows,
)
from synthloom.pipeline.stats import PartUsage, part_stats
from synthloom.pipeline.step import Step, split_outcomes
from synthloom.records import Row

log = logging.getLogger("synthloom.ray")

CACHE_MODES = ("shared", "per_worker")


@dataclass
class RayOptions:
    """How to reach (or start) the cluster and how to size the work on it."""

    address: str | None = None  # None: start a local cluster; "auto", "HOST:PORT" or "ray://HOST:10001"
    num_cpus: int = 2  # CPUs of a local cluster started here (ignored with an address)
    model_workers: int = 2  # model actors in the pool
    worker_cpus: float = 0.25  # CPUs reserved per model actor (model calls wait on I/O)
    parts_per_worker: int = 8  # (step, shard) parts in flight per model actor
    reducers: int = 2  # shuffle partitions for distributed dedup
    cache_mode: str = "shared"  # "shared": one SQLite file; "per_worker": shards merged at the end
    runtime_env: dict[str, Any] | None = None  # passed to ray.init (e.g. working_dir for ray://)
    extra_init: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.cache_mode not in CACHE_MODES:
            raise ConfigError(f"unknown cache mode {self.cache_mode!r}; choose one of: {', '.join(CACHE_MODES)}")
        if self.model_workers < 1 or self.parts_per_worker < 1:
            raise ConfigError("model_workers and parts_per_worker must be >= 1")


def connect(opts: RayOptions) -> bool:
    """Connect to the cluster (or start a local one); True when this call did the connecting."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **opts.extra_init}
    if opts.runtime_env:
        kwargs["runtime_env"] = opts.runtime_env
    if opts.address:
        kwargs.pop("include_dashboard")  # only meaningful when starting a cluster
        try:
            ray.init(address=opts.address, **kwargs)
        except ConnectionError as e:
            raise ConfigError(f"cannot connect to the Ray cluster at {opts.address}: {e}") from None
        log.info("connected to Ray cluster at %s", opts.address)
    else:
        ray.init(num_cpus=opts.num_cpus, **kwargs)
        log.info("started a local Ray cluster with %d CPUs", opts.num_cpus)
    return True


class ModelPool:
    """The model actors; parts go to the actor with the fewest parts outstanding."""

    def __init__(self, specs: dict[str, str], cache: CacheConfig, model_options: dict[str, Any],
                 opts: RayOptions) -> None:
        actor_cls = ray.remote(ModelWorker)
        self.actors = [actor_cls.options(num_cpus=opts.worker_cpus, max_concurrency=opts.parts_per_worker * 4)
                       .remote(specs, cache, model_options, i) for i in range(opts.model_workers)]
        self.outstanding = [0] * len(self.actors)
        self.cache = cache

    async def run(self, index: int, step_ref: Any, rows: list[Row], info: RunInfo) -> Any:
        k = min(range(len(self.actors)), key=lambda i: self.outstanding[i])
        self.outstanding[k] += 1
        try:
            return await await_ref(self.actors[k].run_part.remote(index, [step_ref], rows, info))
        finally:
            self.outstanding[k] -= 1

    async def model_info(self) -> dict[str, dict[str, Any]]:
        """role -> {identity, stats summed over actors}."""
        infos = await asyncio.gather(*(await_ref(a.model_info.remote()) for a in self.actors))
        out: dict[str, dict[str, Any]] = {}
        for info in infos:
            for role, entry in info.items():
                agg = out.setdefault(role, {"identity": entry["identity"], "stats": {}})
                for k, v in entry["stats"].items():
                    agg["stats"][k] = agg["stats"].get(k, 0) + v
        return out

    async def merge_caches(self, target_path: Path) -> int:
        """per_worker mode: copy every worker's cache shard into the run's cache file."""
        from synthloom.llm.cache import RequestCache

        target = RequestCache(target_path)
        try:
            exports = await asyncio.gather(*(await_ref(a.export_cache.remote()) for a in self.actors))
            return sum(merge_cache_rows(target, rows) for rows in exports)
        finally:
            target.close()

    async def close(self) -> None:
        await asyncio.gather(*(await_ref(a.close.remote()) for a in self.actors), return_exceptions=True)
        for a in self.actors:
            ray.kill(a)


class RemoteModelView:
    """What the runner's finish step reads from a model: identity and cache statistics."""

    class _Stats:
        def __init__(self, stats: dict[str, int]) -> None:
            self._stats = stats

        def to_dict(self) -> dict[str, int]:
            return dict(self._stats)

    def __init__(self, identity: str, stats: dict[str, int]) -> None:
        self.identity = identity
        self.stats = self._Stats(stats)


class RayExecutor(LocalExecutor):
    """`LocalExecutor` whose parts run on Ray; construct inside a connected Ray session."""

    def __init__(self, pipeline: Pipeline, model_specs: dict[str, str], config: ExecutorConfig,
                 ray_options: RayOptions, cache_path: Path, model_options: dict[str, Any] | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 should_stop: Callable[[], str | None] | None = None):
        super().__init__(pipeline, {}, config, on_event=on_event, should_stop=should_stop)
        self.ray_opts = ray_options
        self.info = RunInfo(config.seed, pipeline.name, str(Path(config.run_dir).resolve()), dict(pipeline.options))
        cache = CacheConfig("shared", str(Path(cache_path).resolve()))
        if ray_options.cache_mode == "per_worker":
            cache = CacheConfig("per_worker", str(Path(cache_path).resolve().parent / "cache-shards"))
        self.cache_path = Path(cache_path)
        self.pool = ModelPool(model_specs, cache, model_options or {}, ray_options) if model_specs else None
        self._step_refs: dict[int, Any] = {}

    def _step_ref(self, index: int, step: Step) -> Any:
        # Put each (already set up) step in the object store once; tasks and actors fetch it by ref.
        if index not in self._step_refs:
            self._step_refs[index] = ray.put(step)
        return self._step_refs[index]

    async def _step_on_rows(self, step: Step, index: int, rows: list[Row]) -> tuple[list[Row], list[Any], dict]:
        ref = self._step_ref(index, step)
        if step.is_global and has_distributed_version(step):
            kept, rejected, stats = await self._distributed_global(step, rows)
        else:
            if step.is_global:
                log.info("step %r (%s) has no distributed version: running it as a single ordered stage",
                         step.name, step.type_name or type(step).__name__)
            if step.model_roles() and self.pool is not None:
                kept, rejected, stats = await self.pool.run(index, ref, rows, self.info)
            else:
                kept, rejected, stats = await await_ref(cpu_part.remote(ref, index, rows, self.info))
        for model, u in stats.get("usage", {}).items():  # budgets see paid tokens as parts return
            self.live.add(model, u.get("prompt_tokens", 0), u.get("completion_tokens", 0))
        return kept, rejected, stats

    async def _distributed_global(self, step: Step, rows: list[Row]) -> tuple[list[Row], list[Any], dict]:
        t0 = time.perf_counter()
        outcomes = await distributed_outcomes(step, rows, max(1, self.pipeline.shard_size),
                                              self.ray_opts.reducers)
        kept, rejected = split_outcomes(step, rows, outcomes)
        stats = part_stats(len(rows), kept, rejected, time.perf_counter() - t0, PartUsage())
        return kept, rejected, stats

    async def model_views(self) -> dict[str, RemoteModelView]:
        if self.pool is None:
            return {}
        info = await self.pool.model_info()
        return {role: RemoteModelView(e["identity"], e["stats"]) for role, e in info.items()}

    async def close(self) -> None:
        if self.pool is not None:
            if self.ray_opts.cache_mode == "per_worker":
                merged = await self.pool.merge_caches(self.cache_path)
                log.info("merged %d cached answers from worker shards into %s", merged, self.cache_path)
            await self.pool.close()


async def run_pipeline_ray(pipeline: Pipeline, opts: Any = None, ray_options: RayOptions | None = None,
                           on_event: Callable[[str, dict[str, Any]], None] | None = None,
                           executor_hook: Callable[[LocalExecutor], None] | None = None) -> Any:
    """Like `run_pipeline_async`, on Ray: same run directory, outputs, stats and resume."""
    from synthloom.run.runner import (
        RunOptions,
        budget_check,
        finish_run,
        load_prices,
        prepare_run,
        resolve_model_specs,
    )

    opts = opts or RunOptions()
    ray_options = ray_options or RayOptions()
    ray_options.check()
    run_dir, info = prepare_run(pipeline, opts)
    specs = resolve_model_specs(pipeline, opts)
    check = budget_check(opts, load_prices(opts))
    started = connect(ray_options)
    try:
        shards = max(opts.shards_in_flight, ray_options.model_workers * ray_options.parts_per_worker)
        executor = RayExecutor(pipeline, specs,
                               ExecutorConfig(run_dir=run_dir, seed=opts.seed, shards_in_flight=shards,
                                              created_at=info["created_at"]),
                               ray_options, Path(opts.cache_path or run_dir / "cache.sqlite"),
                               model_options=opts.model_options, on_event=on_event,
                               should_stop=lambda: check(executor.live))
        if executor_hook:
            executor_hook(executor)
        try:
            result: ExecutionResult = await executor.run()
            models = await executor.model_views()
        finally:
            await executor.close()
    finally:
        if started:
            ray.shutdown()
    return finish_run(pipeline, opts, run_dir, info, result, models, executor.stop_reason)


__all__ = ["RayExecutor", "RayOptions", "connect", "run_pipeline_ray"]
