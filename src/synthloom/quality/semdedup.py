"""Semantic dedup: rows whose sentence embeddings have cosine similarity >= threshold are duplicates.

Pairs above the threshold are found by blocked matrix products (memory O(block * n)); rows are then
grouped by connected components (as MinHash clusters are) and the first row of each group is kept.
Paraphrases that share few words still land in one group, which n-gram methods miss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synthloom.errors import BadInputError
from synthloom.quality.embeddings import Embedder, l2_normalize
from synthloom.quality.minhash import DedupResult, connected_first

DEFAULT_COSINE_THRESHOLD = 0.9


def similar_pairs(embeddings: np.ndarray, threshold: float, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j), i < j, with cosine(e_i, e_j) >= threshold (rows must be L2-normalised)."""
    n = embeddings.shape[0]
    left, right = [], []
    for start in range(0, n, block):
        sims = embeddings[start : start + block] @ embeddings.T
        rows, cols = np.nonzero(sims >= threshold)
        rows = rows + start
        upper = cols > rows
        left.append(rows[upper])
        right.append(cols[upper])
    if not left:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(left).astype(np.int64), np.concatenate(right).astype(np.int64)


def semantic_dedup_embeddings(
    embeddings: np.ndarray, threshold: float = DEFAULT_COSINE_THRESHOLD, model: str = ""
) -> DedupResult:
    if not -1.0 <= threshold <= 1.0:
        raise BadInputError(f"cosine threshold must be in [-1, 1], got {threshold}")
    emb = l2_normalize(np.asarray(embeddings, dtype=np.float32))
    left, right = similar_pairs(emb, threshold)
    cluster = connected_first(len(emb), left, right)
    settings = {"cosine_threshold": threshold, "embedding_model": model, "grouping": "connected components, keep first"}
    return DedupResult(cluster == np.arange(len(emb)), cluster, "semantic", settings)


def semantic_dedup(texts: Sequence[str], embedder: Embedder, threshold: float = DEFAULT_COSINE_THRESHOLD) -> DedupResult:
    """Embed `texts` and group rows with cosine >= threshold; keeps the first row of each group."""
    return semantic_dedup_embeddings(embedder.encode(list(texts)), threshold, embedder.name)
