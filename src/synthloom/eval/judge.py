"""LLM-as-judge: pairwise comparison against a baseline, and single-answer rubric grading.

Pairwise (AlpacaEval, Dubois et al. 2024): the order of the two outputs is randomised per
instruction with a seed and recorded. The judge is asked a constrained choice between the two
labels (llm/constrained.py), so its answer is a label and nothing else; the preference is
continuous, read from the probabilities of the labels at the position where the label was
generated (normalised over the two), and is the bare label (0 or 1) when the backend returns no
log-probabilities. An answer that is not a lone label is unknown, never a vote. Preferences are
reported on AlpacaEval's scale (1 = baseline wins, 2 = model wins) and as `p_model` in [0, 1].

Rubric grading (MT-Bench style single-answer grading, Zheng et al. 2023) asks a constrained choice
among the integers 1-10.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from synthloom.errors import BadInputError
from synthloom.eval.calls import ask_all, render, stable_seed
from synthloom.llm.base import ChatRequest, ChatResponse, Model
from synthloom.llm.constrained import choice_request, read_choice

SYSTEM = "You are a careful, impartial judge of answer quality."


@dataclass(frozen=True)
class PairwiseConfig:
    labels: tuple[str, str] = ("A", "B")
    template: str = "eval_pairwise.j2"
    top_logprobs: int = 10
    max_tokens: int = 16  # room for a server's JSON-wrapped label ({"label": "A"})
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
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    request = choice_request(messages, [label.strip() for label in cfg.labels], top_logprobs=cfg.top_logprobs,
                             max_tokens=cfg.max_tokens, seed=stable_seed("pairwise", cfg.seed, item["instruction"]))
    return request, swapped


def pairwise_verdict(response: ChatResponse, swapped: bool, labels: tuple[str, str]) -> dict[str, Any]:
    """Preference of the model over the baseline from one constrained judge answer."""
    first, second = (label.strip() for label in labels)
    reading = read_choice(response, [first, second])
    if reading.label is None:
        return {"p_model": None, "preference": None, "preference_source": "none",
                "reject_reason": "judge_unknown", "judge_raw": response.text}
    p_first = reading.probs[first] if reading.probs else (1.0 if reading.label == first else 0.0)
    p_model = 1.0 - p_first if not swapped else p_first
    return {"p_model": p_model, "preference": 1.0 + p_model, "preference_source": reading.preference_source,
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
RATINGS = tuple(str(i) for i in range(1, 11))


@dataclass(frozen=True)
class RubricConfig:
    template: str = "eval_rubric.j2"
    max_tokens: int = 16
    top_logprobs: int = 0
    seed: int = 0


def rubric_score(response: ChatResponse) -> int | None:
    """The 1-10 rating of a constrained rubric answer; None when the answer is not a lone rating."""
    label = read_choice(response, RATINGS).label
    return int(label) if label is not None else None


def rubric_request(item: Mapping[str, Any], cfg: RubricConfig) -> ChatRequest:
    for key in ("instruction", "output"):
        if key not in item:
            raise BadInputError(f"rubric item needs {key!r}")
    prompt = render(cfg.template, {"instruction": item["instruction"], "output": item["output"]})
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    return choice_request(messages, RATINGS, top_logprobs=cfg.top_logprobs, max_tokens=cfg.max_tokens,
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
        score = rubric_score(resp)
        out.append({**dict(item), "score": score, "judge": model.identity,
                    "reject_reason": None if score is not None else "judge_unknown", "judge_raw": resp.text})
    return out
