"""Natural-language solution steps: one line per derived fact, showing the arithmetic."""

from __future__ import annotations

import math
import re
from fractions import Fraction

from synthloom.mathgen.engine import Fact
from synthloom.mathgen.numbers import format_factor, format_number
from synthloom.mathgen.relations import Quantity, Relation


def _operands(
    relation: Relation, target: str, quantities: dict[str, Quantity], values: dict[str, Fraction]
) -> dict[str, str]:
    """Formatted value of every variable of the premise except the target."""
    shown = {v: quantities[v].format(values[v]) for v in relation.variables if v != target}
    return {v: f"({text})" if text.startswith("-") else text for v, text in shown.items()}


def _linear_expression(
    relation: Relation, target: str, quantities: dict[str, Quantity], values: dict[str, Fraction]
) -> str:
    """The arithmetic that solves a linear premise for `target`, in the premise's own terms."""
    form, variables, meta = relation.form, relation.variables, relation.meta
    show = _operands(relation, target, quantities, values)
    unit = quantities[target]
    if form == "add":  # out = a + c
        out, a = variables
        c = relation.constant
        step = unit.format(abs(c))  # "$2" for money, "2" otherwise
        if target == out:
            return f"{show[a]} + {step}" if c > 0 else f"{show[a]} - {step}"
        return f"{show[out]} - {step}" if c > 0 else f"{show[out]} + {step}"
    if form in ("scale", "percent"):  # out = k * a
        out, a = variables
        k = meta["k"]
        if form == "percent":
            p = format_number(meta["p"])
            return f"{show[a]} × {p} / 100" if target == out else f"{show[out]} × 100 / {p}"
        if target == out:
            if k.denominator == 1:
                return f"{k.numerator} × {show[a]}"
            if k.numerator == 1:
                return f"{show[a]} / {k.denominator}"
            return f"{show[a]} × {format_factor(k)}"
        if k.denominator == 1:
            return f"{show[out]} / {k.numerator}"
        if k.numerator == 1:
            return f"{show[out]} × {k.denominator}"
        return f"{show[out]} / {format_factor(k)}"
    if form == "affine":  # out = k * a + m
        out, a = variables
        k, m = meta["k"], relation.constant
        shift = f" + {format_number(m)}" if m > 0 else (f" - {format_number(-m)}" if m < 0 else "")
        if target == out:
            return f"{format_factor(k)} × {show[a]}{shift}"
        unshift = (
            f" - {format_number(m)}" if m > 0 else (f" + {format_number(-m)}" if m < 0 else "")
        )
        return (
            f"({show[out]}{unshift}) / {format_factor(k)}"
            if unshift
            else f"{show[out]} / {format_factor(k)}"
        )
    if form == "sum":  # out = a + b + ...
        out, *parts = variables
        if target == out:
            return " + ".join(show[v] for v in parts)
        return " - ".join([show[out]] + [show[v] for v in parts if v != target])
    if form == "diff":  # out = a - b
        out, a, b = variables
        if target == out:
            return f"{show[a]} - {show[b]}"
        return f"{show[out]} + {show[b]}" if target == a else f"{show[a]} - {show[out]}"
    if form == "ratio":  # q*a = p*b, i.e. a : b = p : q
        a, b = variables
        p, q = format_number(meta["p"]), format_number(meta["q"])
        return f"{show[b]} × {p} / {q}" if target == a else f"{show[a]} × {q} / {p}"
    if form == "together":  # a + b + ... = c
        total = unit.format(relation.constant)
        return " - ".join([total] + [show[v] for v in variables if v != target])
    # Generic algebra: k*t + sum(other terms) = c  ->  t = (c - others) / k
    own = sum((k for k, v in zip(relation.coefficients, variables) if v == target), Fraction(0))
    others = [(k, v) for k, v in zip(relation.coefficients, variables) if v != target and k != 0]
    terms = "".join(
        f" - {format_factor(k)} × {show[v]}" if k > 0 else f" + {format_factor(-k)} × {show[v]}"
        for k, v in others
    )
    lhs_constant = meta.get("lhs_constant", Fraction(0))
    if lhs_constant:  # written as k*t + b = c: show "c - b" rather than its value
        rhs_value = relation.constant + lhs_constant
        sign = "-" if lhs_constant > 0 else "+"
        numerator = f"{format_number(rhs_value)} {sign} {format_number(abs(lhs_constant))}{terms}"
    else:
        numerator = f"{format_number(relation.constant)}{terms}"
    if own == 1:
        return numerator
    compound = bool(others) or lhs_constant != 0
    return (
        f"({numerator}) / {format_factor(own)}"
        if compound
        else f"{numerator} / {format_factor(own)}"
    )


