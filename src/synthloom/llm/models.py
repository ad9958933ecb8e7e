"""Building the models a run or a command uses: one place, so every caller goes through the cache.

Each distinct spec is loaded once and wrapped in a `CachedModel` on one SQLite request cache, so a
re-run, a resumed run or a repeated `synthloom eval ...` answers every request it already paid for
from the cache. Roles with the same spec share the backend (one embedded engine, one HTTP pool).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from synthloom.llm.cache import CachedModel, RequestCache


def default_cache_path() -> Path:
    """The cache commands outside a run directory share: $SYNTHLOOM_CACHE, else ~/.cache/synthloom."""
    env = os.environ.get("SYNTHLOOM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "synthloom" / "requests.sqlite"


def build_models(specs: dict[str, str], cache: RequestCache | Path | None = None, *,
                 model_options: dict[str, Any] | None = None, run_id: str | None = None,
                 prices: Any = None) -> tuple[dict[str, Any], list[Any]]:
    """(role -> cache-wrapped Model, the distinct backends to close). `cache` is a RequestCache or
    its path (default: `default_cache_path()`); `run_id` books answers to a run's usage ledger."""
    from synthloom.llm.spec import load_model

    if not isinstance(cache, RequestCache):
        path = Path(cache) if cache is not None else default_cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        cache = RequestCache(path)
    by_spec: dict[str, Any] = {}
    for spec in dict.fromkeys(specs.values()):
        by_spec[spec] = CachedModel(load_model(spec, **(model_options or {})), cache, run_id, prices)
    return {role: by_spec[spec] for role, spec in specs.items()}, list(by_spec.values())


async def close_models(backends: list[Any]) -> None:
    """Close each backend (a cache wrapper closes the engine or HTTP session inside it)."""
    for model in backends:
        await model.aclose()


__all__ = ["build_models", "close_models", "default_cache_path"]
