"""Distributed versions of global steps for the Ray executor, with outcomes identical to local.

* `dedup_exact`: hash shuffle. Map tasks key every row of a chunk and partition the keys by hash;
  each reducer finds the first position of every key it owns. A row whose key's first position is
  not its own is a duplicate of that first row, exactly as the sequential scan decides.
* `dedup_minhash`: LSH by band buckets. Map tasks compute signatures and band keys of a chunk; the
  (band, bucket key, position) triples are shuffled by bucket key; each reducer links every member
  of a bucket to the bucket's first position. The driver joins the edges with union-find
  (`connected_first`), so a cluster's id is its smallest position: the local step's choice.

Rows stay where they are (the driver already holds them for checkpoints); only keys and
positions travel. Every other global step has no distributed version and runs as one ordered
stage (see `RayExecutor`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import ray

from synthloom.pipeline.builtins import ExactDedup
from synthloom.run.ray_workers import await_ref
from synthloom.pipeline.step import Rejected, Step
from synthloom.quality.minhash import (
    MinHasher,
    MinHashSettings,
    _text_hashes,
    band_keys,
    connected_first,
)
from synthloom.quality.steps import MinHashDedupStep, _row_id, _texts
from synthloom.text import token_hashes_many
from synthloom.records import META, Row

EXACT_BAND = -1  # the pseudo-band holding whole-text hashes (exact duplicates, empty texts)


def has_distributed_version(step: Step) -> bool:
    return type(step) in (ExactDedup, MinHashDedupStep)


async def _wait(refs: list[Any]) -> list[Any]:
    return list(await asyncio.gather(*(await_ref(r) for r in refs)))


def _chunks(rows: list[Row], size: int) -> list[tuple[int, list[Row]]]:
    size = max(1, size)
    return [(i, rows[i:i + size]) for i in range(0, len(rows), size)]


def _as_parts(result: Any, reducers: int) -> list[Any]:
    return [result] if reducers == 1 else list(result)


# --- exact dedup ---------------------------------------------------------------------------
@ray.remote
def _exact_map(step: ExactDedup, rows: list[Row], offset: int, reducers: int) -> Any:
    parts: list[list[tuple[str, int, str]]] = [[] for _ in range(reducers)]
    for j, row in enumerate(rows):
        key = step.row_key(row)
        parts[int(key[:15], 16) % reducers].append((key, offset + j, row.get(META, {}).get("id", "")))
    return parts[0] if reducers == 1 else tuple(parts)


@ray.remote
def _exact_reduce(*parts: list[tuple[str, int, str]]) -> list[tuple[int, str]]:
    first: dict[str, tuple[int, str]] = {}
    for part in parts:
        for key, pos, rid in part:
            if key not in first or pos < first[key][0]:
                first[key] = (pos, rid)
    return [(pos, first[key][1]) for part in parts for key, pos, _ in part if first[key][0] != pos]


async def exact_dedup_outcomes(step: ExactDedup, rows: list[Row], chunk_size: int, reducers: int) -> list[Any]:
    maps = [_exact_map.options(num_returns=reducers).remote(step, chunk, off, reducers)
            for off, chunk in _chunks(rows, chunk_size)]
    per_map = [_as_parts(m, reducers) for m in maps]
    reduced = await _wait([_exact_reduce.remote(*(p[r] for p in per_map)) for r in range(reducers)])
    dup_of = {pos: first_id for part in reduced for pos, first_id in part}
    return [Rejected("duplicate", row, f"same normalised text as {dup_of[i]}") if i in dup_of else row
            for i, row in enumerate(rows)]


# --- MinHash-LSH dedup ---------------------------------------------------------------------
@ray.remote
def _minhash_map(column: str, settings: MinHashSettings, rows: list[Row], offset: int, reducers: int) -> Any:
    th, lens = token_hashes_many(_texts(rows, column))
    positions = np.arange(offset, offset + len(rows), dtype=np.int64)
    sig, has_tokens = MinHasher(settings.num_perm, settings.ngram, settings.seed,
                                workers=1).signatures_of_token_hashes(th, lens)
    keys = band_keys(sig, settings.bands, settings.rows)  # type: ignore[arg-type]
    active = np.flatnonzero(has_tokens)
    bands = [np.full(len(rows), EXACT_BAND, dtype=np.int64)]
    buckets = [_text_hashes(th, lens)]
    pos = [positions]
    for b in range(keys.shape[1]):  # only texts with tokens take part in LSH, as in minhash_dedup
        bands.append(np.full(len(active), b, dtype=np.int64))
        buckets.append(keys[active, b])
        pos.append(positions[active])
    band, bucket, position = np.concatenate(bands), np.concatenate(buckets), np.concatenate(pos)
    owner = ((bucket ^ band.astype(np.uint64)) % np.uint64(reducers)).astype(np.int64)
    parts = tuple((band[owner == r], bucket[owner == r], position[owner == r]) for r in range(reducers))
    return parts[0] if reducers == 1 else parts


@ray.remote
def _minhash_reduce(*parts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Edges member -> first member of each bucket; separately, each exact group's first position."""
    band = np.concatenate([p[0] for p in parts])
    bucket = np.concatenate([p[1] for p in parts])
    pos = np.concatenate([p[2] for p in parts])
    order = np.lexsort((pos, bucket, band))
    band, bucket, pos = band[order], bucket[order], pos[order]
    starts = np.ones(len(pos), dtype=bool)
    starts[1:] = (band[1:] != band[:-1]) | (bucket[1:] != bucket[:-1])
    first = pos[np.flatnonzero(starts)][np.cumsum(starts) - 1]
    dup = first != pos
    exact = band == EXACT_BAND
    return pos[dup], first[dup], pos[dup & exact], first[dup & exact]


