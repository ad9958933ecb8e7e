"""Read a finished (or interrupted) run directory into plain Python data for the report and viewer.

Only reads: stats.json, recipe.yaml, data/train.{jsonl,parquet} (or the last step's checkpoint
parts when no dataset was written yet), rejected/ and the per-part statistics kept in each step
part's Parquet metadata. Large runs are capped (`max_rows`) so a report never loads millions of
rows; the cap is recorded so the page can say that numbers come from a sample.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from synthloom.errors import BadInputError
from synthloom.io import read_rows
from synthloom.pipeline.checkpoint import STATS_KEY, Checkpoints
from synthloom.records import META, Row

_STEP_DIR = re.compile(r"^(\d+)-(.+)$")


@dataclass
class PartInfo:
    """One finished shard of one step: when it landed and what it did."""

    step: str
    index: int
    shard: int
    mtime: float
    stats: dict[str, Any]


@dataclass
class RejectedRow:
    step: str
    reason: str
    detail: str
    row: Row


@dataclass
class RunData:
    run_dir: Path
    stats: dict[str, Any]
    recipe: dict[str, Any]
    kept: list[Row]
    rejected: list[RejectedRow]
    parts: list[PartInfo] = field(default_factory=list)
    kept_total: int = 0
    rejected_total: int = 0

    @property
    def name(self) -> str:
        return str(self.stats.get("recipe") or self.recipe.get("name") or self.run_dir.name)

    @property
    def funnel(self) -> list[dict[str, Any]]:
        return list(self.stats.get("funnel") or [])

    @property
    def sampled(self) -> bool:
        return len(self.kept) < self.kept_total or len(self.rejected) < self.rejected_total


def step_dirs(run_dir: Path, kind: str = "steps") -> list[tuple[int, str, Path]]:
    """(index, step name, folder) for each `NN-name` folder under steps/ or rejected/, in order."""
    root = run_dir / kind
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        m = _STEP_DIR.match(d.name)
        if d.is_dir() and m:
            out.append((int(m.group(1)), m.group(2), d))
    return out


def load_stats(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "stats.json"
    if not path.exists():
        raise BadInputError(f"{run_dir} is not a synthloom run directory (no stats.json)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None


def load_recipe(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "recipe.yaml"
    if not path.exists():
        return {}
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def load_parts(run_dir: Path) -> list[PartInfo]:
    parts = []
    for index, name, d in step_dirs(run_dir):
        for p in sorted(d.glob("part-*.parquet")):
            meta = pq.read_schema(p).metadata or {}
            stats = json.loads(meta.get(STATS_KEY, b"{}"))
            parts.append(PartInfo(name, index, int(p.stem.split("-")[1]), p.stat().st_mtime, stats))
    return parts


def _last_step_rows(run_dir: Path, limit: int) -> tuple[list[Row], int]:
    """Kept rows of an unfinished run: the last step's finished parts."""
    dirs = step_dirs(run_dir)
    if not dirs:
        return [], 0
    index, name, d = dirs[-1]
    ck = Checkpoints(run_dir)
    rows: list[Row] = []
    total = 0
    for p in sorted(d.glob("part-*.parquet")):
        part_rows, _ = ck.read_part(index, name, int(p.stem.split("-")[1]))
        total += len(part_rows)
        rows.extend(part_rows[: max(0, limit - len(rows))])
    return rows, total


def load_kept(run_dir: Path, max_rows: int) -> tuple[list[Row], int]:
    for fname in ("train.jsonl", "train.parquet"):
        path = run_dir / "data" / fname
        if path.exists():
            rows = read_rows(path)
            for r in rows:
                r.setdefault(META, {})
            return rows[:max_rows], len(rows)
    return _last_step_rows(run_dir, max_rows)


def load_rejected(run_dir: Path, max_rows: int) -> tuple[list[RejectedRow], int]:
    """Rejected rows of every step, capped per run; the total is counted from Parquet metadata."""
    ck = Checkpoints(run_dir)
    out: list[RejectedRow] = []
    total = 0
    for index, name, d in step_dirs(run_dir, "rejected"):
        files = sorted(d.glob("part-*.parquet"))
        n = sum(pq.read_metadata(p).num_rows for p in files)
        total += n
        if n == 0 or len(out) >= max_rows:
            continue
        for rec in ck.read_rejected(index, name):
            if len(out) >= max_rows:
                break
            out.append(RejectedRow(str(rec.get("step") or name), str(rec.get("reason") or ""),
                                   str(rec.get("detail") or ""), rec["row"]))
    return out, total


def load_run(run_dir: Path, max_rows: int = 20000) -> RunData:
    """Everything the report and the viewer show about one run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(f"run directory {run_dir} does not exist")
    stats = load_stats(run_dir)
    kept, kept_total = load_kept(run_dir, max_rows)
    rejected, rejected_total = load_rejected(run_dir, max_rows)
    return RunData(run_dir, stats, load_recipe(run_dir), kept, rejected, load_parts(run_dir),
                   kept_total, rejected_total)