def polynomial_text(coefficients: tuple[Fraction, ...], name: str) -> str:
    """a*x^2 + b*x + c written the usual way: x^2 - 5x + 6."""
    text = ""
    for power, k in zip((2, 1, 0), coefficients):
        if k == 0:
            continue
        magnitude = format_number(abs(k))
        body = {2: f"{name}^2", 1: name, 0: ""}[power]
        term = (magnitude if abs(k) != 1 or power == 0 else "") + body
        text += (" - " if k < 0 else " + ") + term if text else ("-" if k < 0 else "") + term
    return text


def _quadratic_line(relation: Relation, quantity: Quantity, value: Fraction) -> str:
    a, b, c = relation.coefficients
    discriminant = b * b - 4 * a * c
    other = -b / a - value  # the two roots sum to -b/a
    name = quantity.label or quantity.name
    if a == 1 and value.denominator == 1 and other.denominator == 1:

        def factor(r: Fraction) -> str:
            return f"({name} - {format_number(r)})" if r > 0 else f"({name} + {format_number(-r)})"

        working = f"{polynomial_text(relation.coefficients, name)} = 0 factors as {factor(value)}{factor(other)} = 0"
    else:
        working = f"The discriminant of {polynomial_text(relation.coefficients, name)} is {format_number(discriminant)}"
    return (
        f"{working}, so the roots are {format_number(value)} and {format_number(other)}; "
        f"only {format_number(value)} is positive, so {quantity.state(format_number(value))}."
    )


def _elimination_line(
    fact: Fact,
    relations: tuple[Relation, Relation],
    quantities: dict[str, Quantity],
    values: dict[str, Fraction],
) -> str:
    """Reduce two linear premises to one equation in the target (the 2x2 elimination step)."""
    target = fact.variable
    first, second = relations
    partner = next(
        v for v in first.variables + second.variables if v != target and v not in fact.parents
    )
    rows = []
    for relation in relations:
        coefficient = {target: Fraction(0), partner: Fraction(0)}
        constant = relation.constant
        for k, v in zip(relation.coefficients, relation.variables):
            if v in coefficient:
                coefficient[v] += k
            else:
                constant -= k * values[v]
        rows.append((coefficient[target], coefficient[partner], constant))
    (a1, b1, c1), (a2, b2, c2) = rows
    determinant, right = a1 * b2 - a2 * b1, c1 * b2 - c2 * b1
    if determinant < 0:
        determinant, right = -determinant, -right
    # Clear fractions so the line reads "3 × d = 36" rather than "0.6 × d = 7.2".
    scale = math.lcm(determinant.denominator, right.denominator)
    determinant, right = determinant * scale, right * scale
    quantity = quantities[target]
    label = quantity.label or quantity.name
    other = quantities[partner].label or partner
    working = (
        f"{format_number(right)} / {format_number(determinant)} = " if determinant != 1 else ""
    )
    return (
        f"Combining the two facts to eliminate {other}: {format_factor(determinant)} × {label} = "
        f"{format_number(right)}. {_capitalise(quantity.state(working + quantity.format(fact.value)))}."
    )


def _capitalise(text: str) -> str:
    return text if re.match(r"[a-z](?:\W|$)", text) else text[:1].upper() + text[1:]


def step_line(
    fact: Fact,
    premises: dict[str, Relation],
    quantities: dict[str, Quantity],
    values: dict[str, Fraction],
) -> str:
    """One solution line for a derived fact."""
    quantity = quantities[fact.variable]
    if fact.rule == "eliminate":
        first, second = (premises[i] for i in fact.premises)
        return _elimination_line(fact, (first, second), quantities, values)
    relation = premises[fact.premises[0]]
    if relation.kind == "quadratic":
        return _quadratic_line(relation, quantity, fact.value)
    if relation.kind == "linear":
        expression = _linear_expression(relation, fact.variable, quantities, values)
    else:
        out, a, b = relation.variables
        show = _operands(relation, fact.variable, quantities, values)
        if relation.kind == "product":
            expression = (
                f"{show[a]} × {show[b]}"
                if fact.variable == out
                else (f"{show[out]} / {show[b] if fact.variable == a else show[a]}")
            )
        else:  # quotient: out = a / b
            expression = {
                out: lambda: f"{show[a]} / {show[b]}",
                a: lambda: f"{show[out]} × {show[b]}",
                b: lambda: f"{show[a]} / {show[out]}",
            }[fact.variable]()
    return f"{quantity.state(f'{expression} = {quantity.format(fact.value)}')}."
