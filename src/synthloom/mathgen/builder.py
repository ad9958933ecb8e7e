"""Building a premise set over quantities with hidden values (the numeric-consistency check).

Every quantity gets its true value first; every premise is checked against those values as it is
added (AlphaGeometry's coordinate trick), so a premise set can never be contradictory.
"""

from __future__ import annotations

import re
from fractions import Fraction

from synthloom.mathgen.relations import Quantity, Relation, holds


class InconsistentPremise(ValueError):
    """A premise is false under the hidden assignment (a bug in a family sampler)."""


def _sentence(text: str) -> str:
    """Capitalise a premise sentence, but never an algebra symbol ("y = 2x + 1.")."""
    if re.match(r"[a-z](?:\W|$)", text):
        return text
    return text[:1].upper() + text[1:]


class Builder:
    """Accumulates quantities, their hidden values and premises for one problem."""

    def __init__(self) -> None:
        self.quantities: dict[str, Quantity] = {}
        self.values: dict[str, Fraction] = {}
        self.relations: list[Relation] = []

    # -- quantities -------------------------------------------------------------------------
    def quantity(
        self,
        value: Fraction | int,
        question: str,
        statement: str,
        label: str,
        money: bool = False,
        name: str | None = None,
    ) -> str:
        key = name or f"q{len(self.quantities)}"
        self.quantities[key] = Quantity(key, question, statement, label, money=money)
        self.values[key] = Fraction(value)
        return key

    def value(self, key: str) -> Fraction:
        return self.values[key]

    # -- premises ---------------------------------------------------------------------------
    def _relation(
        self,
        kind: str,
        variables: tuple[str, ...],
        text: str,
        form: str = "",
        coefficients: tuple[Fraction | int, ...] = (),
        constant: Fraction | int = 0,
        meta: dict[str, Fraction] | None = None,
    ) -> Relation:
        relation = Relation(
            id=f"p{len(self.relations)}",
            kind=kind,
            variables=variables,
            text=_sentence(text),
            form=form,
            coefficients=tuple(Fraction(c) for c in coefficients),
            constant=Fraction(constant),
            meta=dict(meta or {}),
        )
        if not holds(relation, self.values):
            raise InconsistentPremise(f"{relation.text!r} is false under the hidden values")
        self.relations.append(relation)
        return relation

    def given(self, key: str, text: str | None = None) -> Relation:
        quantity = self.quantities[key]
        sentence = text or f"{quantity.state(quantity.format(self.values[key]))}."
        return self._relation("given", (key,), sentence, "given", (Fraction(1),), self.values[key])

    def affine(self, out: str, a: str, k: Fraction | int, m: Fraction | int, text: str) -> Relation:
        """out = k * a + m (covers 'c more than', 'k times as many', 'c more than twice')."""
        k, m = Fraction(k), Fraction(m)
        return self._relation("linear", (out, a), text, "affine", (1, -k), m, {"k": k})

    def add(self, out: str, a: str, c: Fraction | int, text: str) -> Relation:
        return self._relation("linear", (out, a), text, "add", (1, -1), c)

    def scale(self, out: str, a: str, k: Fraction | int, text: str) -> Relation:
        k = Fraction(k)
        return self._relation("linear", (out, a), text, "scale", (1, -k), 0, {"k": k})

    def percent(self, out: str, a: str, p: Fraction | int, text: str) -> Relation:
        k = Fraction(p) / 100
        meta = {"k": k, "p": Fraction(p)}
        return self._relation("linear", (out, a), text, "percent", (1, -k), 0, meta)

    def total(self, out: str, parts: list[str], text: str) -> Relation:
        coefficients = (1,) + (-1,) * len(parts)
        return self._relation("linear", (out, *parts), text, "sum", coefficients, 0)

    def difference(self, out: str, a: str, b: str, text: str) -> Relation:
        return self._relation("linear", (out, a, b), text, "diff", (1, -1, 1), 0)

    def ratio(self, a: str, b: str, p: int, q: int, text: str) -> Relation:
        meta = {"p": Fraction(p), "q": Fraction(q)}
        return self._relation("linear", (a, b), text, "ratio", (q, -p), 0, meta)

    def together(self, parts: list[str], c: Fraction | int, text: str) -> Relation:
        return self._relation("linear", tuple(parts), text, "together", (1,) * len(parts), c)

    def equation(
        self,
        variables: list[str],
        coefficients: list[int],
        lhs_constant: int,
        rhs: int,
        text: str,
    ) -> Relation:
        """sum(k_i v_i) + lhs_constant = rhs, as written in an algebra problem."""
        meta = {"lhs_constant": Fraction(lhs_constant)} if lhs_constant else {}
        return self._relation(
            "linear", tuple(variables), text, "eq", tuple(coefficients), rhs - lhs_constant, meta
        )

    def product(self, out: str, a: str, b: str, text: str) -> Relation:
        return self._relation("product", (out, a, b), text)

    def quotient(self, out: str, a: str, b: str, text: str) -> Relation:
        return self._relation("quotient", (out, a, b), text)

    def quadratic(self, x: str, a: int, b: int, c: int, text: str) -> Relation:
        return self._relation("quadratic", (x,), text, coefficients=(a, b, c))
