"""Forward deduction over premises with parent pointers, traceback, and shaving to a minimal set.

Rules (applied in breadth-first layers, so each fact gets its shallowest derivation):

* ``given``: a premise ``v = c`` is a fact at depth 0.
* ``solve``: a premise with exactly one unknown variable yields that variable (substitution and
  solving); parents are the premise and the facts of its other variables.
* ``eliminate``: two linear premises over the same two unknowns yield both (the AR analogue:
  Gaussian elimination on a 2x2 system); parents are both premises and their known facts.

Parents are recorded at deduction time (never reconstructed), as AlphaGeometry's traceback needs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction

from synthloom.mathgen.relations import Relation, solve_for


@dataclass(frozen=True)
class Fact:
    """A derived value: `variable = value`, by `rule` from premise ids and parent facts."""

    variable: str
    value: Fraction
    rule: str  # given | solve | eliminate
    premises: tuple[str, ...]  # ids of the premises this step applies
    parents: tuple[str, ...]  # variables whose facts this step uses
    depth: int


@dataclass
class Closure:
    """Everything derivable from a premise set: variable -> the fact that first derived it."""

    facts: dict[str, Fact]
    premises: dict[str, Relation]


def _solve_pair(
    first: Relation, second: Relation, unknowns: tuple[str, str], values: dict[str, Fraction]
) -> tuple[Fraction, Fraction] | None:
    """Cramer's rule on two linear premises reduced to the two unknowns; None if singular."""
    rows = []
    for relation in (first, second):
        coefficient = {unknowns[0]: Fraction(0), unknowns[1]: Fraction(0)}
        constant = relation.constant
        for k, variable in zip(relation.coefficients, relation.variables):
            if variable in coefficient:
                coefficient[variable] += k
            else:
                constant -= k * values[variable]
        rows.append((coefficient[unknowns[0]], coefficient[unknowns[1]], constant))
    (a1, b1, c1), (a2, b2, c2) = rows
    determinant = a1 * b2 - a2 * b1
    if determinant == 0:
        return None
    return (c1 * b2 - c2 * b1) / determinant, (a1 * c2 - a2 * c1) / determinant


def _first_solvable_pair(
    relations: list[Relation], pair: tuple[str, str], values: dict[str, Fraction]
) -> tuple[Relation, Relation, tuple[Fraction, Fraction]] | None:
    for index, first in enumerate(relations):
        for second in relations[index + 1 :]:
            result = _solve_pair(first, second, pair, values)
            if result is not None:
                return first, second, result
    return None


def deduce(premises: list[Relation], max_depth: int = 64) -> Closure:
    """Run the rules to a fixpoint (or max_depth layers) and return the closure."""
    by_id = {relation.id: relation for relation in premises}
    facts: dict[str, Fact] = {}
    values: dict[str, Fraction] = {}

    def unknowns_of(relation: Relation) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for v in relation.variables if v not in values))

    # Premise sets are small (tens), so each layer rescans the premises that still have unknowns.
    active: list[Relation] = list(premises)
    layer_index = 0
    while active and layer_index <= max_depth:
        layer: dict[str, Fact] = {}
        pending_pairs: dict[tuple[str, str], list[Relation]] = defaultdict(list)
        for relation in active:
            unknown = unknowns_of(relation)
            if len(unknown) == 1 and unknown[0] not in layer:
                value = solve_for(relation, unknown[0], values)
                if value is None:
                    continue
                known = tuple(dict.fromkeys(v for v in relation.variables if v != unknown[0]))
                rule = "given" if relation.kind == "given" else "solve"
                # Givens are depth 0; every applied rule adds one step, even with no parent facts.
                depth = (
                    0 if rule == "given" else 1 + max((facts[v].depth for v in known), default=0)
                )
                layer[unknown[0]] = Fact(unknown[0], value, rule, (relation.id,), known, depth)
            elif len(unknown) == 2 and relation.is_linear:
                pending_pairs[(min(unknown), max(unknown))].append(relation)
        for pair, relations in pending_pairs.items():
            if len(relations) < 2 or pair[0] in layer or pair[1] in layer:
                continue
            solved = _first_solvable_pair(relations, pair, values)
            if solved is None:
                continue
            first, second, result = solved
            known = tuple(
                dict.fromkeys(v for v in first.variables + second.variables if v not in pair)
            )
            depth = 1 + max((facts[v].depth for v in known), default=0)
            for variable, value in zip(pair, result):
                layer[variable] = Fact(
                    variable, value, "eliminate", (first.id, second.id), known, depth
                )
        if not layer:
            break
        facts.update(layer)
        values.update({variable: fact.value for variable, fact in layer.items()})
        active = [relation for relation in active if unknowns_of(relation)]
        layer_index += 1
    return Closure(facts, by_id)


