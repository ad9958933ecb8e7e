"""LLM-as-judge: pairwise comparison against a baseline, and single-answer rubric grading.

Pairwise (AlpacaEval style, TECHNIQUES §11): the order of the two outputs is randomised per
instruction with a seed and recorded; the preference is continuous, read from the judge's
probabilities of the two labels at the first generated token (normalised over the two), and falls
back to the label parsed from the text when the backend returns no logprobs or neither label is
among the top alternatives. Preferences are reported on AlpacaEval's scale (1 = baseline wins,
2 = model wins) and as `p_model` in [0, 1].
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from synthloom.errors import BadInputError
from synthloom.eval.calls import (
    ask_all,
    first_token_probs,
    render,
    stable_seed,
    user_request,
)
from synthloom.llm.base import ChatRequest, ChatResponse, Model

SYSTEM = "You are a careful, impartial judge of answer quality."


@dataclass(frozen=True)
class PairwiseConfig:
    labels: tuple[str, str] = ("A", "B")
    template: str = "eval_pairwise.j2"
    top_logprobs: int = 10
    max_tokens: int = 4
    temperature: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        a, b = self.labels
        if not a.strip() or a.strip() == b.strip():
            raise BadInputError(f"pairwise labels must be two different non-empty strings, got {self.labels!r}")


def swap_for(instruction: str, seed: int) -> bool:
    """Whether the model's output is shown first for this instruction (seeded, per instruction)."""
    return random.Random(stable_seed("pairwise-order", seed, instruction)).random() < 0.5


def pairwise_request(item: Mapping[str, Any], cfg: PairwiseConfig) -> tuple[ChatRequest, bool]:
    """The judge request for one (instruction, output_1 = baseline, output_2 = model) item."""
    for key in ("instruction", "output_1", "output_2"):
        if key not in item:
            raise BadInputError(f"pairwise item needs {key!r} (output_1 = baseline, output_2 = model)")
    swapped = swap_for(str(item["instruction"]), cfg.seed)
    first, second = (item["output_2"], item["output_1"]) if swapped else (item["output_1"], item["output_2"])
    prompt = render(cfg.template, {"instruction": item["instruction"], "output_a": first, "output_b": second,
                                   "label_a": cfg.labels[0], "label_b": cfg.labels[1]})
    request = user_request(prompt, system=SYSTEM, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                           logprobs=cfg.top_logprobs > 0, top_logprobs=cfg.top_logprobs,
                           seed=stable_seed("pairwise", cfg.seed, item["instruction"]))
    return request, swapped


def parse_label(text: str, labels: tuple[str, str]) -> int | None:
    """0 or 1 for the label the text names first as a standalone word; None if neither."""
    alternatives = "|".join(re.escape(label.strip()) for label in labels)
    m = re.search(rf"(?<![\w])({alternatives})(?![\w])", text)
    if not m:
        return None
    return [label.strip() for label in labels].index(m.group(1))


def pairwise_verdict(response: ChatResponse, swapped: bool, labels: tuple[str, str]) -> dict[str, Any]:
    """Preference of the model over the baseline from one judge response."""
    probs = first_token_probs(response)
    p_first: float | None = None
    source = ""
    if probs is not None:
        pa, pb = probs.get(labels[0].strip(), 0.0), probs.get(labels[1].strip(), 0.0)
        if pa + pb > 0:
            p_first, source = pa / (pa + pb), "logprobs"
    if p_first is None:
        choice = parse_label(response.text, labels)
        if choice is not None:
            p_first, source = (1.0 if choice == 0 else 0.0), "text"
    if p_first is None:
        return {"p_model": None, "preference": None, "preference_source": "none",
                "reject_reason": "unparseable_judgment", "judge_raw": response.text}
    p_model = 1.0 - p_first if not swapped else p_first
    return {"p_model": p_model, "preference": 1.0 + p_model, "preference_source": source,
            "reject_reason": None, "judge_raw": response.text}


async def judge_pairwise(model: Model, items: Sequence[Mapping[str, Any]],
                         cfg: PairwiseConfig = PairwiseConfig()) -> list[dict[str, Any]]:
    """One annotation per item: the item's fields plus swapped, p_model, preference, source, raw."""
    prepared = [pairwise_request(item, cfg) for item in items]
    responses = await ask_all(model, [r for r, _ in prepared])
    out = []
    for i, (item, (_, swapped), resp) in enumerate(zip(items, prepared, responses)):
        row = {"index": item.get("index", i), **dict(item), "swapped": swapped,
               "shown_first": "output_2" if swapped else "output_1", "judge": model.identity}
        if isinstance(resp, BaseException):
            row |= {"p_model": None, "preference": None, "preference_source": "none",
                    "reject_reason": "judge_error", "judge_raw": str(resp)[:300]}
        else:
            row |= pairwise_verdict(resp, swapped, cfg.labels)
        out.append(row)
    return out


# ---- rubric grading ----------------------------------------------------------------------
@dataclass(frozen=True)
class RubricConfig:
    template: str = "eval_rubric.j2"
    max_tokens: int = 12
    temperature: float = 0.0
    seed: int = 0


_RATING_PATTERNS = (r"\[\[\s*(\d{1,2})\s*\]\]", r"(?i)(?:rating|score)\s*[:=]?\s*\[*\s*(\d{1,2})", r"(?<!\d)(\d{1,2})(?!\d)")


def parse_rating(text: str) -> int | None:
    """The 1-10 rating in a judge reply ("Rating: [[7]]", "Score: 7", or a lone number)."""
    for pattern in _RATING_PATTERNS:
        for m in re.finditer(pattern, text):
            value = int(m.group(1))
            if 1 <= value <= 10:
                return value
    return None


def rubric_request(item: Mapping[str, Any], cfg: RubricConfig) -> ChatRequest:
    for key in ("instruction", "output"):
        if key not in item:
            raise BadInputError(f"rubric item needs {key!r}")
    prompt = render(cfg.template, {"instruction": item["instruction"], "output": item["output"]})
    return user_request(prompt, system=SYSTEM, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                        seed=stable_seed("rubric", cfg.seed, item["instruction"], item["output"]))


async def judge_rubric(model: Model, items: Sequence[Mapping[str, Any]],
                       cfg: RubricConfig = RubricConfig()) -> list[dict[str, Any]]:
    """One grade per item: the item's fields plus score (1-10 or None), reject_reason, judge_raw."""
    responses = await ask_all(model, [rubric_request(item, cfg) for item in items])
    out = []
    for item, resp in zip(items, responses):
        if isinstance(resp, BaseException):
            out.append({**dict(item), "score": None, "reject_reason": "judge_error", "judge_raw": str(resp)[:300]})
            continue
        score = parse_rating(resp.text)
        out.append({**dict(item), "score": score, "judge": model.identity,
                    "reject_reason": None if score is not None else "unparseable_rating", "judge_raw": resp.text})
    return out
