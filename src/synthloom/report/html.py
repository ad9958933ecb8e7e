"""`write_report(run_dir)`: one self-contained report.html (inline SVG charts, CSS and JS; no network).

Sections: yield funnel, tokens and cost, cache, throughput over time, lengths, diversity,
verification pass rates, contamination per benchmark, and a browsable sample of kept and
rejected rows with their `_meta`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from synthloom.report.audit_section import report_context
from synthloom.io import write_text_atomic
from synthloom.records import META, Row, meta_of
from synthloom.report import charts, metrics
from synthloom.report.rundata import RunData, load_run

TEMPLATES = Path(__file__).parent / "templates"
KEPT_SAMPLE = 40
REJECTED_PER_GROUP = 5


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    env.filters["num"] = lambda x: f"{x:,}" if isinstance(x, int) else f"{x:,.4g}"
    return env


def _sample_evenly(rows: list[Row], k: int) -> list[Row]:
    if len(rows) <= k:
        return list(rows)
    step = len(rows) / k
    return [rows[int(i * step)] for i in range(k)]


def _row_view(row: Row, status: str, step: str = "", reason: str = "", detail: str = "") -> dict[str, Any]:
    meta = meta_of(row)
    columns = {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
               for k, v in row.items() if k != META}
    preview = max(columns.values(), key=len, default="")  # the longest text says most about a row
    verdicts = meta.get("verdicts") or {}
    return {"id": meta.get("id", ""), "status": status, "step": step or meta.get("step", ""),
            "reason": reason, "detail": detail, "columns": columns, "preview": preview[:160],
            "verdicts": {k: v.get("ok") if isinstance(v, dict) else None for k, v in verdicts.items()},
            "meta": json.dumps(meta, indent=2, ensure_ascii=False, sort_keys=True)}


def row_samples(data: RunData) -> list[dict[str, Any]]:
    """Kept rows spread over the dataset plus a few rejected rows of every (step, reason)."""
    out = [_row_view(r, "kept") for r in _sample_evenly(data.kept, KEPT_SAMPLE)]
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for rej in data.rejected:
        group = groups[(rej.step, rej.reason)]
        if len(group) < REJECTED_PER_GROUP:
            group.append(rej)
    for rejs in groups.values():
        out.extend(_row_view(r.row, "rejected", r.step, r.reason, r.detail) for r in rejs)
    return out


def build_context(data: RunData) -> dict[str, Any]:
    """Everything the template shows: numbers, tables and inline SVG charts."""
    stats = data.stats
    funnel = data.funnel
    usage = metrics.usage_table(stats)
    rates = metrics.verification_rates(data)
    tp = metrics.throughput(data)
    cols = metrics.text_columns(data.kept)
    lengths = {c: metrics.word_lengths(data.kept, c) for c in cols}
    tokens = metrics.token_lengths(data.kept)
    first, last = (funnel[0].get("rows_out", 0), funnel[-1].get("rows_out", 0)) if funnel else (0, 0)
    return {
        "title": f"synthloom run report: {data.name}",
        "run": {"name": data.name, "dir": str(data.run_dir), "complete": stats.get("complete"),
                "stop_reason": stats.get("stop_reason"), "rows": stats.get("rows", data.kept_total),
                "seed": stats.get("seed"), "created_at": stats.get("created_at"),
                "finished_at": stats.get("finished_at"), "wall_seconds": stats.get("wall_seconds"),
                "models": stats.get("models") or {}, "overall_yield": (last / first) if first else None},
        "funnel": funnel,
        "funnel_svg": charts.funnel_chart(funnel) if funnel else "",
        "usage": usage,
        "usage_svg": charts.usage_chart(usage) if usage else "",
        "total_cost": sum(u["cost_usd"] for u in usage),
        "total_tokens": sum(u["total_tokens"] for u in usage),
        "cache": metrics.cache_rates(stats),
        "transport": stats.get("transport") or {},
        "required_checks": stats.get("required_checks") or [],
        "unverified_rows": stats.get("unverified_rows"),
        "train_verdicts": stats.get("train_verdicts") or {},  # HTTP sends, retries, status codes, time lost
        "throughput_svg": charts.throughput_chart(tp) if tp["steps"] else "",
        "span": tp["span"],
        "lengths": {c: metrics.summary(v) for c, v in lengths.items()},
        "lengths_svg": charts.histograms(lengths, "words", "len") if any(lengths.values()) else "",
        "tokens": {k: metrics.summary(v) for k, v in tokens.items() if v},
        "tokens_svg": charts.histograms(tokens, "tokens per row", "tok") if any(tokens.values()) else "",
        "diversity": metrics.diversity(data.kept, cols[:3]),
        "rates": rates,
        "rates_svg": charts.pass_rate_chart(rates) if rates else "",
        "contamination": metrics.contamination(data),
        "audit": report_context(data.run_dir, data.kept),
        "samples": row_samples(data),
        "sampled": data.sampled,
        "kept_total": data.kept_total,
        "rejected_total": data.rejected_total,
        "kept_loaded": len(data.kept),
        "rejected_loaded": len(data.rejected),
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }


def render_report(run_dir: Path, max_rows: int = 20000) -> str:
    data = load_run(Path(run_dir), max_rows=max_rows)
    return _env().get_template("report.html.j2").render(**build_context(data))


def write_report(run_dir: Path, max_rows: int = 20000) -> Path:
    """Write `run_dir/report.html` (atomically) and return its path."""
    run_dir = Path(run_dir)
    out = run_dir / "report.html"
    write_text_atomic(out, render_report(run_dir, max_rows))
    return out
