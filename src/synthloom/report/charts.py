"""matplotlib figures rendered to inline SVG strings (no pyplot: no global backend state).

Bars that tests and the viewer look for carry SVG ids via `set_gid`: `funnel-bar-<i>` is the
kept-rows bar of step i, `funnel-reject-<i>-<j>` its j-th reject-reason segment.
"""

from __future__ import annotations

import io
import warnings
from typing import Any, cast

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

KEPT_COLOR = "#2b8a3e"
PALETTE = ["#e8590c", "#c92a2a", "#862e9c", "#1864ab", "#e67700", "#5c940d", "#0b7285", "#a61e4d"]
_RC: dict[str, Any] = {"svg.fonttype": "none", "svg.hashsalt": "synthloom", "font.size": 9,
       "axes.spines.top": False, "axes.spines.right": False}


def _style() -> Any:
    """Our plot style, applied only inside `with` (never the process-wide rcParams)."""
    return matplotlib.rc_context(cast(Any, _RC))


def _to_svg(fig: Figure) -> str:
    buf = io.StringIO()
    FigureCanvasSVG(fig)
    with _style(), warnings.catch_warnings():
        # tiny charts (one step, one row) cannot satisfy constrained layout; bbox "tight" still fits them
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        fig.savefig(buf, format="svg", bbox_inches="tight")
    svg = buf.getvalue()
    # Inline use: drop the XML prolog and DOCTYPE (the page's CSS caps the width).
    return svg[svg.index("<svg"):]


def _tag(bars: Any, prefix: str) -> None:
    """Give each bar of a container its own SVG id (ids must be unique in the page)."""
    for i, patch in enumerate(bars.patches):
        patch.set_gid(f"{prefix}-{i}")


def _figure(width: float, height: float) -> Figure:
    with _style():
        return Figure(figsize=(width, height), layout="constrained")


def reason_colors(funnel: list[dict[str, Any]]) -> dict[str, str]:
    totals: dict[str, int] = {}
    for s in funnel:
        for reason, n in (s.get("rejected") or {}).items():
            totals[reason] = totals.get(reason, 0) + int(n)
    ordered = sorted(totals, key=lambda r: -totals[r])
    return {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(ordered)}


