"""Independent check of a generated problem: solve its premise equations with sympy.

This shares nothing with the deduction engine except the equation strings, so it catches engine
or rendering bugs: the answer must be the unique value of the unknown in every sympy solution.
"""

from __future__ import annotations

from typing import Any

import sympy
from sympy.parsing.sympy_parser import parse_expr


def _parse_equations(problem: dict[str, Any]) -> tuple[list[sympy.Eq], set[sympy.Symbol]]:
    equations, positive = [], set()
    for text in problem["equations"]:
        body, _, condition = text.partition(",")
        lhs, rhs = body.split("=")
        # Our own generated strings, never model output: parse_expr is safe here.
        equations.append(sympy.Eq(parse_expr(lhs), parse_expr(rhs)))
        if condition.strip():
            positive.add(sympy.Symbol(condition.split(">")[0].strip()))
    return equations, positive


def solve_with_sympy(problem: dict[str, Any]) -> list[sympy.Expr]:
    """All values sympy.solve finds for the problem's unknown (after the x > 0 conditions)."""
    equations, positive = _parse_equations(problem)
    symbols = sorted(set().union(*(eq.free_symbols for eq in equations)), key=str)
    solutions = sympy.solve(equations, symbols, dict=True)
    target = sympy.Symbol(problem["unknown"])
    values = []
    for solution in solutions:
        if any(not (solution.get(s, s).is_positive) for s in positive):
            continue
        if target in solution:
            values.append(sympy.nsimplify(solution[target]))
    return values


def check_with_sympy(problem: dict[str, Any]) -> bool:
    """True iff sympy finds exactly one value for the unknown and it equals the answer."""
    values = set(solve_with_sympy(problem))
    return len(values) == 1 and values.pop() == sympy.Rational(problem["answer"])