async def minhash_dedup_outcomes(step: MinHashDedupStep, rows: list[Row], chunk_size: int,
                                 reducers: int) -> list[Any]:
    settings = MinHashSettings(step.ngram, step.num_perm, step.threshold, step.bands, step.rows).resolved()
    maps = [_minhash_map.options(num_returns=reducers).remote(step.column, settings, chunk, off, reducers)
            for off, chunk in _chunks(rows, chunk_size)]
    per_map = [_as_parts(m, reducers) for m in maps]
    reduced = await _wait([_minhash_reduce.remote(*(p[r] for p in per_map)) for r in range(reducers)])
    n = len(rows)
    left = np.concatenate([r[0] for r in reduced]) if reduced else np.empty(0, np.int64)
    right = np.concatenate([r[1] for r in reduced]) if reduced else np.empty(0, np.int64)
    cluster = connected_first(n, left, right)
    exact = np.arange(n, dtype=np.int64)
    for r in reduced:
        exact[r[2]] = r[3]
    out: list[Any] = []
    for i, row in enumerate(rows):
        c = int(cluster[i])
        tagged = {**row, step.cluster_column: _row_id(rows[c], c)}
        if c == i:
            out.append(tagged)
        else:
            reason = "duplicate" if exact[i] != i else "near_duplicate"
            out.append(Rejected(reason, tagged, f"same cluster as {_row_id(rows[c], c)}"))
    return out


async def distributed_outcomes(step: Step, rows: list[Row], chunk_size: int, reducers: int) -> list[Any]:
    """The step's outcomes (one per row, in order), computed by a shuffle over Ray tasks."""
    reducers = max(1, reducers)
    if type(step) is ExactDedup:
        return await exact_dedup_outcomes(step, rows, chunk_size, reducers)
    if type(step) is MinHashDedupStep:
        return await minhash_dedup_outcomes(step, rows, chunk_size, reducers)
    raise TypeError(f"step {step.name!r} ({type(step).__name__}) has no distributed version")
