"""Numbers the run report shows, computed from a loaded run (no plotting here)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from synthloom.records import META, Row, meta_of
from synthloom.report.rundata import RunData
from synthloom.verdicts import verdicts_of

# "8-gram overlap with bench/3 (2 windows)" or "judge: rephrase of HumanEval/7 (cosine 0.91)"
_CONTAM_ITEM = re.compile(r"(?:overlap with|rephrase of)\s+(\S+)")


@dataclass
class PassRate:
    verifier: str
    passed: int
    failed: int
    unchecked: int

    @property
    def rate(self) -> float | None:
        checked = self.passed + self.failed
        return self.passed / checked if checked else None


def verification_rates(data: RunData) -> list[PassRate]:
    """Per verifier: verdicts ok / not ok / not checkable over kept and rejected rows."""
    counts: dict[str, Counter] = defaultdict(Counter)
    rows = list(data.kept) + [r.row for r in data.rejected]
    for row in rows:
        for name, verdict in verdicts_of(row).items():
            ok = verdict.get("ok") if isinstance(verdict, dict) else None
            counts[name]["passed" if ok is True else "failed" if ok is False else "unchecked"] += 1
    return [PassRate(n, c["passed"], c["failed"], c["unchecked"]) for n, c in sorted(counts.items())]


def contamination(data: RunData) -> dict[str, Any]:
    """Rows rejected as `contaminated`, grouped by benchmark (item id prefix) and benchmark item."""
    by_bench: dict[str, Counter] = defaultdict(Counter)
    hits = []
    for rej in data.rejected:
        if rej.reason != "contaminated":
            continue
        m = _CONTAM_ITEM.search(rej.detail)
        item = m.group(1) if m else "unknown"
        bench = item.split("/", 1)[0] if "/" in item else item
        by_bench[bench][item] += 1
        hits.append({"step": rej.step, "benchmark": bench, "item": item, "detail": rej.detail,
                     "id": meta_of(rej.row).get("id")})
    configured: list[str] = []
    for step in data.recipe.get("steps") or []:
        if isinstance(step, dict) and step.get("type") == "decontaminate":
            configured.extend(str(b) for b in step.get("benchmarks") or [])
    return {
        "benchmarks": {b: {"rows": sum(c.values()), "items": dict(c.most_common())} for b, c in sorted(by_bench.items())},
        "hits": hits,
        "configured": configured,
        "checked": bool(configured) or bool(hits),
    }


def cache_rates(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Cache hits / misses per model identity (from stats['cache'], else from usage counters)."""
    out = []
    cache = stats.get("cache") or {}
    usage = stats.get("usage") or {}
    for model in sorted(set(cache) | set(usage)):
        c = cache.get(model) or {}
        u = usage.get(model) or {}
        if c:
            hits, misses = int(c.get("hits", 0)) + int(c.get("coalesced", 0)), int(c.get("misses", 0))
            saved = int(c.get("tokens_saved", 0))
        else:
            hits = int(u.get("cached_requests", 0))
            misses = int(u.get("requests", 0)) - hits
            saved = int(u.get("cached_tokens", 0))
        total = hits + misses
        out.append({"model": model, "hits": hits, "misses": misses, "tokens_saved": saved,
                    "rate": hits / total if total else None})
    return out


def usage_table(stats: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for model, u in sorted((stats.get("usage") or {}).items()):
        p, c = int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0))
        rows.append({"model": model, "requests": int(u.get("requests", 0)), "prompt_tokens": p,
                     "completion_tokens": c, "total_tokens": p + c,
                     "cost_usd": float(u.get("cost_usd", 0.0) or 0.0)})
    return rows


def throughput(data: RunData) -> dict[str, Any]:
    """Cumulative rows out and paid tokens over wall time, from when each step part landed."""
    if not data.parts:
        return {"steps": {}, "tokens": [], "span": 0.0}
    t0 = min(p.mtime - float(p.stats.get("seconds", 0.0)) for p in data.parts)
    steps: dict[str, list[tuple[float, int]]] = {}
    for p in sorted(data.parts, key=lambda p: p.mtime):
        series = steps.setdefault(p.step, [])
        prev = series[-1][1] if series else 0
        series.append((round(p.mtime - t0, 3), prev + int(p.stats.get("rows_out", 0))))
    tokens: list[tuple[float, int]] = []
    total = 0
    for p in sorted(data.parts, key=lambda p: p.mtime):
        paid = sum(int(u.get("prompt_tokens", 0)) + int(u.get("completion_tokens", 0))
                   for u in (p.stats.get("usage") or {}).values())
        if paid:
            total += paid
            tokens.append((round(p.mtime - t0, 3), total))
    span = max(p.mtime for p in data.parts) - t0
    return {"steps": steps, "tokens": tokens, "span": span}


def text_columns(rows: list[Row], limit: int = 6) -> list[str]:
    """Columns holding text in most rows, longest first (the ones worth plotting and scoring)."""
    lengths: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        for k, v in row.items():
            if k != META and isinstance(v, str):
                lengths[k].append(len(v.split()))
    keep = [k for k, ls in lengths.items() if len(ls) >= max(1, len(rows) // 2) and sum(ls) > 0]
    keep.sort(key=lambda k: -sum(lengths[k]) / len(lengths[k]))
    return keep[:limit]


def word_lengths(rows: list[Row], column: str) -> list[int]:
    return [len(r[column].split()) for r in rows if isinstance(r.get(column), str)]


def token_lengths(rows: list[Row]) -> dict[str, list[int]]:
    """Per-row prompt and completion tokens (summed along each row's lineage, from `_meta.usage`)."""
    out: dict[str, list[int]] = {"prompt_tokens": [], "completion_tokens": []}
    for row in rows:
        usage = meta_of(row).get("usage") or {}
        for key, values in out.items():
            if usage.get(key):
                values.append(int(usage[key]))
    return out


def summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)

    def pick(q: float) -> float:
        return float(s[min(len(s) - 1, int(q * len(s)))])

    return {"n": len(s), "min": float(s[0]), "p50": pick(0.5), "p90": pick(0.9), "max": float(s[-1]),
            "mean": round(sum(s) / len(s), 1)}


def diversity(rows: list[Row], columns: list[str], sample: int = 300) -> list[dict[str, Any]]:
    """distinct-n and Self-BLEU per text column (Vendi needs embeddings: too slow for every run)."""
    from synthloom.quality.diversity import diversity_report

    out = []
    for col in columns:
        texts = [r[col] for r in rows if isinstance(r.get(col), str) and r[col].strip()]
        if len(texts) < 2:
            continue
        rep = diversity_report(texts, embedder=None, self_bleu_sample=sample)
        out.append({"column": col, "rows": rep["rows"], "distinct_1": rep["distinct_1"],
                    "distinct_2": rep["distinct_2"], "self_bleu_4": rep["self_bleu_4"],
                    "vendi_score": rep.get("vendi_score")})
    return out