@dataclass(frozen=True)
class Proof:
    """The minimal derivation of one variable: the premises it uses and its ordered steps."""

    target: str
    premise_ids: tuple[str, ...]
    steps: tuple[Fact, ...]  # topological order, ending with the target's fact
    depth: int


def traceback(closure: Closure, target: str) -> Proof:
    """DFS over parent pointers from `target`: the premises used and the facts on the path."""
    if target not in closure.facts:
        raise KeyError(f"{target!r} is not derivable from these premises")
    ordered: list[Fact] = []
    seen: set[str] = set()
    premise_ids: dict[str, None] = {}

    def visit(variable: str) -> None:
        if variable in seen:
            return
        seen.add(variable)
        fact = closure.facts[variable]
        for parent in fact.parents:
            visit(parent)
        # An elimination derives two variables from one step; the partner's parents are the same.
        ordered.append(fact)
        premise_ids.update(dict.fromkeys(fact.premises))

    visit(target)
    return Proof(target, tuple(premise_ids), tuple(ordered), closure.facts[target].depth)


def derives(premises: list[Relation], target: str) -> bool:
    return target in deduce(premises).facts


def might_derive(premises: list[Relation], target: str) -> bool:
    """The rules' structure only (no arithmetic): False means `target` is surely underivable.

    Arithmetic can only block a step (division by zero, a singular pair), never enable one, so
    this over-approximates `derives` at a fraction of its cost; shave uses it as a pre-filter.
    """
    known: set[str] = set()
    active = [(r.is_linear, frozenset(r.variables)) for r in premises]
    progress = True
    while progress and target not in known:
        progress = False
        pairs: dict[frozenset[str], int] = defaultdict(int)
        newly: set[str] = set()
        for linear, variables in active:
            unknown = variables - known
            if len(unknown) == 1:
                newly |= unknown
            elif linear and len(unknown) == 2:
                pairs[unknown] += 1
        for unknown, count in pairs.items():
            if count >= 2:
                newly |= unknown
        if newly - known:
            known |= newly
            progress = True
    return target in known


def shave(premises: list[Relation], target: str, closure: Closure | None = None) -> Proof:
    """Traceback, then drop any premise whose removal still derives the target, to a fixpoint.

    Traceback alone gives the premises of one derivation; a different derivation inside that set
    could need fewer, so each premise is tried out (AlphaGeometry's shorten-and-shave idea). The
    result is irreducible: removing any remaining premise makes the target underivable.
    """
    proof = traceback(closure if closure is not None else deduce(premises), target)
    changed = True
    while changed:
        changed = False
        subset = [r for r in premises if r.id in set(proof.premise_ids)]
        for relation in subset:
            if relation.variables == (target,) and relation.kind == "given":
                continue  # the target itself is never a premise (filtered before we get here)
            rest = [r for r in subset if r.id != relation.id]
            if not might_derive(rest, target):
                continue
            closure = deduce(rest)
            if target in closure.facts:
                proof = traceback(closure, target)
                changed = True
                break
    return proof
