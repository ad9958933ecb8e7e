"""Per-sequence token sampling for the embedded engine, vectorised over the batch with numpy.

Each sequence owns its random generator (seeded from the request seed and the sample index), so a
sequence's draws never depend on which other sequences share the batch. Logits processors (for
example a green-list watermark) run per sequence on a private copy of its logits row, before
temperature, top-p and the grammar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# A logits processor edits one sequence's logits in place. `tokens` is the full context so far
# (prompt + generated, read-only by convention); `tokens[-1]` is the previous token.
LogitsProcessor = Callable[[Sequence[int], np.ndarray], None]

# Top-p first looks for the nucleus among this many best tokens (exact whenever their mass
# reaches top_p, which it almost always does); only otherwise it sorts the whole vocabulary.
_TOP_P_CANDIDATES = 1024


@dataclass(slots=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 1.0
    logprobs: bool = False
    top_logprobs: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def make_rng(seed: int | None, sample_index: int) -> np.random.Generator:
    """The generator of one sample: a fixed seed gives the same stream on every run and layout."""
    if seed is None:
        return np.random.default_rng()
    # SeedSequence mixes (seed, sample) so sample i of seed s never equals sample 0 of seed s+i.
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed & (2**63 - 1), sample_index])))


def log_softmax(rows: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (stable, and exact enough for soft labels)."""
    x = rows.astype(np.float64, copy=False)
    m = x.max(axis=-1, keepdims=True)
    shifted = x - m
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def top_k_indices(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, best first."""
    k = min(k, row.shape[-1])
    part = np.argpartition(row, -k)[-k:]
    return part[np.argsort(row[part])[::-1]]


def _nucleus_mask(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Boolean mask of the smallest set of best tokens whose mass reaches top_p (normalised probs)."""
    cand = top_k_indices(probs, _TOP_P_CANDIDATES)
    cum = np.cumsum(probs[cand])
    if cum[-1] < top_p and cand.size < probs.size:
        cand = np.argsort(probs)[::-1]
        cum = np.cumsum(probs[cand])
    keep = int(np.searchsorted(cum, top_p, side="left")) + 1
    mask = np.zeros(probs.shape, dtype=bool)
    mask[cand[: min(keep, cand.size)]] = True
    return mask


# The inverse-CDF search first finds the block of this many token ids holding the target mass,
# then scans inside it: a vocabulary-long cumulative sum per row was most of the sampling time.
_CDF_BLOCK = 256


def sample_rows(
    logits: np.ndarray, temperatures: np.ndarray, top_ps: np.ndarray, uniforms: np.ndarray
) -> np.ndarray:
    """Draw one token per row by inverse-CDF sampling with each row's own uniform number.

    `logits` is (rows, vocab) and may hold -inf for forbidden tokens; temperatures must be > 0.
    The CDF runs over token ids in ascending order and every operation is row-wise, so a row's
    pick depends only on its own logits, temperature, top_p and uniform number.
    """
    rows, vocab = logits.shape
    scaled = logits.astype(np.float32)  # a private copy: the exp happens in place
    scaled -= scaled.max(axis=1, keepdims=True)
    scaled *= (1.0 / temperatures).astype(np.float32)[:, None]
    probs = np.exp(scaled, out=scaled)  # float32: ~4x faster than float64, ample for a draw
    for r in np.nonzero(top_ps < 1.0)[0]:
        row = probs[r]
        row[~_nucleus_mask(row / row.sum(dtype=np.float64), float(top_ps[r]))] = 0.0
    pad = -vocab % _CDF_BLOCK
    blocks = np.pad(probs, ((0, 0), (0, pad))).reshape(rows, -1, _CDF_BLOCK) if pad else probs.reshape(rows, -1, _CDF_BLOCK)
    block_cdf = np.cumsum(blocks.sum(axis=2, dtype=np.float64), axis=1)
    targets = uniforms * block_cdf[:, -1]
    out = np.empty(rows, dtype=np.int64)
    for r in range(rows):
        # side="right" never lands on a zero-mass block or token (its cdf step is flat).
        b = min(int(np.searchsorted(block_cdf[r], targets[r], side="right")), block_cdf.shape[1] - 1)
        below = block_cdf[r, b - 1] if b else 0.0
        inner = np.cumsum(blocks[r, b], dtype=np.float64) + below
        t = min(int(np.searchsorted(inner, targets[r], side="right")), _CDF_BLOCK - 1)
        while blocks[r, b, t] == 0.0 and t > 0:  # rounding put the target past the last live token
            t -= 1
        out[r] = min(b * _CDF_BLOCK + t, vocab - 1)
    return out
