"""The symbolic problem generator: sample a world, deduce, pick a deep conclusion, trace it back.

Per problem: a family samples hidden values and true premises; the engine derives everything
derivable with parent pointers; the generator asks about a derived quantity as deep as the requested
depth allows; `shave` traces it back to an irreducible premise subset; the question states only
those premises (plus, with probability `distractor_rate`, one unused premise that is kept in the text
and listed under ``distractors``); the solution has one line per derived fact.

Reproducible: problem i depends only on (seed, i) and the questions before it (for dedup), so the
first k problems of a run with seed s are the same whatever n is.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, Literal

from synthloom.errors import BadInputError
from synthloom.mathgen.builder import Builder
from synthloom.mathgen.engine import Closure, Proof, deduce, shave
from synthloom.mathgen.families import FAMILIES, FAMILY_MAX_DEPTH
from synthloom.mathgen.numbers import format_number
from synthloom.mathgen.relations import Quantity, Relation, equation_text
from synthloom.mathgen.render import step_line

Dedup = Literal["question", "structure"]
MAX_ATTEMPTS = 40
DEPTH_LIMIT = 8


def relation_formula(relation: Relation, quantities: dict[str, Quantity]) -> str:
    """A premise as an equation over quantity labels (for metadata and implicit premises)."""

    def label(variable: str) -> str:
        return quantities[variable].label or variable

    names = [label(v) for v in relation.variables]
    if relation.kind == "given":
        return f"{names[0]} = {quantities[relation.variables[0]].format(relation.constant)}"
    if relation.kind == "product":
        return f"{names[0]} = {names[1]} × {names[2]}"
    if relation.kind == "quotient":
        return f"{names[0]} = {names[1]} / {names[2]}"
    if relation.kind == "quadratic":
        a, b, c = (format_number(k) for k in relation.coefficients)
        return f"{a}·{names[0]}^2 + {b}·{names[0]} + {c} = 0, {names[0]} > 0"
    if relation.form == "sum":
        return f"{names[0]} = {' + '.join(names[1:])}"
    if relation.form == "diff":
        return f"{names[0]} = {names[1]} - {names[2]}"
    terms = ""
    for k, name in zip(relation.coefficients, names):
        factor = "" if abs(k) == 1 else f"{format_number(abs(k))}·"
        sign = ("-" if k < 0 else "") if not terms else (" - " if k < 0 else " + ")
        terms += f"{sign}{factor}{name}"
    return f"{terms} = {format_number(relation.constant)}"


def _premise_text(relation: Relation, quantities: dict[str, Quantity]) -> str:
    return relation.text or relation_formula(relation, quantities)


def _pick_target(
    world: Builder,
    closure: Closure,
    requested: int,
    min_depth: int,
    max_depth: int,
    rng: random.Random,
) -> str | None:
    """A derived (not given) quantity, as deep as possible but not deeper than requested."""
    given = {r.variables[0] for r in world.relations if r.kind == "given"}
    candidates = []
    for fact in closure.facts.values():
        if fact.value != world.values[fact.variable]:
            return None  # would mean a non-unique premise set: never ask about such a world
        if fact.variable not in given and min_depth <= fact.depth <= max_depth:
            candidates.append(fact)
    if not candidates:
        return None
    within = [f for f in candidates if f.depth <= requested] or candidates
    deepest = (
        max(f.depth for f in within)
        if any(f.depth <= requested for f in candidates)
        else min(f.depth for f in candidates)
    )
    return rng.choice(sorted(f.variable for f in within if f.depth == deepest))


def _choose_distractor(
    world: Builder, proof: Proof, rng: random.Random, distractor_rate: float
) -> Relation | None:
    """One unused, stated premise that leaves the proof depth unchanged, or None."""
    if rng.random() >= distractor_rate:
        return None
    used = set(proof.premise_ids)
    unused = [r for r in world.relations if r.id not in used and r.text and r.kind != "given"]
    if not unused:
        return None
    distractor = rng.choice(unused)
    with_it = [r for r in world.relations if r.id in used or r.id == distractor.id]
    facts = deduce(with_it).facts
    if proof.target not in facts or facts[proof.target].depth != proof.depth:
        return None  # it would open a shorter route: not a distractor
    return distractor


def _render(
    world: Builder,
    proof: Proof,
    distractor: Relation | None,
    family: str,
    seed: int,
    index: int,
) -> dict[str, Any]:
    quantities, values = world.quantities, world.values
    premises = {r.id: r for r in world.relations}
    used = set(proof.premise_ids)
    stated = [r for r in world.relations if (r.id in used or r is distractor) and r.text]
    target = quantities[proof.target]
    question = " ".join([r.text for r in stated] + [target.question])
    lines = [
        step_line(fact, premises, quantities, values)
        for fact in proof.steps
        if fact.rule != "given"
    ]
    answer = format_number(values[proof.target])
    lines.append(f"The answer is {answer}.")
    # Dependency difference (AlphaGeometry's auxiliary constructions): used premises that mention
    # neither the unknown nor any fact its final step reads directly.
    direct = {proof.target, *proof.steps[-1].parents}
    aux = [
        _premise_text(premises[i], quantities)
        for i in proof.premise_ids
        if not direct.intersection(premises[i].variables)
    ]
    return {
        "question": question,
        "solution": "\n".join(lines),
        "answer": answer,
        "depth": proof.depth,
        "premises_used": [_premise_text(premises[i], quantities) for i in proof.premise_ids],
        "distractors": [distractor.text] if distractor is not None else [],
        "aux": aux,
        "proof": [
            {
                "fact": f"{quantities[f.variable].label or f.variable} = {format_number(f.value)}",
                "rule": f.rule,
                "premises": list(f.premises),
                "parents": list(f.parents),
            }
            for f in proof.steps
        ],
        "equations": [equation_text(premises[i]) for i in proof.premise_ids],
        "unknown": proof.target,
        "family": family,
        "seed": seed,
        "index": index,
    }


def build_problem(
    family: str,
    requested_depth: int,
    rng: random.Random,
    min_depth: int = 1,
    max_depth: int = 6,
    distractor_rate: float = 0.0,
    seed: int = 0,
    index: int = 0,
) -> dict[str, Any] | None:
    """One problem from one world draw, or None if the draw gave no suitable conclusion."""
    world = FAMILIES[family](rng, requested_depth)
    if world is None:
        return None
    closure = deduce(world.relations, max_depth=DEPTH_LIMIT)
    target = _pick_target(world, closure, requested_depth, min_depth, max_depth, rng)
    if target is None:
        return None
    proof = shave(world.relations, target, closure)
    if not (min_depth <= proof.depth <= max_depth):
        return None
    distractor = _choose_distractor(world, proof, rng, distractor_rate)
    return _render(world, proof, distractor, family, seed, index)


def _validate(n: int, families: list[str] | None, min_depth: int, max_depth: int) -> list[str]:
    if n < 0:
        raise BadInputError(f"n must be >= 0, got {n}")
    chosen = list(families) if families else list(FAMILIES)
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise BadInputError(f"unknown problem families {unknown}; choose from {sorted(FAMILIES)}")
    if not 1 <= min_depth <= max_depth <= DEPTH_LIMIT:
        raise BadInputError(f"need 1 <= min_depth <= max_depth <= {DEPTH_LIMIT}")
    if all(FAMILY_MAX_DEPTH[f] < min_depth for f in chosen):
        raise BadInputError(
            f"families {chosen} reach depth {max(FAMILY_MAX_DEPTH[f] for f in chosen)} at most, "
            f"below min_depth={min_depth}"
        )
    return chosen


def dedup_key(problem: dict[str, Any], dedup: Dedup) -> str:
    """'question': exact text. 'structure': same family, premise equations and unknown (variable
    keys are assigned in construction order, so this ignores names, items and wording)."""
    if dedup == "question":
        return problem["question"]
    return "|".join([problem["family"], problem["unknown"], *sorted(problem["equations"])])


def iter_problems(
    n: int | None = None,
    seed: int = 0,
    families: list[str] | None = None,
    min_depth: int = 1,
    max_depth: int = 6,
    distractor_rate: float = 0.0,
    dedup: Dedup = "question",
) -> Iterator[dict[str, Any]]:
    """Yield problems one by one (endless when n is None), deduplicated by `dedup_key`."""
    if dedup not in ("question", "structure"):
        raise BadInputError(f"dedup must be 'question' or 'structure', got {dedup!r}")
    chosen = _validate(0 if n is None else n, families, min_depth, max_depth)
    seen: set[str] = set()
    index = 0
    while n is None or index < n:
        problem = None
        for attempt in range(MAX_ATTEMPTS):
            rng = random.Random(f"{seed}:{index}:{attempt}")
            reachable = min(max_depth, max(FAMILY_MAX_DEPTH[f] for f in chosen))
            requested = rng.randint(min_depth, reachable)
            family = rng.choice([f for f in chosen if FAMILY_MAX_DEPTH[f] >= requested])
            problem = build_problem(
                family, requested, rng, min_depth, max_depth, distractor_rate, seed, index
            )
            if problem is not None and dedup_key(problem, dedup) not in seen:
                break
            problem = None
        if problem is None:
            raise BadInputError(
                f"could not draw problem {index} for families {chosen} with depth "
                f"{min_depth}..{max_depth} in {MAX_ATTEMPTS} attempts; widen the depth range"
            )
        seen.add(dedup_key(problem, dedup))
        yield problem
        index += 1


def generate_problems(
    n: int,
    seed: int = 0,
    families: list[str] | None = None,
    min_depth: int = 1,
    max_depth: int = 6,
    distractor_rate: float = 0.0,
    dedup: Dedup = "question",
) -> list[dict[str, Any]]:
    """`n` problems, each {question, solution, answer, depth, premises_used, distractors, aux,
    proof, equations, unknown, family, seed, index}. Same arguments, same problems."""
    return list(iter_problems(n, seed, families, min_depth, max_depth, distractor_rate, dedup))


def hidden_value(problem: dict[str, Any]) -> Fraction:
    """The answer as an exact rational."""
    return Fraction(problem["answer"])
