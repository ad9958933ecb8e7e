"""Results files and short reports: `results.jsonl` (one row per judged item / response / case),
`report.json` (the summary) and `report.md` (the same, readable), all written atomically."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synthloom.io import write_jsonl, write_text_atomic


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, numpy scalars become Python numbers, tuples become lists."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def markdown_report(title: str, summary: Mapping[str, Any], notes: Sequence[str] = ()) -> str:
    lines = [f"# {title}", ""]
    flat = {k: v for k, v in summary.items() if not isinstance(v, Mapping)}
    nested = {k: v for k, v in summary.items() if isinstance(v, Mapping)}
    if flat:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in flat.items()] + [""]
    for name, block in nested.items():
        lines += [f"## {name}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in block.items()] + [""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def write_report(out_dir: str | Path, kind: str, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                 notes: Sequence[str] = (),
                 extra_files: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> dict[str, Path]:
    """Write results.jsonl, report.json and report.md under out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.jsonl", "json": out / "report.json", "markdown": out / "report.md"}
    write_jsonl([_clean(dict(r)) for r in rows], paths["results"])
    for name, extra in (extra_files or {}).items():
        paths[name] = out / f"{name}.jsonl"
        write_jsonl([_clean(dict(r)) for r in extra], paths[name])
    payload = {"kind": kind, "summary": _clean(dict(summary)), "notes": list(notes)}
    write_text_atomic(paths["json"], json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(paths["markdown"], markdown_report(f"synthloom eval: {kind}", _clean(dict(summary)), notes))
    return paths
