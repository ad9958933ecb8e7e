"""Token and cost accounting per model, for stats.json and the live progress display.

`PriceTable` maps a model (exact identity, bare server name, or a glob such as `gpt-4o*`) to
USD per million prompt / completion tokens; embedded and scripted models are free. A model with
no price is counted in tokens and reported as unpriced rather than silently costing 0.
`UsageTracker` is thread-safe because CPU steps and the Ray executor report from worker threads.
"""

from __future__ import annotations

import fnmatch
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from synthloom.errors import ConfigError
from synthloom.llm.base import Usage

FREE_BACKENDS = ("embedded", "scripted", "vllm")


@dataclass(frozen=True, slots=True)
class Price:
    prompt_per_m: float  # USD per 1M prompt tokens
    completion_per_m: float  # USD per 1M completion tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt_per_m + completion_tokens * self.completion_per_m) / 1e6


FREE = Price(0.0, 0.0)


class PriceTable:
    """USD per 1M tokens by model identity, bare model name, or glob pattern."""

    def __init__(self, prices: dict[str, Price | dict[str, float] | tuple[float, float]] | None = None):
        self._exact: dict[str, Price] = {}
        self._globs: list[tuple[str, Price]] = []
        for pattern, price in (prices or {}).items():
            self.set(pattern, price)

    def set(self, pattern: str, price: Price | dict[str, float] | tuple[float, float] | list[float]) -> None:
        p = _as_price(pattern, price)
        if any(ch in pattern for ch in "*?["):
            self._globs = [(g, q) for g, q in self._globs if g != pattern] + [(pattern, p)]
            # Longest (most specific) pattern wins when several match.
            self._globs.sort(key=lambda gp: -len(gp[0]))
        else:
            self._exact[pattern] = p

    def lookup(self, model: str) -> Price | None:
        """The price for a model identity such as 'openai:gpt-4o-mini'; None when unknown."""
        backend, _, name = model.partition(":")
        if backend in FREE_BACKENDS:
            return FREE
        for key in (model, name):
            if key and key in self._exact:
                return self._exact[key]
        for pattern, price in self._globs:
            if fnmatch.fnmatchcase(model, pattern) or (name and fnmatch.fnmatchcase(name, pattern)):
                return price
        return None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for these tokens; 0.0 for a model with no price (reported as unpriced elsewhere)."""
        price = self.lookup(model)
        return price.cost(prompt_tokens, completion_tokens) if price else 0.0

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """Read `{model: {prompt: usd_per_1m, completion: usd_per_1m}}` from YAML or JSON.

        A top-level `prices:` key is also accepted so the table can live inside a larger config.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read price table {p}: {e.strerror or e}") from None
        try:
            data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as e:
            raise ConfigError(f"price table {p} is not valid {p.suffix or 'YAML'}: "
                              f"{str(e).splitlines()[0]}") from None
        if isinstance(data, dict) and isinstance(data.get("prices"), dict):
            data = data["prices"]
        if not isinstance(data, dict):
            raise ConfigError(f"price table {p} must map model names to "
                              "{prompt: USD per 1M tokens, completion: USD per 1M tokens}")
        return cls(data)


def _as_price(pattern: str, price: Any) -> Price:
    if isinstance(price, Price):
        return price
    try:
        if isinstance(price, dict):
            unknown = set(price) - {"prompt", "completion", "input", "output"}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}")
            prompt = price.get("prompt", price.get("input"))
            completion = price.get("completion", price.get("output"))
            if prompt is None or completion is None:
                raise ValueError("need both 'prompt' and 'completion'")
            p = Price(float(prompt), float(completion))
        else:
            prompt, completion = price
            p = Price(float(prompt), float(completion))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad price for {pattern!r}: {e}; "
                          "use {prompt: USD per 1M tokens, completion: USD per 1M tokens}") from None
    if p.prompt_per_m < 0 or p.completion_per_m < 0:
        raise ConfigError(f"bad price for {pattern!r}: prices must be >= 0")
    return p


@dataclass(slots=True)
class ModelUsage:
    requests: int = 0
    cached_requests: int = 0
    prompt_tokens: int = 0  # tokens actually paid for (cache hits excluded)
    completion_tokens: int = 0
    tokens_saved: int = 0  # tokens answered by the cache
    cost_usd: float = 0.0
    cost_saved_usd: float = 0.0
    priced: bool = True


class UsageTracker:
    """Per-model request / token / cost totals; safe to call from several threads."""

    def __init__(self, prices: PriceTable | None = None) -> None:
        self.prices = prices or PriceTable()
        self._by_model: dict[str, ModelUsage] = {}
        self._lock = threading.Lock()

    def record(self, model_name: str, usage: Usage, cached: bool = False) -> None:
        price = self.prices.lookup(model_name)
        cost = price.cost(usage.prompt_tokens, usage.completion_tokens) if price else 0.0
        with self._lock:
            m = self._by_model.get(model_name)
            if m is None:
                m = self._by_model[model_name] = ModelUsage()
            m.requests += 1
            if price is None:
                m.priced = False
            if cached:
                m.cached_requests += 1
                m.tokens_saved += usage.total_tokens
                m.cost_saved_usd += cost
            else:
                m.prompt_tokens += usage.prompt_tokens
                m.completion_tokens += usage.completion_tokens
                m.cost_usd += cost

    def model(self, model_name: str) -> ModelUsage:
        with self._lock:
            return ModelUsage(**asdict(self._by_model.get(model_name, ModelUsage())))

    @property
    def total_cost_usd(self) -> float:
        with self._lock:
            return sum(m.cost_usd for m in self._by_model.values())

    def to_dict(self) -> dict[str, Any]:
        """`{"models": {name: {...}}, "total": {...}}` for stats.json."""
        with self._lock:
            models = {name: asdict(m) for name, m in sorted(self._by_model.items())}
        total = ModelUsage()
        for m in models.values():
            for field in ("requests", "cached_requests", "prompt_tokens", "completion_tokens",
                          "tokens_saved", "cost_usd", "cost_saved_usd"):
                setattr(total, field, getattr(total, field) + m[field])
            total.priced = total.priced and m["priced"]
        return {"models": models, "total": asdict(total)}

    def merge(self, data: dict[str, Any]) -> None:
        """Add totals from a previous run's `to_dict()` (resume keeps cumulative figures)."""
        models = data.get("models", {}) if isinstance(data, dict) else None
        if not isinstance(models, dict):
            raise ConfigError("usage totals to merge must look like UsageTracker.to_dict()")
        with self._lock:
            for name, figures in models.items():
                m = self._by_model.setdefault(name, ModelUsage())
                for field in ("requests", "cached_requests", "prompt_tokens", "completion_tokens",
                              "tokens_saved"):
                    setattr(m, field, getattr(m, field) + int(figures.get(field, 0)))
                for field in ("cost_usd", "cost_saved_usd"):
                    setattr(m, field, getattr(m, field) + float(figures.get(field, 0.0)))
                m.priced = m.priced and bool(figures.get("priced", True))
