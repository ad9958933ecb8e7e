"""Math problem sets, the prompt the model sees, and SFT examples (prompt, completion).

One prompt format is shared by training, sampling and evaluation, so what the model learns is what
it is asked. The held-out set is disjoint from training *by construction*: no training problem
shares a masked template (`skeleton`) or a (family, equations, numbers) `signature` with any
held-out problem, and whole templates are held out, so held-out accuracy measures more than
renaming. `people_heldout()` loads a second held-out set written by people for this project.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from synthloom.errors import BadInputError

INSTRUCTION = "Solve the problem. End with: The answer is <number>."
HINT = "Hint: the correct answer is {answer}."
# every TEMPLATE_STRIDE-th template of each family (in order of first appearance) is held out
TEMPLATE_STRIDE = 3
PEOPLE_FILE = "data/people_heldout.jsonl"


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str
    solution: str = ""  # the generator's verified reference solution (used by scale studies)
    family: str = ""
    signature: str = ""  # family | unknown | premise equations (with their numbers); "" if unknown


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


# ------------------------------------------------------------------------------------- templates

_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                 "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty "
                 "ninety hundred thousand million half halves third thirds quarter quarters double triple")
_NUMBER = re.compile(r"\d+(?:[.,/]\d+)*|\b(?:" + "|".join(_NUMBER_WORDS.split()) + r")\b", re.IGNORECASE)
_TWICE = re.compile(r"\btwice\b", re.IGNORECASE)
_FUNCTION_WORDS = frozenset(
    "a an the in on at of for to from by with after before during when while if then each every all some "
    "how what which who whom whose where why there here this that these those it its he she they we you his "
    "her their our your my one two three four five six seven eight nine ten half twice out over under "
    "last first next finally and but so because both".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+|\n)\s*$")


def _generator_names() -> frozenset[str]:
    from synthloom.mathgen.families import NAMES

    return frozenset(NAMES)


def _names(text: str) -> set[str]:
    """Entity names: the generator's names; a capitalised word inside a sentence; a capitalised word
    opening a sentence unless it is a function word or also appears in lower case (so "Ann has 3
    pens." masks Ann, but "Pencils are sold ... 30 pencils" keeps pencils). Errs towards masking,
    the safe side for a disjointness test."""
    lower = {w for w in _WORD.findall(text) if w.islower()}
    found = set()
    for match in _WORD.finditer(text):
        word = match.group().removesuffix("'s")
        if word in _generator_names():
            found.add(word)
        elif not word[0].isupper() or word == "I":
            continue
        elif not _SENTENCE_START.search(text[: match.start()]) or (
                word.lower() not in _FUNCTION_WORDS and word.lower() not in lower):
            found.add(word)
    return found


def skeleton(question: str) -> str:
    """The masked template of a question: entity names -> <name>, numbers (digits or words) -> <n>,
    case and whitespace normalised. Two questions with one skeleton differ only in names/numbers."""
    text = question
    names = _names(text)
    if names:
        text = re.sub(r"\b(?:" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")\b",
                      "<name>", text, flags=re.IGNORECASE)
    text = _TWICE.sub("<n> times", text)  # "twice" = "two times": one template, not two
    text = _NUMBER.sub("<n>", text)
    return " ".join(text.lower().split())


def signature(problem: dict[str, Any]) -> str:
    """(family, unknown, premise equations with their numbers) of a generator problem: equal for
    problems that are one problem up to names, items and wording."""
    from synthloom.mathgen.generator import dedup_key

    return dedup_key(problem, "structure")


class Guard:
    """The skeletons and signatures of a reference set (e.g. the held-out set), computed once."""

    def __init__(self, reference: Iterable[Problem]) -> None:
        reference = list(reference)
        self.skeletons = {skeleton(p.question) for p in reference}
        self.signatures = {p.signature for p in reference if p.signature}

    def admits(self, problem: Problem) -> bool:
        """True iff the problem shares neither a skeleton nor a (non-empty) signature with the reference."""
        return (skeleton(problem.question) not in self.skeletons
                and not (problem.signature and problem.signature in self.signatures))


def disjoint(candidates: Iterable[Problem], reference: Iterable[Problem]) -> list[Problem]:
    """The candidates that share neither a skeleton nor a signature with any reference problem."""
    guard = Guard(reference)
    return [p for p in candidates if guard.admits(p)]


def template_diversity(problems: Iterable[Problem]) -> dict[str, Any]:
    """Distinct masked skeletons of a problem set, overall and per family (the surface-form
    diversity the training data offers; few skeletons = the model can learn templates)."""
    problems = list(problems)
    per_family: dict[str, set[str]] = {}
    for p in problems:
        per_family.setdefault(p.family or "?", set()).add(skeleton(p.question))
    return {"problems": len(problems), "skeletons": len({skeleton(p.question) for p in problems}),
            "per_family": {f: len(s) for f, s in sorted(per_family.items())}}


# ------------------------------------------------------------------------------------- problem sets

def problem_sets(n_train: int, n_heldout: int, seed: int = 0, max_depth: int = 1,
                 families: list[str] | None = None) -> tuple[list[Problem], list[Problem]]:
    """(train pool, held-out set) of symbolic word problems; depth 1 = one-step, small integers.

    Held-out: from generator seed + 10 000, only problems whose template is a held-out template
    (every `TEMPLATE_STRIDE`-th template of its family), taken round-robin over families. Train:
    the generator stream of `seed` minus every problem that shares a skeleton or a signature with a
    held-out problem. The held-out set does not depend on n_train; the pool is nested in n_train.
    """
    from synthloom.mathgen import WORD_FAMILIES, iter_problems

    fams = families or list(WORD_FAMILIES)
    heldout = _heldout(n_heldout, seed + 10_000, fams, max_depth)
    guard, train = Guard(heldout), []
    stream = iter_problems(None, seed=seed, families=fams, min_depth=1, max_depth=max_depth)
    index = 0
    while len(train) < n_train:
        if index > 20 * (n_train + 10):
            raise BadInputError(f"only {len(train)} training problems are disjoint from the held-out set; "
                                "use more families or a smaller n_train")
        problem = _convert(next(stream), f"t{index}")
        if guard.admits(problem):
            train.append(problem)
        index += 1
    return train, heldout


def _heldout(n: int, seed: int, families: list[str], max_depth: int) -> list[Problem]:
    from synthloom.mathgen import iter_problems

    order: dict[str, dict[str, int]] = {f: {} for f in families}  # family -> skeleton -> first-seen rank
    queues: dict[str, list[Problem]] = {f: [] for f in families}
    picked: list[Problem] = []
    stream = iter_problems(None, seed=seed, families=families, min_depth=1, max_depth=max_depth)
    for index, raw in enumerate(stream):
        if len(picked) >= n or index > 200 * (n + 10):
            break
        ranks = order[raw["family"]]
        rank = ranks.setdefault(skeleton(raw["question"]), len(ranks))
        if rank % TEMPLATE_STRIDE == 0:
            queues[raw["family"]].append(_convert(raw, f"h{index}"))
        # round robin: take one per family once every family has one waiting
        if all(queues[f] for f in families):
            picked += [queues[f].pop(0) for f in families][: n - len(picked)]
    if len(picked) < n:  # a family without held-out templates: fill from the others, in stream order
        rest = sorted((p for q in queues.values() for p in q), key=lambda p: int(p.id[1:]))
        picked += rest[: n - len(picked)]
    return picked


def _convert(raw: dict[str, Any], pid: str) -> Problem:
    return Problem(id=pid, question=raw["question"], answer=str(raw["answer"]), solution=raw["solution"],
                   family=raw["family"], signature=signature(raw))


def reference_examples(problems: list[Problem]) -> list[Example]:
    """The generator's own verified solutions as SFT data (synthetic data with no model in the loop)."""
    return [Example(user_prompt(p.question), p.solution, p.id, "reference") for p in problems]


# ------------------------------------------------------------------------------------- people-written set

def people_records() -> list[dict[str, Any]]:
    """The people-written held-out set as stored: {id, question, answer, steps, tags, solution}."""
    text = resources.files("synthloom.selfimprove").joinpath(PEOPLE_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def people_heldout() -> list[Problem]:
    """Word problems written by people for this project, never used for training or prompt tuning."""
    return [Problem(id=r["id"], question=r["question"], answer=str(r["answer"]), family="people")
            for r in people_records()]