def funnel_chart(funnel: list[dict[str, Any]]) -> str:
    """Horizontal bars per step: rows kept, then each reject reason stacked after them."""
    with _style():
        fig = _figure(8, 0.45 * len(funnel) + 1.2)
        ax = fig.add_subplot()
        colors = reason_colors(funnel)
        labelled: set[str] = set()
        ys = list(range(len(funnel)))[::-1]
        for i, (y, s) in enumerate(zip(ys, funnel)):
            kept = int(s.get("rows_out", 0))
            bar = ax.barh(y, kept, color=KEPT_COLOR, label="kept" if i == 0 else None)
            bar.patches[0].set_gid(f"funnel-bar-{i}")
            left = kept
            for j, (reason, n) in enumerate(sorted((s.get("rejected") or {}).items(), key=lambda kv: -kv[1])):
                seg = ax.barh(y, int(n), left=left, color=colors[reason],
                              label=reason if reason not in labelled else None)
                seg.patches[0].set_gid(f"funnel-reject-{i}-{j}")
                labelled.add(reason)
                left += int(n)
            ax.text(left, y, f" {kept}/{int(s.get('rows_in', 0))}", va="center", fontsize=8)
        ax.set_yticks(ys, [str(s.get("step")) for s in funnel])
        ax.set_xlabel("rows (kept + rejected by reason)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        return _to_svg(fig)


def compare_funnels(a: list[dict[str, Any]], b: list[dict[str, Any]], label_a: str, label_b: str) -> str:
    """Rows kept per step for two runs side by side (steps matched by name, A's order first)."""
    names = [s["step"] for s in a] + [s["step"] for s in b if s["step"] not in {x["step"] for x in a}]
    kept_a = {s["step"]: int(s.get("rows_out", 0)) for s in a}
    kept_b = {s["step"]: int(s.get("rows_out", 0)) for s in b}
    with _style():
        fig = _figure(8, 0.5 * len(names) + 1.2)
        ax = fig.add_subplot()
        ys = list(range(len(names)))[::-1]
        h = 0.38
        for k, (vals, label, color) in enumerate(((kept_a, label_a, KEPT_COLOR), (kept_b, label_b, "#1864ab"))):
            bars = ax.barh([y + (h / 2 if k == 0 else -h / 2) for y in ys], [vals.get(n, 0) for n in names],
                           height=h, color=color, label=label)
            _tag(bars, f"compare-bar-{k}")
        ax.set_yticks(ys, names)
        ax.set_xlabel("rows kept after each step")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        return _to_svg(fig)


def usage_chart(rows: list[dict[str, Any]]) -> str:
    """Prompt and completion tokens per model, stacked."""
    with _style():
        fig = _figure(7, 0.45 * len(rows) + 1.2)
        ax = fig.add_subplot()
        ys = list(range(len(rows)))[::-1]
        _tag(ax.barh(ys, [r["prompt_tokens"] for r in rows], color="#1864ab", label="prompt tokens"), "usage-prompt")
        _tag(ax.barh(ys, [r["completion_tokens"] for r in rows], left=[r["prompt_tokens"] for r in rows],
                     color="#e67700", label="completion tokens"), "usage-completion")
        ax.set_yticks(ys, [r["model"] for r in rows])
        ax.set_xlabel("paid tokens")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        return _to_svg(fig)


def throughput_chart(tp: dict[str, Any]) -> str:
    """Cumulative rows out per step, and cumulative paid tokens, against seconds since start."""
    with _style():
        fig = _figure(8, 3.2)
        ax = fig.add_subplot(1, 2, 1)
        for i, (step, series) in enumerate(tp["steps"].items()):
            xs, ys = [0.0] + [p[0] for p in series], [0] + [p[1] for p in series]
            ax.step(xs, ys, where="post", label=step, color=PALETTE[i % len(PALETTE)], gid=f"throughput-{i}")
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("rows out (cumulative)")
        ax.legend(fontsize=7, frameon=False)
        ax2 = fig.add_subplot(1, 2, 2)
        if tp["tokens"]:
            xs, ys = [0.0] + [p[0] for p in tp["tokens"]], [0] + [p[1] for p in tp["tokens"]]
            ax2.step(xs, ys, where="post", color="#e67700", gid="throughput-tokens")
            rate = ys[-1] / xs[-1] if xs[-1] > 0 else 0
            ax2.set_title(f"{rate:,.0f} tokens/s overall", fontsize=9)
        ax2.set_xlabel("seconds since start")
        ax2.set_ylabel("paid tokens (cumulative)")
        return _to_svg(fig)


def histograms(series: dict[str, list[int]], xlabel: str, gid_prefix: str) -> str:
    """Small multiples: one histogram per named series."""
    items = [(k, v) for k, v in series.items() if v]
    cols = min(3, max(1, len(items)))
    rows = (len(items) + cols - 1) // cols
    with _style():
        fig = _figure(8, 2.3 * max(1, rows))
        for i, (name, values) in enumerate(items):
            ax = fig.add_subplot(rows, cols, i + 1)
            _, _, patches = ax.hist(values, bins=min(30, max(5, len(set(values)))), color=PALETTE[i % len(PALETTE)])
            for j, p in enumerate(cast(list[Any], patches)):  # one container per histogram
                p.set_gid(f"{gid_prefix}-{i}-{j}")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel(xlabel)
        return _to_svg(fig)


def pass_rate_chart(rates: list[Any]) -> str:
    """Per verifier: passed / failed / not checkable, stacked."""
    with _style():
        fig = _figure(7, 0.45 * len(rates) + 1.2)
        ax = fig.add_subplot()
        ys = list(range(len(rates)))[::-1]
        p = [r.passed for r in rates]
        f = [r.failed for r in rates]
        u = [r.unchecked for r in rates]
        _tag(ax.barh(ys, p, color=KEPT_COLOR, label="passed"), "verdict-passed")
        _tag(ax.barh(ys, f, left=p, color="#c92a2a", label="failed"), "verdict-failed")
        ax.barh(ys, u, left=[a + b for a, b in zip(p, f)], color="#adb5bd", label="not checkable")
        ax.set_yticks(ys, [r.verifier for r in rates])
        ax.set_xlabel("rows with a verdict (kept + rejected)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        return _to_svg(fig)
