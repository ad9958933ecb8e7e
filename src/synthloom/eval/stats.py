"""Small statistics used by the evaluation reports."""

from __future__ import annotations

import math

from synthloom.errors import BadInputError


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved at 0 and n, unlike Wald)."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise BadInputError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return (0.0, 1.0)
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 (or n) successes the bound is exactly 0 (or 1) in theory; computed, it leaves a rounding
    # residue such as 5.6e-17 that reports would print, so the ends are pinned.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)
