"""Shard checkpoints in the run directory.

    steps/<ii>-<step>/part-<kkkkk>.parquet     rows a step kept for shard k (a finished shard)
    rejected/<ii>-<step>/part-<kkkkk>.parquet  rows it rejected, with reason and detail
    steps/<ii>-<step>/_done.json               a global step finished (lists its part count)

Rows are stored as one JSON text per row (lossless for nested and mixed-type columns); a part's
per-shard statistics ride in its Parquet schema metadata, so a part and its numbers land in one
atomic rename. The rejected part is written first: a step part on disk implies its rejects are too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthloom.io import atomic_path, write_text_atomic
from synthloom.pipeline.step import Rejected
from synthloom.records import Row

STATS_KEY = b"synthloom_stats"


def _dumps(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False, sort_keys=True, default=str)


class Checkpoints:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def step_dir(self, index: int, name: str, kind: str = "steps") -> Path:
        return self.run_dir / kind / f"{index:02d}-{name.replace('/', '_')}"

    def part_path(self, index: int, name: str, shard: int, kind: str = "steps") -> Path:
        return self.step_dir(index, name, kind) / f"part-{shard:05d}.parquet"

    # --- writing ------------------------------------------------------------------------
    def write_rejected(self, index: int, name: str, shard: int, rejected: list[Rejected]) -> None:
        rej_table = pa.table({
            "row": pa.array([_dumps(r.row) for r in rejected], pa.string()),
            "step": pa.array([name] * len(rejected), pa.string()),
            "reason": pa.array([r.reason for r in rejected], pa.string()),
            "detail": pa.array([r.detail for r in rejected], pa.string()),
        })
        with atomic_path(self.part_path(index, name, shard, "rejected")) as tmp:
            pq.write_table(rej_table, tmp, compression="zstd")

    def write_part(self, index: int, name: str, shard: int, rows: list[Row],
                   rejected: list[Rejected], stats: dict[str, Any]) -> None:
        self.write_rejected(index, name, shard, rejected)
        table = pa.table({"row": pa.array([_dumps(r) for r in rows], pa.string())})
        table = table.replace_schema_metadata({STATS_KEY: _dumps(stats).encode()})
        with atomic_path(self.part_path(index, name, shard)) as tmp:
            pq.write_table(table, tmp, compression="zstd")

    def mark_global_done(self, index: int, name: str, parts: int) -> None:
        write_text_atomic(self.step_dir(index, name) / "_done.json", json.dumps({"parts": parts}))

    # --- reading ------------------------------------------------------------------------
    def has_part(self, index: int, name: str, shard: int) -> bool:
        return self.part_path(index, name, shard).exists()

    def global_parts(self, index: int, name: str) -> int | None:
        done = self.step_dir(index, name) / "_done.json"
        return json.loads(done.read_text())["parts"] if done.exists() else None

    def read_part(self, index: int, name: str, shard: int) -> tuple[list[Row], dict[str, Any]]:
        table = pq.read_table(self.part_path(index, name, shard))
        stats = json.loads((table.schema.metadata or {}).get(STATS_KEY, b"{}"))
        return [json.loads(s) for s in table.column("row").to_pylist()], stats

    def read_rejected(self, index: int, name: str) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.step_dir(index, name, "rejected").glob("part-*.parquet")):
            t = pq.read_table(p).to_pylist()
            for rec in t:
                rec["row"] = json.loads(rec["row"])
                out.append(rec)
        return out

    def all_part_stats(self) -> list[tuple[str, dict[str, Any]]]:
        """(step dir name, stats) for every finished part, for resuming the funnel."""
        out = []
        steps = self.run_dir / "steps"
        if not steps.exists():
            return out
        for d in sorted(steps.iterdir()):
            for p in sorted(d.glob("part-*.parquet")):
                meta = pq.read_schema(p).metadata or {}
                out.append((d.name, json.loads(meta.get(STATS_KEY, b"{}"))))
        return out
