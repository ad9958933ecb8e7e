"""Exact number formatting for problem text: integers, finite decimals, else p/q."""

from __future__ import annotations

from fractions import Fraction


def _is_finite_decimal(value: Fraction) -> bool:
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


def format_number(value: Fraction) -> str:
    """12, -3, 2.5, 0.125, or 1/3 when the decimal would not terminate."""
    if value.denominator == 1:
        return str(value.numerator)
    if _is_finite_decimal(value):
        sign = "-" if value < 0 else ""
        magnitude = abs(value)
        whole, remainder = divmod(magnitude.numerator, magnitude.denominator)
        digits = ""
        while remainder:
            remainder *= 10
            digit, remainder = divmod(remainder, magnitude.denominator)
            digits += str(digit)
        return f"{sign}{whole}.{digits}"
    return f"{value.numerator}/{value.denominator}"


def format_money(value: Fraction) -> str:
    """$12 or $12.50 (cents always two digits when present)."""
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if magnitude.denominator == 1:
        return f"{sign}${magnitude.numerator}"
    cents = magnitude * 100
    if cents.denominator == 1:
        return f"{sign}${int(cents) // 100}.{int(cents) % 100:02d}"
    return f"{sign}${format_number(magnitude)}"


def format_factor(value: Fraction) -> str:
    """A multiplier inside an expression: 3, 1.5 or (2/3)."""
    text = format_number(value)
    return f"({text})" if "/" in text else text
