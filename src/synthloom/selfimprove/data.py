"""Math problem sets, the prompt the model sees, and SFT examples (prompt, completion).

One prompt format is shared by training, sampling and evaluation, so what the model learns is what
it is asked. Held-out problems come from a different generator seed, and any question that also
appears in the training pool is removed from the pool (no leakage by text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INSTRUCTION = "Solve the problem. End with: The answer is <number>."
HINT = "Hint: the correct answer is {answer}."


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str
    solution: str = ""  # the generator's verified reference solution (used by scale studies)


@dataclass(frozen=True)
class Example:
    """One supervised example: the model is trained on `completion` given `prompt`."""

    prompt: str
    completion: str
    problem_id: str = ""
    source: str = ""  # "sample" | "rationalised" | "reference"


def user_prompt(question: str, hint: str | None = None) -> str:
    """The user turn. The STaR hint is only ever part of a *generation* prompt, never a training one."""
    parts = [question]
    if hint:
        parts.append(HINT.format(answer=hint))
    parts.append(INSTRUCTION)
    return "\n".join(parts)


def problem_sets(n_train: int, n_heldout: int, seed: int = 0, max_depth: int = 1,
                 families: list[str] | None = None) -> tuple[list[Problem], list[Problem]]:
    """(train pool, held-out set) of symbolic word problems; depth 1 = one-step, small integers."""
    from synthloom.mathgen import WORD_FAMILIES, generate_problems

    fams = families or list(WORD_FAMILIES)
    heldout = _convert(generate_problems(n_heldout, seed=seed + 10_000, families=fams, min_depth=1,
                                         max_depth=max_depth), "h")
    seen = {p.question for p in heldout}
    # draw extra so the pool still has n_train problems after removing held-out overlaps
    raw = generate_problems(n_train + n_heldout, seed=seed, families=fams, min_depth=1, max_depth=max_depth)
    train = [p for p in _convert(raw, "t") if p.question not in seen][:n_train]
    return train, heldout


def _convert(raw: list[dict[str, Any]], prefix: str) -> list[Problem]:
    return [Problem(id=f"{prefix}{i}", question=p["question"], answer=str(p["answer"]), solution=p["solution"])
            for i, p in enumerate(raw)]


def reference_examples(problems: list[Problem]) -> list[Example]:
    """The generator's own verified solutions as SFT data (synthetic data with no model in the loop)."""
    return [Example(user_prompt(p.question), p.solution, p.id, "reference") for p in problems]
