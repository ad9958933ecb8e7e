"""RL-CAI soft preference labels: P("(A)") vs P("(B)") from token logprobs, with the fallbacks.

The feedback model answers a multiple-choice question. The soft label is the probability mass of
label A over A + B at the token that carries the answer letter, read from that token's
`top_logprobs` (tokenisers split "(A)" differently: SmolLM2 emits "(", "A", ")", so the answer
token is the first one whose text, stripped of brackets and spaces, is a label; for chain of
thought it is the letter after the last "answer is" / "(X)"). Backends without logprobs fall back
to voting over repeated samples. Chain-of-thought probabilities are near 0 or 1 and are clamped to
[0.4, 0.6] (Bai et al. 2022).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from synthloom.llm.base import TokenLogprob
from synthloom.llm.constrained import ChoiceReading, strict_label

LABELS = ("A", "B")
COT_CLAMP = (0.4, 0.6)
_STRIP = " \t\n()[].,;:!*\"'"
_COT_ANSWER = re.compile(r"answer\s+is\W{0,6}\(?\s*([AB])\b", re.IGNORECASE)
_ANY_LABEL = re.compile(r"\(\s*([AB])\s*\)")
# a bare letter counts only when nothing follows it ("A", "B."), so the article in "A cat" does not
_BARE_LABEL = re.compile(r"(?<![\w])([AB])(?=\s*(?:$|[).,:;!]))")


def token_label(text: str) -> str | None:
    """'A' or 'B' when a token's text is just that label (with brackets/spaces), else None."""
    core = text.strip(_STRIP)
    return core if core in LABELS else None


def answer_char(text: str, cot: bool) -> int | None:
    """Character offset of the answer letter in the feedback text, or None when there is none."""
    if cot:
        matches = list(_COT_ANSWER.finditer(text)) or list(_ANY_LABEL.finditer(text))
        return matches[-1].start(1) if matches else None
    m = _ANY_LABEL.search(text) or _BARE_LABEL.search(text)
    return m.start(1) if m else None


def parse_choice(text: str, cot: bool = False) -> str | None:
    """The label a feedback text chooses ('A' / 'B'), or None.

    Without chain of thought the answer must be a lone label ("A", "(B)"): anything else is no vote.
    With chain of thought only the final "The answer is (X)" counts, never a label mentioned in the
    reasoning.
    """
    if not cot:
        return strict_label(text, LABELS)
    matches = list(_COT_ANSWER.finditer(text))
    return matches[-1].group(1).upper() if matches else None


def answer_token_index(tokens: Sequence[TokenLogprob], cot: bool) -> int | None:
    """Index of the token that carries the answer letter (found in the tokens' own text)."""
    joined = "".join(t.token for t in tokens)
    pos = answer_char(joined, cot)
    if pos is None:
        return None
    offset = 0
    for i, t in enumerate(tokens):
        if offset <= pos < offset + len(t.token):
            return i if token_label(t.token) is not None else None
        offset += len(t.token)
    return None


def label_mass(token: TokenLogprob) -> tuple[float, float]:
    """Probability mass of labels A and B among one position's alternatives (summing variants)."""
    mass = {"A": 0.0, "B": 0.0}
    alternatives = token.top or [(token.token, token.logprob)]
    for text, logprob in alternatives:
        label = token_label(text)
        if label is not None:
            mass[label] += math.exp(logprob)
    return mass["A"], mass["B"]


@dataclass(frozen=True, slots=True)
class SoftLabel:
    p_a: float  # P(option A is the better reply), after any clamping
    source: str  # "logprobs" | "votes"
    detail: str = ""


def soft_label_from_logprobs(tokens: Sequence[TokenLogprob] | None, cot: bool = False) -> SoftLabel | None:
    """P(A) normalised over A and B at the answer token; None when it cannot be read.

    None when there are no logprobs, no answer letter, or only one of the labels appears among
    the alternatives (then the probability is not soft: the caller should vote instead).
    """
    if not tokens:
        return None
    i = answer_token_index(tokens, cot)
    if i is None:
        return None
    pa, pb = label_mass(tokens[i])
    if pa <= 0 or pb <= 0:
        return None
    p = pa / (pa + pb)
    return SoftLabel(clamp(p) if cot else p, "logprobs", f"P(A)={pa:.4g} P(B)={pb:.4g} at token {i}")


def soft_label_from_choice(reading: ChoiceReading) -> SoftLabel | None:
    """P(A) from a constrained choice, read at the label position; None when the answer was no lone
    label or only one label had probability there (then the caller votes)."""
    pa, pb = reading.probs.get("A", 0.0), reading.probs.get("B", 0.0)
    if reading.label is None or pa <= 0 or pb <= 0:
        return None
    return SoftLabel(pa / (pa + pb), "logprobs", f"P(A)={pa:.4g} P(B)={pb:.4g} at the label ({reading.preference_source})")


def soft_label_from_votes(texts: Sequence[str], cot: bool = False) -> SoftLabel | None:
    """P(A) as the share of samples choosing A among those that chose a label; None if none did."""
    votes = [parse_choice(t, cot) for t in texts]
    a, b = votes.count("A"), votes.count("B")
    if a + b == 0:
        return None
    p = a / (a + b)
    return SoftLabel(clamp(p) if cot else p, "votes", f"{a} A / {b} B of {len(texts)} samples")


def clamp(p: float, bounds: tuple[float, float] = COT_CLAMP) -> float:
    """Clamp a chain-of-thought probability into [0.4, 0.6]."""
    lo, hi = bounds
    return min(hi, max(lo, p))
