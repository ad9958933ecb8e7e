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


def sample_rows(
    logits: np.ndarray, temperatures: np.ndarray, top_ps: np.ndarray, uniforms: np.ndarray
) -> np.ndarray:
    """Draw one token per row by inverse-CDF sampling with each row's own uniform number.

    `logits` is (rows, vocab) and may hold -inf for forbidden tokens; temperatures must be > 0.
    """
    scaled = logits.astype(np.float64) / temperatures[:, None]
    scaled -= scaled.max(axis=1, keepdims=True)
    probs = np.exp(scaled)
    probs /= probs.sum(axis=1, keepdims=True)
    for r in np.nonzero(top_ps < 1.0)[0]:
        probs[r] = np.where(_nucleus_mask(probs[r], float(top_ps[r])), probs[r], 0.0)
    cdf = np.cumsum(probs, axis=1)
    targets = uniforms * cdf[:, -1]
    out = np.empty(len(logits), dtype=np.int64)
    for r in range(len(logits)):
        # side="right" never picks a zero-probability token (its cdf step is flat).
        out[r] = min(int(np.searchsorted(cdf[r], targets[r], side="right")), logits.shape[1] - 1)
    return out
