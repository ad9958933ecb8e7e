"""Back-translation candidate scoring and the Gamma score (Xu et al. 2022).

For one target sentence y with candidate sources x_1..x_K:

    quality_i    round-trip chrF/BLEU of x_i back to y, or the backward model's length-normalised
                 log p_bt(x_i | y) (the paper's `bt_score`)
    importance_i = (log p_LM(x_i) - log p_bt(x_i | y)) / len(x_i)
    gamma_i      = g * z(importance)_i + (1 - g) * z(quality)_i,   z() within y's candidates

Selection: argmax gamma (Gamma selection) or sampling from softmax(gamma / tau) (Gamma sampling).
The official code samples from softmax(exp(gamma)), a double exponential; that variant is only
used behind `double_exp=True` and is reported as such.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from synthloom.errors import ConfigError


def znorm(values: Sequence[float]) -> list[float]:
    """(v - mean) / std within one candidate list (population std); all 0.0 when std is 0.

    Mixing raw log-probabilities would make the weight meaningless (pitfall i): z-scores put
    quality and importance on one scale per sentence.
    """
    n = len(values)
    if n == 0:
        return []
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    if std < 1e-12:
        return [0.0] * n
    return [(v - mean) / std for v in values]


def importance(lm_logprob: float, bt_logprob: float, length: int) -> float:
    """(log p_LM(x) - log p_bt(x|y)) / len(x): likely under the LM, unlikely under the backward model."""
    if length < 1:
        raise ValueError("candidate length must be >= 1")
    return (lm_logprob - bt_logprob) / length


def gamma_scores(quality: Sequence[float], importance_: Sequence[float], weight: float = 0.2) -> list[float]:
    """weight * z(importance) + (1 - weight) * z(quality), z-normalised within this list."""
    if len(quality) != len(importance_):
        raise ValueError("quality and importance must score the same candidates")
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"gamma weight must be in [0, 1], got {weight}")
    zq, zi = znorm(quality), znorm(importance_)
    return [weight * i + (1.0 - weight) * q for q, i in zip(zq, zi)]


def selection_probs(gammas: Sequence[float], temperature: float = 1.0, double_exp: bool = False) -> list[float]:
    """Gamma-sampling distribution: softmax(g / tau), or the official code's softmax(exp(g))."""
    if not gammas:
        return []
    if double_exp:
        logits = [math.exp(g) for g in gammas]
    else:
        if temperature <= 0:
            raise ConfigError(f"gamma sampling temperature must be > 0, got {temperature}")
        logits = [g / temperature for g in gammas]
    top = max(logits)
    weights = [math.exp(v - top) for v in logits]
    total = sum(weights)
    return [w / total for w in weights]


def select(gammas: Sequence[float], method: str = "top1", seed: int = 0, temperature: float = 1.0,
           double_exp: bool = False) -> int:
    """Index of the chosen candidate: argmax (first on ties) or a seeded Gamma sample."""
    if not gammas:
        raise ValueError("no candidates to select from")
    if method == "top1":
        return max(range(len(gammas)), key=lambda i: (gammas[i], -i))
    if method == "sample":
        probs = selection_probs(gammas, temperature, double_exp)
        u = random.Random(seed).random()
        acc = 0.0
        for i, p in enumerate(probs):
            acc += p
            if u < acc:
                return i
        return len(probs) - 1
    raise ConfigError(f"unknown selection method {method!r}: use top1 or sample")
