"""Longest-common-subsequence lengths, bit-parallel (Allison-Dix / Hyyrö 2004).

For a fixed sequence `a` of length m, keep a bit-vector V (1 = "row not yet used"); for each
symbol y of `b`: U = V & match(y); V = (V + U) | (V - U). Then LCS = m - popcount(V).
One word operation per symbol of `b` instead of m table cells: O(|b| * ceil(m / w)).

Two flavours:
- `lcs_length(a, b)`: one pair, Python big ints (any length).
- `lcs_lengths_vs_many(a, docs)`: one `a` of <= 64 symbols against many sequences at once, in numpy
  uint64 lanes (one lane per doc), looping only over the column index.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

WORD_BITS = 64


def match_masks(a: Sequence[Hashable]) -> dict[Hashable, int]:
    """Bit i of masks[y] is set iff a[i] == y."""
    masks: dict[Hashable, int] = {}
    for i, sym in enumerate(a):
        masks[sym] = masks.get(sym, 0) | (1 << i)
    return masks


def lcs_length_masks(masks: dict[Hashable, int], m: int, b: Sequence[Hashable]) -> int:
    """LCS length of the sequence behind `masks` (length m) and `b`."""
    if m == 0 or not b:
        return 0
    full = (1 << m) - 1
    v = full
    get = masks.get
    for sym in b:
        u = v & get(sym, 0)
        v = ((v + u) | (v - u)) & full
    return m - v.bit_count()


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """LCS length of two sequences (exact, any lengths)."""
    if len(a) < len(b):  # the bit-vector side should be the longer one: fewer loop steps
        a, b = b, a
    return lcs_length_masks(match_masks(a), len(a), b)


def lcs_lengths_vs_many(a: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """LCS length of `a` (int ids, len <= 64) against each row of `docs` (int ids, -1 = padding).

    Padding never matches because `a` holds no negative ids.
    """
    m = len(a)
    if m > WORD_BITS:
        raise ValueError(f"vectorised LCS needs len(a) <= {WORD_BITS}, got {m}")
    n_docs = docs.shape[0]
    if m == 0 or n_docs == 0 or docs.shape[1] == 0:
        return np.zeros(n_docs, dtype=np.int64)
    uniq, inverse = np.unique(a, return_inverse=True)
    masks = np.zeros(len(uniq), dtype=np.uint64)
    np.bitwise_or.at(masks, inverse, np.left_shift(np.uint64(1), np.arange(m, dtype=np.uint64)))
    # Translate every doc symbol into its match mask (0 when the symbol is not in `a`).
    pos = np.searchsorted(uniq, docs)
    pos_clipped = np.minimum(pos, len(uniq) - 1)
    match = np.where(uniq[pos_clipped] == docs, masks[pos_clipped], np.uint64(0))
    full = np.uint64((1 << m) - 1) if m < WORD_BITS else np.uint64(0xFFFFFFFFFFFFFFFF)
    v = np.full(n_docs, full, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(docs.shape[1]):
            u = v & match[:, j]
            v = ((v + u) | (v - u)) & full
    return m - np.bitwise_count(v).astype(np.int64)
