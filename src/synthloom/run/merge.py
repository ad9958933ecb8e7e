"""Merge the run directories of a sharded run (`synthloom run --shard I/N`) into one dataset.

Shards are independent runs over disjoint input rows (hashed by content id), e.g. the tasks of a
Slurm array: no Ray, no shared service. Merging checks that the shards belong together (same recipe
fingerprint, seed, input and shard count), that each is finished and none is missing or repeated,
then writes data/ (rows in shard order), rejected/, stats.json with the funnels, usage and cache
counters added up, run.json, the dataset card and report.html. The result depends only on the
shard directories, so merging again gives the same files.

Global steps (dedup, decontamination, diversity) ran within each shard only. `dedup="exact"` or
`"minhash"` (on `column`) removes duplicates across shards while merging, keeping the first in
shard order; rejected rows go to rejected/<nn>-merge_dedup/ and the funnel gets a `merge_dedup`
entry. For decontamination or semantic dedup across shards, run `synthloom decontam` / `dedup`
on the merged data, or use `--executor ray` when a global step must see every row.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from synthloom.errors import BadInputError
from synthloom.io import read_rows, write_jsonl, write_text_atomic
from synthloom.pipeline.checkpoint import Checkpoints
from synthloom.pipeline.step import Rejected

_SAME = ("fingerprint", "seed", "input_sha256", "limit", "recipe")


def _load_shard(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    run_json, stats_json = run_dir / "run.json", run_dir / "stats.json"
    if not run_json.is_file():
        raise BadInputError(f"{run_dir} is not a run directory (no run.json)")
    info = json.loads(run_json.read_text())
    if not info.get("shard"):
        raise BadInputError(f"{run_dir} is not a shard (it was not run with --shard I/N)")
    if not stats_json.is_file():
        raise BadInputError(f"{run_dir}: shard {info['shard'][0]} has not finished (no stats.json); re-run it")
    stats = json.loads(stats_json.read_text())
    if not stats.get("complete"):
        raise BadInputError(f"{run_dir}: shard {info['shard'][0]} stopped early ({stats.get('stop_reason')}); "
                            "re-run it to finish")
    return info, stats


def _check_shards(shards: list[tuple[Path, dict[str, Any], dict[str, Any]]]) -> int:
    first_dir, first, _ = shards[0]
    count = first["shard"][1]
    seen: dict[int, Path] = {}
    for run_dir, info, _ in shards:
        for key in _SAME:
            if info.get(key) != first.get(key):
                raise BadInputError(f"{run_dir} and {first_dir} are not shards of the same run (different {key})")
        index, n = info["shard"]
        if n != count:
            raise BadInputError(f"{run_dir} is shard {index}/{n} but {first_dir} is one of {count}")
        if index in seen:
            raise BadInputError(f"shard {index} given twice: {seen[index]} and {run_dir}")
        seen[index] = run_dir
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise BadInputError(f"missing shard(s) {', '.join(map(str, missing))} of {count}; run them first")
    return count


def _add_funnels(funnels: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    order: list[str] = []
    total: dict[str, dict[str, Any]] = {}
    for funnel in funnels:
        for entry in funnel:
            step = entry["step"]
            if step not in total:
                order.append(step)
                total[step] = {"step": step, "rows_in": 0, "rows_out": 0, "rejected": defaultdict(int),
                               "rejected_total": 0, "seconds": 0.0, "parts": 0}
            t = total[step]
            for key in ("rows_in", "rows_out", "rejected_total", "seconds", "parts"):
                t[key] += entry.get(key, 0)
            for reason, n in entry.get("rejected", {}).items():
                t["rejected"][reason] += n
    for t in total.values():
        t["rejected"] = dict(t["rejected"])
        t["seconds"] = round(t["seconds"], 3)
    return [total[s] for s in order]


def _add_counters(tables: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for table in tables:
        for name, counters in table.items():
            mine = out.setdefault(name, {})
            for key, value in counters.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    mine[key] = mine.get(key, 0) + value
    return out


def _shard_rows(run_dir: Path) -> list[dict[str, Any]]:
    data = run_dir / "data"
    for name in ("train.jsonl", "train.parquet"):
        if (data / name).is_file():
            return read_rows(data / name)
    raise BadInputError(f"{run_dir} has no data/train.jsonl or data/train.parquet")


def _cross_shard_dedup(rows: list[dict[str, Any]], method: str, column: str) -> tuple[list[int], list[Rejected]]:
    """Indices of the rows to keep (first of each duplicate cluster) and the rejections."""
    from synthloom.quality.minhash import MinHashSettings, exact_dedup, minhash_dedup

    if not any(column in r for r in rows):
        raise BadInputError(f"--dedup-column {column!r} is not a column of the merged rows")
    texts = [str(r.get(column) or "") for r in rows]
    if method == "exact":
        result = exact_dedup(texts)
    else:
        result = minhash_dedup(texts, MinHashSettings())
    keep = [i for i, k in enumerate(result.keep) if k]
    reason = "duplicate" if method == "exact" else "near_duplicate"
    first_id = [str(rows[int(c)].get("_meta", {}).get("id", c)) for c in result.cluster]
    rejected = [Rejected(reason, rows[i], f"same {column} as {first_id[i]} (another shard)")
                for i, k in enumerate(result.keep) if not k]
    return keep, rejected


def merge_runs(run_dirs: list[Path], out: Path, overwrite: bool = False,
               dedup: str | None = None, dedup_column: str = "text") -> dict[str, Any]:
    """Merge finished shard run directories into `out`; returns the merged stats."""
    if not run_dirs:
        raise BadInputError("give the shard run directories to merge")
    if dedup not in (None, "exact", "minhash"):
        raise BadInputError(f"--dedup must be exact or minhash, not {dedup!r}")
    shards = [(Path(d), *_load_shard(Path(d))) for d in run_dirs]
    count = _check_shards(shards)
    shards.sort(key=lambda s: s[1]["shard"][0])
    out = Path(out)
    if any(out.resolve() == s[0].resolve() for s in shards):
        raise BadInputError(f"--out {out} is one of the shards; merge into a new directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        if not (out / "run.json").is_file() or "merged_from" not in json.loads((out / "run.json").read_text()):
            raise BadInputError(f"{out} exists and is not a merged run; choose another --out or pass --overwrite")
    for sub in ("data", "rejected"):
        shutil.rmtree(out / sub, ignore_errors=True)

    rows = [row for run_dir, _, _ in shards for row in _shard_rows(run_dir)]
    keep, rejected = list(range(len(rows))), []
    if dedup:
        keep, rejected = _cross_shard_dedup(rows, dedup, dedup_column)
    funnel = _add_funnels([s[2].get("funnel", []) for s in shards])
    if dedup:
        funnel.append({"step": "merge_dedup", "rows_in": len(rows), "rows_out": len(keep),
                       "rejected": {rejected[0].reason: len(rejected)} if rejected else {},
                       "rejected_total": len(rejected), "seconds": 0.0, "parts": 1})
        Checkpoints(out).write_rejected(len(funnel) - 1, "merge_dedup", 0, rejected)
    write_jsonl([rows[i] for i in keep], out / "data" / "train.jsonl")
    tables = [run_dir / "data" / "train.parquet" for run_dir, _, _ in shards]
    if all(t.is_file() for t in tables):
        import pyarrow as pa
        import pyarrow.parquet as pq

        # concatenated as Arrow tables: image columns and the provenance label survive as written
        parts = [pq.read_table(t) for t in tables]
        merged = pa.concat_tables(parts, promote_options="default").replace_schema_metadata(parts[0].schema.metadata)
        pq.write_table(merged.take(keep) if dedup else merged, out / "data" / "train.parquet")
    for run_dir, info, _ in shards:
        for part in sorted((run_dir / "rejected").glob("*/*")):
            target = out / "rejected" / part.parent.name / f"shard-{info['shard'][0]:04d}-{part.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(part, target)

    first_info, first_stats = shards[0][1], shards[0][2]
    stats = {
        "recipe": first_stats.get("recipe"),
        "complete": True,
        "stop_reason": None,
        "rows": len(keep),
        "seed": first_stats.get("seed"),
        "created_at": min(s[2].get("created_at", "") for s in shards),
        "finished_at": max(s[2].get("finished_at", "") for s in shards),
        "wall_seconds": round(max(s[2].get("wall_seconds", 0.0) for s in shards), 3),  # shards run side by side
        "shards": {"finished": count, "total": count, "merged_from": [str(s[0]) for s in shards]},
        "funnel": funnel,
        "usage": _add_counters([s[2].get("usage", {}) for s in shards]),
        "cache": _add_counters([s[2].get("cache", {}) for s in shards]),
        "models": first_stats.get("models", {}),
        "label": first_stats.get("label"),
    }
    write_text_atomic(out / "stats.json", json.dumps(stats, indent=2, ensure_ascii=False))
    info = {key: first_info.get(key) for key in _SAME} | {
        "shards": count, "merged_from": [str(s[0]) for s in shards], "version": first_info.get("version")}
    write_text_atomic(out / "run.json", json.dumps(info, indent=2))
    recipe_yaml = shards[0][0] / "recipe.yaml"
    if recipe_yaml.is_file():
        shutil.copyfile(recipe_yaml, out / "recipe.yaml")
    _write_card_and_report(out, recipe_yaml, stats)
    return stats


def _write_card_and_report(out: Path, recipe_yaml: Path, stats: dict[str, Any]) -> None:
    import yaml

    from synthloom.run.runner import write_report_safely
    from synthloom.report.card import write_card

    config = yaml.safe_load(recipe_yaml.read_text()) if recipe_yaml.is_file() else {}
    recipe = SimpleNamespace(name=stats.get("recipe") or config.get("name", "merged"),
                             description=config.get("description", ""))
    write_card(out, recipe, stats)
    write_report_safely(out)
