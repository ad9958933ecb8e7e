"""What runs inside Ray workers: one step on one shard, as a CPU task or on a model actor.

Model steps run on a pool of `ModelWorker` actors; each actor builds its models from the spec
strings (so nothing unpicklable crosses the wire) and wraps them in the request cache. With the
default `cache_mode="shared"` every actor opens the same SQLite file (WAL mode: safe for many
processes on one node or on a shared POSIX filesystem). With `cache_mode="per_worker"` each actor
keeps its own shard file on its node and the driver merges the shards into the run's cache at the
end (multi-node clusters without a shared filesystem).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from synthloom.pipeline.stats import PartUsage, part_stats
from synthloom.pipeline.step import Rejected, Step, StepContext, apply_step
from synthloom.records import Row

PartResult = tuple[list[Row], list[Rejected], dict[str, Any]]


@dataclass(frozen=True)
class RunInfo:
    """The per-run values every step context needs (sent once per call; small)."""

    seed: int
    recipe: str
    run_dir: str
    options: dict[str, Any] = field(default_factory=dict)


async def execute_part(step: Step, index: int, rows: list[Row], info: RunInfo,
                       models: dict[str, Any]) -> PartResult:
    """Run one step on rows and measure it exactly as the local executor does."""
    usage = PartUsage()
    ctx = StepContext(run_seed=info.seed, recipe=info.recipe, step_name=step.name, step_index=index,
                      models=models, usage=usage, run_dir=Path(info.run_dir), options=info.options)
    t0 = time.perf_counter()
    kept, rejected = await apply_step(step, rows, ctx)
    stats = part_stats(len(rows), kept, rejected, time.perf_counter() - t0, usage,
                       getattr(step, "branch_column", None))
    return kept, rejected, stats


async def await_ref(ref: Any) -> Any:
    """The value of a Ray ObjectRef; a remote exception is re-raised as the original error.

    `ObjectRef.future()` works for a direct driver and for Ray Client (ray://) connections.
    Unwrapping RayTaskError keeps errors one line (ModelError, ConfigError ...) as on the local executor.
    """
    try:
        return await asyncio.wrap_future(ref.future())
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


@ray.remote
def cpu_part(step: Step, index: int, rows: list[Row], info: RunInfo) -> PartResult:
    """A step without models on one shard (or a whole global stage) as a plain Ray task."""
    return asyncio.run(execute_part(step, index, rows, info, {}))


@dataclass(frozen=True)
class CacheConfig:
    mode: str  # "shared" | "per_worker"
    path: str  # shared: the SQLite file; per_worker: the folder holding one file per worker


class ModelWorker:
    """An async actor holding cache-wrapped model clients; runs many parts concurrently."""

    def __init__(self, specs: dict[str, str], cache: CacheConfig, model_options: dict[str, Any],
                 worker_index: int) -> None:
        self.specs, self.cache_cfg, self.model_options = specs, cache, model_options
        self.worker_index = worker_index
        self._models: dict[str, Any] | None = None
        self._backends: list[Any] = []
        self._steps: dict[int, Step] = {}
        self._cache: Any = None

    def _ensure_models(self) -> dict[str, Any]:
        if self._models is None:
            from synthloom.llm.cache import RequestCache
            from synthloom.llm.models import build_models

            self._cache = RequestCache(self._cache_path())
            self._models, self._backends = build_models(self.specs, self._cache, model_options=self.model_options)
        return self._models

    def _cache_path(self) -> Path:
        if self.cache_cfg.mode == "per_worker":
            return Path(self.cache_cfg.path) / f"worker-{self.worker_index:03d}.sqlite"
        return Path(self.cache_cfg.path)

    async def run_part(self, index: int, step_box: list[Any], rows: list[Row], info: RunInfo) -> PartResult:
        # The step arrives boxed (an ObjectRef in a list) so it is fetched once per actor, not per call.
        step = self._steps.get(index)
        if step is None:
            boxed = step_box[0]
            step = await boxed if isinstance(boxed, ray.ObjectRef) else boxed
            self._steps[index] = step
        return await execute_part(step, index, rows, info, self._ensure_models())

    def model_info(self) -> dict[str, dict[str, Any]]:
        """role -> {identity, cache stats} (the driver sums the stats over the pool)."""
        models = self._ensure_models()
        return {role: {"identity": m.identity, "stats": m.stats.to_dict()} for role, m in models.items()}

    def export_cache(self) -> list[tuple[str, str, str]]:
        """Every (key, model, response JSON) in this worker's cache shard, for the final merge."""
        self._ensure_models()
        return self._cache.entries()

    async def close(self) -> None:
        for backend in self._backends:
            await backend.aclose()
        self._backends = []


def merge_cache_rows(target: Any, rows: list[tuple[str, str, str]]) -> int:
    """Insert exported worker-cache rows into `target` (a RequestCache); returns how many."""
    from synthloom.llm.base import ChatResponse

    for key, model, text in rows:
        target.put(key, model, ChatResponse.from_json(json.loads(text)))
    return len(rows)
