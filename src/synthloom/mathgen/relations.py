"""Quantities and premises (relations between quantities), each solvable for any single unknown.

A premise is one of a few exact forms over rational values:

* ``given``     v = c
* ``linear``    sum(k_i * v_i) = c  (the forms add, scale, percent, sum, diff, ratio, eq render it)
* ``product``   out = a * b
* ``quotient``  out = a / b
* ``quadratic`` A*x^2 + B*x + C = 0 with x > 0 (premises are built so exactly one root is positive)

``solve_for`` is the only arithmetic the deduction engine does; ``equation_text`` writes the same
premise in sympy syntax for the independent check (mathgen.check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from synthloom.mathgen.numbers import format_money, format_number

KINDS = ("given", "linear", "product", "quotient", "quadratic")


@dataclass(frozen=True)
class Quantity:
    """One unknown of the story with how to ask about it and how to state its value."""

    name: str  # unique key; also the letter used in equations for algebra families
    question: str  # "How many apples does Bob have?"
    statement: str  # "Bob has {v} apples" ({v} is the value text, possibly with its working)
    label: str = ""  # short noun phrase for equations: "Bob's apples", "x"
    money: bool = False
    integer: bool = True
    positive: bool = True

    def format(self, value: Fraction) -> str:
        return format_money(value) if self.money else format_number(value)

    def state(self, value_text: str) -> str:
        return self.statement.format(v=value_text)


@dataclass(frozen=True)
class Relation:
    """A premise: an exact equation over quantities plus its sentence in the problem."""

    id: str
    kind: str
    variables: tuple[str, ...]
    text: str
    form: str = ""  # rendering form of linear premises: add, scale, percent, sum, diff, ratio, eq
    coefficients: tuple[Fraction, ...] = ()
    constant: Fraction = Fraction(0)
    meta: dict[str, Fraction] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_linear(self) -> bool:
        return self.kind in ("given", "linear")


def linear_residual(relation: Relation, values: dict[str, Fraction]) -> Fraction:
    total = sum(
        (k * values[v] for k, v in zip(relation.coefficients, relation.variables)), Fraction(0)
    )
    return total - relation.constant


def holds(relation: Relation, values: dict[str, Fraction]) -> bool:
    """Does the premise hold under the hidden assignment? (the numeric consistency check)"""
    if relation.kind == "given":
        return values[relation.variables[0]] == relation.constant
    if relation.kind == "linear":
        return linear_residual(relation, values) == 0
    if relation.kind == "product":
        out, a, b = (values[v] for v in relation.variables)
        return out == a * b
    if relation.kind == "quotient":
        out, a, b = (values[v] for v in relation.variables)
        return b != 0 and out == a / b
    if relation.kind == "quadratic":
        x = values[relation.variables[0]]
        a, b, c = relation.coefficients
        return x > 0 and a * x * x + b * x + c == 0
    raise ValueError(f"unknown relation kind {relation.kind!r}")


def _rational_sqrt(value: Fraction) -> Fraction | None:
    if value < 0:
        return None
    top, bottom = math.isqrt(value.numerator), math.isqrt(value.denominator)
    if top * top == value.numerator and bottom * bottom == value.denominator:
        return Fraction(top, bottom)
    return None


def positive_quadratic_root(a: Fraction, b: Fraction, c: Fraction) -> Fraction | None:
    """The unique positive rational root of a*x^2 + b*x + c, or None if not unique/rational."""
    root = _rational_sqrt(b * b - 4 * a * c)
    if root is None or a == 0:
        return None
    positive = {r for r in ((-b + root) / (2 * a), (-b - root) / (2 * a)) if r > 0}
    return positive.pop() if len(positive) == 1 else None


def solve_for(relation: Relation, target: str, values: dict[str, Fraction]) -> Fraction | None:
    """Value of `target` given every other variable of the premise; None if not unique."""
    kind = relation.kind
    if kind == "given":
        return relation.constant
    if kind == "linear":
        rest = Fraction(0)
        own = Fraction(0)
        for coefficient, variable in zip(relation.coefficients, relation.variables):
            if variable == target:
                own += coefficient
            else:
                rest += coefficient * values[variable]
        return None if own == 0 else (relation.constant - rest) / own
    if kind == "quadratic":
        return positive_quadratic_root(*relation.coefficients)
    out, a, b = relation.variables
    if kind == "product":
        if target == out:
            return values[a] * values[b]
        other = values[b] if target == a else values[a]
        return None if other == 0 else values[out] / other
    if kind == "quotient":
        if target == out:
            return None if values[b] == 0 else values[a] / values[b]
        if target == a:
            return values[out] * values[b]
        return None if values[out] == 0 else values[a] / values[out]
    raise ValueError(f"unknown relation kind {kind!r}")


def _rational(value: Fraction) -> str:
    return (
        str(value.numerator)
        if value.denominator == 1
        else f"({value.numerator}/{value.denominator})"
    )


def equation_text(relation: Relation) -> str:
    """The premise as 'lhs = rhs' in sympy syntax over variable keys; quadratics add ', x > 0'.

    Plain string formatting (not sympy printing): it runs for every generated record.
    """
    v = relation.variables
    if relation.kind == "given":
        return f"{v[0]} = {_rational(relation.constant)}"
    if relation.kind == "product":
        return f"{v[0]} = {v[1]}*{v[2]}"
    if relation.kind == "quotient":
        return f"{v[0]}*{v[2]} = {v[1]}"
    if relation.kind == "quadratic":
        a, b, c = (_rational(k) for k in relation.coefficients)
        return f"{a}*{v[0]}**2 + {b}*{v[0]} + {c} = 0, {v[0]} > 0"
    terms = " + ".join(f"{_rational(k)}*{name}" for k, name in zip(relation.coefficients, v))
    return f"{terms} = {_rational(relation.constant)}"
