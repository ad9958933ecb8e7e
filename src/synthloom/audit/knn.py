"""Blocked nearest-neighbour distances on L2-normalised embeddings (no n x n matrix in memory).

On unit vectors ||a - b||^2 = 2 - 2 a.b, so every distance comes from one matrix product per block.
"""

from __future__ import annotations

import numpy as np

BLOCK = 2048


def _sq_dist(q: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(2.0 - 2.0 * (q @ c.T), 0.0)


def kth_neighbour_distances(queries: np.ndarray, corpus: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    """Euclidean distance from each query to its 1st..k-th nearest corpus rows: shape (q, k), ascending.

    With `exclude_self` (queries *is* the corpus) each row's own entry is skipped, so a duplicate
    elsewhere in the set still counts as distance 0.
    """
    k_eff = min(k + (1 if exclude_self else 0), corpus.shape[0])
    out = np.empty((queries.shape[0], k_eff), dtype=np.float32)
    for start in range(0, queries.shape[0], BLOCK):
        d2 = _sq_dist(queries[start:start + BLOCK], corpus)
        if exclude_self:
            rows = np.arange(d2.shape[0])
            d2[rows, start + rows] = np.inf
        part = np.partition(d2, k_eff - 1, axis=1)[:, :k_eff]
        out[start:start + BLOCK] = np.sort(part, axis=1)
    out = np.sqrt(out)
    return out[:, :k] if exclude_self else out


def nearest(queries: np.ndarray, corpus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and Euclidean distance of each query's nearest corpus row."""
    idx = np.empty(queries.shape[0], dtype=np.int64)
    dist = np.empty(queries.shape[0], dtype=np.float32)
    for start in range(0, queries.shape[0], BLOCK):
        d2 = _sq_dist(queries[start:start + BLOCK], corpus)
        j = np.argmin(d2, axis=1)
        idx[start:start + BLOCK] = j
        dist[start:start + BLOCK] = np.sqrt(d2[np.arange(len(j)), j])
    return idx, dist


def inside_any_ball(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Whether each query lies within radius[j] of some centre j (Kynkäänniemi et al.'s manifold test)."""
    r2 = (radii.astype(np.float32) ** 2)[None, :] + 1e-6
    hit = np.zeros(queries.shape[0], dtype=bool)
    for start in range(0, queries.shape[0], BLOCK):
        hit[start:start + BLOCK] = (_sq_dist(queries[start:start + BLOCK], centres) <= r2).any(axis=1)
    return hit
