"""Per-shard statistics and the run's yield funnel (stats.json)."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any

from synthloom.llm.base import Usage


class LiveTokens:
    """Tokens paid so far in this run (resumed parts + calls as they return): budget checks.
    Also what the live display shows between shard completions: requests answered (paid and
    cached) in this process, and the transport counters (retries, status codes, time lost)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_model: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.in_flight = 0  # model requests currently waiting for an answer
        self.requests = 0  # model requests answered in this process (cache hits included)
        self.cached = 0  # of which answered by the cache
        self.transports: list[Any] = []  # ClientStats of the HTTP clients (retries, statuses)

    def answered(self, responses: list[Any]) -> None:
        with self._lock:
            self.requests += len(responses)
            self.cached += sum(1 for r in responses if getattr(r, "cached", False))

    def transport(self) -> dict[str, Any]:
        """Retries, status counts and time lost summed over every HTTP client of the run."""
        total: dict[str, Any] = {"attempts": 0, "retries": 0, "time_lost_s": 0.0, "statuses": Counter()}
        for t in self.transports:
            total["attempts"] += t.attempts
            total["retries"] += t.retries
            total["time_lost_s"] += t.time_lost_s
            total["statuses"].update(dict(t.statuses))  # a copy: the display reads from another thread
        total["statuses"] = dict(total["statuses"])
        return total

    def add(self, model_name: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            entry = self.by_model[model_name]
            entry[0] += prompt_tokens
            entry[1] += completion_tokens

    @property
    def total(self) -> int:
        return sum(p + c for p, c in list(self.by_model.values()))

    def cost(self, prices: Any) -> float:
        if prices is None:
            return 0.0
        return sum(prices.cost(m, p, c) for m, (p, c) in self.by_model.items())


class CountingModel:
    """Wraps a Model to keep the run's count of requests in flight (for the live display)."""

    def __init__(self, inner: Any, live: LiveTokens):
        self.inner, self.live, self.identity = inner, live, inner.identity

    async def chat(self, requests: list[Any]) -> list[Any]:
        self.live.in_flight += len(requests)
        try:
            responses = await self.inner.chat(requests)
        finally:
            self.live.in_flight -= len(requests)
        self.live.answered(responses)
        return responses

    async def score(self, texts: Any, prefixes: Any = None) -> list[Any]:
        self.live.in_flight += len(texts)
        try:
            scores = await self.inner.score(texts, prefixes)
        finally:
            self.live.in_flight -= len(texts)
        self.live.answered(scores)
        return scores

    async def aclose(self) -> None:  # the runner closes the wrapped model itself
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class PartUsage:
    """Token usage of one step on one shard; same `record` signature as the usage tracker."""

    def __init__(self, live: LiveTokens | None = None) -> None:
        self._lock = threading.Lock()
        self.by_model: dict[str, dict[str, int]] = {}
        self.live = live

    def record(self, model_name: str, usage: Usage, cached: bool = False) -> None:
        if self.live is not None and not cached:
            self.live.add(model_name, usage.prompt_tokens, usage.completion_tokens)
        with self._lock:
            m = self.by_model.setdefault(model_name, {"prompt_tokens": 0, "completion_tokens": 0,
                                                      "requests": 0, "cached_requests": 0,
                                                      "cached_tokens": 0, "cached_prompt_tokens": 0,
                                                      "cached_completion_tokens": 0})
            m["requests"] += 1
            if cached:
                m["cached_requests"] += 1
                m["cached_tokens"] += usage.prompt_tokens + usage.completion_tokens
                m["cached_prompt_tokens"] += usage.prompt_tokens  # the answer's real split
                m["cached_completion_tokens"] += usage.completion_tokens
            else:
                m["prompt_tokens"] += usage.prompt_tokens
                m["completion_tokens"] += usage.completion_tokens


def part_stats(rows_in: int, kept: list[dict], rejected: list[Any], seconds: float,
               usage: PartUsage, branch_column: str | None = None) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "rows_in": rows_in,
        "rows_out": len(kept),
        "rejected": dict(Counter(r.reason for r in rejected)),
        "seconds": round(seconds, 4),
        "usage": usage.by_model,
    }
    if branch_column:
        stats["by_branch"] = dict(Counter(str(r.get(branch_column)) for r in kept))
    return stats


class Funnel:
    """Accumulates part statistics per step, in pipeline order."""

    def __init__(self, step_names: list[str]):
        self.order = list(step_names)
        self.steps: dict[str, dict[str, Any]] = {
            n: {"rows_in": 0, "rows_out": 0, "rejected": Counter(), "seconds": 0.0, "parts": 0,
                "by_branch": Counter()} for n in step_names
        }
        self.usage: dict[str, Counter] = defaultdict(Counter)
        self._lock = threading.Lock()

    def add(self, step: str, stats: dict[str, Any]) -> None:
        with self._lock:
            s = self.steps[step]
            s["rows_in"] += stats.get("rows_in", 0)
            s["rows_out"] += stats.get("rows_out", 0)
            s["rejected"].update(stats.get("rejected", {}))
            s["seconds"] += stats.get("seconds", 0.0)
            s["parts"] += 1
            s["by_branch"].update(stats.get("by_branch", {}))
            for model, u in stats.get("usage", {}).items():
                self.usage[model].update(u)

    def to_dict(self) -> list[dict[str, Any]]:
        out = []
        for name in self.order:
            s = self.steps[name]
            entry = {"step": name, "rows_in": s["rows_in"], "rows_out": s["rows_out"],
                     "rejected": dict(s["rejected"]), "rejected_total": sum(s["rejected"].values()),
                     "seconds": round(s["seconds"], 3), "parts": s["parts"]}
            if s["by_branch"]:
                entry["by_branch"] = dict(s["by_branch"])
            out.append(entry)
        return out

    def usage_dict(self, prices: Any = None) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for model, u in self.usage.items():
            entry: dict[str, Any] = dict(u)
            entry["cost_usd"] = prices.cost(model, u["prompt_tokens"], u["completion_tokens"]) if prices else 0.0
            out[model] = entry
        return out
