"""Math answer verification: extract a final answer from model text and compare it with sympy.

Conventions (see docs/math.md):

* Extraction is strict (``final_answer``): only an explicit final answer counts — ``The answer is
  N`` (GSM8K / MetaMath), ``#### N``, ``\\boxed{...}`` (brace-matched), ``The value of x is N``.
  Hedged, negated, questioning, alternative or disagreeing final answers, unsure texts, unclosed
  boxes and text that runs on after the answer are refused. The last-number fallback is an opt-in
  (``fallback_last_number=True``) for evaluation only, never for training data.
* Normalisation drops thousands separators (``1,234``), currency (``$12``, ``\\$``), trailing unit
  words (``12 dollars``, ``5 cm^2``), ``^\\circ``, ``\\text{}``, math delimiters, ``x =`` prefixes and
  trailing punctuation.
* Equivalence: exact for rationals (``1/2 == 0.5`` but ``0.33 != 1/3``); a decimal against an exact
  irrational (``1.4142136`` vs ``\\sqrt{2}``) matches within 1e-6 relative; symbolic expressions
  match if ``simplify(a - b) == 0`` or they agree numerically at several points.
* Percentages: ``50%`` equals ``50%`` and ``50``, and also ``0.5`` (a percent on one side only
  matches the other side read either as the number or as the fraction).
* Model text is never ``eval``-ed as Python: expressions are tokenised against a whitelist first,
  oversized powers are refused before evaluation, and sympy runs under a time budget.
"""

from __future__ import annotations

import ast
import contextlib
from fractions import Fraction
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_multiplication_application,
    parse_expr,
    rationalize,
    standard_transformations,
)

from synthloom.verdicts import Verdict

DEFAULT_TIME_BUDGET_S = 2.0
MAX_EXPRESSION_CHARS = 200
MAX_NUMERIC_EXPONENT = 1000
MAX_MARKERS = 20  # more final-answer markers than this is a model repeating itself

# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------

_ANSWER_IS = re.compile(
    r"\b(?:the\s+)?(?:final\s+|correct\s+)?answer(?:\s+to\s+(?:the|this)\s+(?:above\s+)?(?:question|problem))?"
    r"\s+is\s*:?\s*|(?:^|\n)[ \t>#*_]*(?:final\s+)?answer\s*:\s*|\bfinal\s+answer\s*:\s*",
    re.IGNORECASE,
)
_HASHES = re.compile(r"####\s*")
_VALUE_OF = re.compile(
    r"the\s+value\s+of\s+(?:the\s+)?(?:unknown\s+variable\s+)?"
    r"(?:\$\s*[A-Za-z]\s*\$|\\\(\s*[A-Za-z]\s*\\\)|[A-Za-z])\s+is\s*:?\s*",
    re.IGNORECASE,
)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
# A sentence ends at a newline or at a period that is not a decimal point.
_SENTENCE_END = re.compile(r"\n|(?<!\d)\.(?!\d)|\.(?=\s|$)|[!?;]")
_SENTENCE_START = re.compile(r"(?:\n|(?<!\d)\.(?!\d)|\.(?=\s)|[!?;])[^\n.!?;]*$")

# Whole-text uncertainty: a solution that says it does not know is not training data, whatever
# number it ends with (issue #17: "I don't know. There are 12 apples and 3 boxes" was kept).
_UNCERTAIN = re.compile(
    r"\b(?:i\s*(?:do\s*n[o']?t|don'?t|am\s+not|'m\s+not|m\s+not)\s+(?:know|sure|certain)|not\s+sure|unsure"
    r"|can\s*(?:no|')?t\s+(?:be\s+)?(?:determine|determined|tell|solve|know|be\s+sure)"
    r"|cannot\s+(?:be\s+)?(?:determine|determined|tell|solve|know)|impossible\s+to\s+(?:determine|tell|know)"
    r"|no\s+way\s+to\s+(?:know|tell)|(?:not\s+enough|insufficient)\s+information|no\s+(?:clear\s+)?answer)\b",
    re.IGNORECASE,
)
# In the marker's sentence: a condition or a given ("If we know the answer ... is 24") is a premise.
_PREMISE = re.compile(r"\b(?:if|know|knew|known|given|suppose|supposing|assume|assuming|whether|unless)\b",
                      re.IGNORECASE)
_HEDGE_BEFORE = re.compile(r"\b(?:i\s+think|i\s+guess|i\s+believe|maybe|perhaps|probably|possibly|likely)\b",
                           re.IGNORECASE)
_HEDGE_AFTER = re.compile(
    r"\band\b(?=.*\d)|\b(?:or|either|maybe|perhaps|probably|possibly|likely|might|may|could|approximately|approx|about|around"
    r"|roughly|nearly|almost|i\s+think|i\s+guess|i\s+believe"
    # a condition or an unevaluated operation in words: "12 if she buys more", "12 minus 3", "12 more than"
    r"|if|unless|when|plus|minus|times|divided|than)\b|\?",
    re.IGNORECASE,
)
_NEGATED = re.compile(r"^\s*(?:not|never|neither|no\b|none|n't|unknown|undefined|unclear)", re.IGNORECASE)
# The answer ends before a justification: "12, because ..." / "12 since ...".
_JUSTIFICATION = re.compile(r",\s+(?=[A-Za-z])|\s+(?:because|since|as|so|which|from)\b", re.IGNORECASE)
_QUOTES = "\"'“‘`"


@dataclass(frozen=True)
class Extraction:
    """An extracted answer string and the rule that found it."""

    answer: str
    method: str


@dataclass(frozen=True)
class FinalAnswer:
    """The strict reading of a solution: the final answer and its marker, or why there is none."""

    answer: str | None
    method: str  # "answer_is", "hashes", "value_of", "boxed" (joined by "," when several agree), "last_number"
    reason: str = ""  # why no answer was accepted ("" when one was)


def _match_braces(text: str, open_index: int) -> str | None:
    """Content between text[open_index] == '{' and its matching '}' (nested braces allowed)."""
    depth = 0
    for index in range(open_index, len(text)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox``) in text, braces matched; None if none."""
    matches = list(_BOXED.finditer(text))
    for match in reversed(matches):
        content = _match_braces(text, match.end() - 1)
        if content is not None:
            return content
    return None


def _tail_answer(tail: str) -> tuple[str | None, int]:
    """(answer, length of `tail` it used) for the text after a marker like 'The answer is'."""
    lead = len(tail) - len(tail.lstrip())
    stripped = tail.strip()
    if stripped.startswith(("\\boxed", "\\fbox", "$\\boxed")):
        match = _BOXED.search(stripped)
        content = _match_braces(stripped, match.end() - 1) if match else None
        if content is None:
            return None, len(tail)
        return content, lead + match.end() + len(content) + 1 + (1 if stripped.startswith("$") else 0)
    # $...$ or \( ... \) math right after the marker: take its content whole.
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if stripped.startswith(opener):
            end = stripped.find(closer, len(opener))
            inner = stripped[len(opener) : end] if end > 0 else ""
            if end > 0 and not re.fullmatch(r"\s*[\d,.]+\s*(?:and|or|,).*", inner):
                return inner, lead + end + len(closer)
            break
    sentence_end = _SENTENCE_END.search(stripped)
    sentence = stripped[: sentence_end.start()] if sentence_end else stripped
    return (sentence.strip() or None), lead + len(sentence)


def _chain_value(answer: str, time_budget_s: float) -> str | None:
    """'3 x 4 = 12' -> '12' when every side of the chain has the same value; None otherwise."""
    sides = [side.strip() for side in answer.split("=")]
    if len(sides) < 2 or not all(sides):
        return None
    last = sides[-1]
    for side in sides[:-1]:
        side = re.sub(r"(?<=\d)\s*[x×]\s*(?=[\d$])", "*", side)
        if re.fullmatch(r"[A-Za-z]", side.strip()):
            continue  # "x = 5": the unknown named before its value
        if not _compare(side, last, time_budget_s)[0]:
            return None
    return last


def _marker_hits(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, method) of every final-answer marker, in text order."""
    hits = [(m.start(), m.end(), name) for name, pattern in
            (("answer_is", _ANSWER_IS), ("hashes", _HASHES), ("value_of", _VALUE_OF)) for m in pattern.finditer(text)]
    hits += [(m.start(), m.start(), "boxed") for m in _BOXED.finditer(text)]
    hits.sort()
    covered = -1
    for index, (start, end, name) in enumerate(hits):
        if start < covered:
            continue  # "The answer is \\boxed{5}": one marker, not two
        later = hits[index + 1] if index + 1 < len(hits) else None
        if later and later[2] != "boxed" and later[0] <= end + 1:
            continue  # "Final answer: The final answer is 7": the inner marker speaks
        covered = end if name != "boxed" else start + 1
        yield start, end, name


def final_answer(text: str, fallback_last_number: bool = False,
                 time_budget_s: float = DEFAULT_TIME_BUDGET_S) -> FinalAnswer:
    """Read the explicit final answer of a solution, strictly (see docs/math.md).

    Counted markers: ``The answer is N`` (``The final answer is: N``, ``Answer: N``), ``#### N``,
    ``\\boxed{N}``, ``The value of x is N``. Refused: empty text, a text that says it does not know,
    a hedged or negated answer ("probably 3", "is not 3", "3?"), alternatives ("3 or 4"), several
    final answers that disagree, an unclosed ``\\boxed{``, and text that goes on with more numbers
    after the final answer (a cut-off or runaway continuation). A marker inside a condition or a
    given ("If we know the answer ... is 24") or inside quotes (an echoed instruction) is not a final
    answer. ``fallback_last_number`` (evaluation only, never training data) takes the last number
    when there is no marker at all.
    """
    if not text or not text.strip():
        return FinalAnswer(None, "", "empty output")
    text = re.sub(r"(?<![\w)])\*\*|\*\*(?![\w(])", "", text)  # markdown bold, not a power
    if uncertain := _UNCERTAIN.search(text):
        return FinalAnswer(None, "", f"the text says it is unsure ({uncertain.group(0)!r})")
    hits = list(_marker_hits(text))
    if len(hits) > MAX_MARKERS:
        return FinalAnswer(None, "", f"{len(hits)} final-answer markers: a repeating output")
    found: list[tuple[str, str, int]] = []  # (method, answer, end position)
    refused = ""
    for start, end, method in hits:
        before = text[:start]
        sentence_start = _SENTENCE_START.search(before)
        prefix = before[sentence_start.start() + 1 :] if sentence_start else before
        if (before.rstrip()[-1:] or "-") in _QUOTES or _PREMISE.search(prefix):
            continue  # an echoed instruction or a premise, not this solution's answer
        if method == "boxed":
            content = _match_braces(text, text.index("{", start))
            if content is None:
                refused = refused or "unclosed \\boxed{ (truncated?)"
                continue
            answer, stop = content, text.index("{", start) + len(content) + 2
            sentence_end = _SENTENCE_END.search(text, stop)
            after = text[stop : sentence_end.start() if sentence_end else len(text)]
        else:
            answer, used = _tail_answer(text[end:])
            stop = end + used
            after = ""
            if answer is None:
                refused = refused or f"{method} marker without an answer"
                continue
        if _HEDGE_BEFORE.search(prefix):
            return FinalAnswer(None, method, f"hedged final answer: {prefix.strip()[-60:]!r}")
        if _NEGATED.search(answer):
            return FinalAnswer(None, method, f"negated final answer: {answer[:60]!r}")
        if stop < len(text) and text[stop] == "?":
            return FinalAnswer(None, method, f"the final answer is a question: {answer[:60]!r}?")
        if _HEDGE_AFTER.search(answer + after):
            return FinalAnswer(None, method, f"hedged or alternative answers: {answer[:60]!r}")
        if method != "boxed":
            answer = _JUSTIFICATION.split(answer, maxsplit=1)[0]
        if "=" in answer and "\\" not in answer:
            value = _chain_value(answer, time_budget_s)
            if value is None:
                return FinalAnswer(None, method, f"the stated equation does not hold: {answer[:60]!r}")
            answer = value
        found.append((method, answer.strip(), stop))
    if not found:
        if refused:
            return FinalAnswer(None, "", refused)
        if fallback_last_number:
            numbers = _NUMBER.findall(text)
            if numbers:
                return FinalAnswer(numbers[-1].rstrip(".,"), "last_number")
        return FinalAnswer(None, "", "no explicit final answer (The answer is N, \\boxed{N}, #### N)")
    method, answer, stop = found[-1]
    others = {normalize_answer(other): (other_method, other) for other_method, other, _ in found[:-1]}
    for other_method, other in others.values():
        if not _compare(other, answer, time_budget_s)[0]:
            return FinalAnswer(None, method, f"competing final answers: {other!r} ({other_method}) and {answer!r}")
    rest = text[stop:]
    if re.search(r"\d|\?|\bquestion\s*:|^\s*q\s*:", rest, re.IGNORECASE | re.MULTILINE):
        return FinalAnswer(None, method, f"text goes on after the final answer: {rest.strip()[:60]!r}")
    methods = ",".join(dict.fromkeys(m for m, _, _ in found))
    return FinalAnswer(answer, methods)


def extract_answer_with_method(text: str, fallback_last_number: bool = False) -> Extraction | None:
    """The strict final answer (see `final_answer`) with the marker that gave it; None if refused."""
    found = final_answer(text, fallback_last_number)
    return Extraction(found.answer, found.method) if found.answer is not None else None


def extract_answer(text: str, fallback_last_number: bool = False) -> str | None:
    """The final answer string in model text (see `final_answer`), or None."""
    found = extract_answer_with_method(text, fallback_last_number)
    return found.answer if found else None


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------

_MATH_WORDS = {"pi", "sqrt", "ln", "log", "sin", "cos", "tan", "exp", "infty", "inf", "oo", "frac"}
# "12 thousand" is not 12 (also once spaces are gone: normalisation runs again before parsing)
_SCALE = re.compile(r"(?:hundred|thousand|million|billion|dozen)|(?:k|bn)\b", re.IGNORECASE)
_UNIT_TAIL = re.compile(
    r"^(?P<num>[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:/\d+)?)\s*(?P<pct>%)?\s*"
    r"(?P<unit>[A-Za-z][A-Za-z.]*(?:\s+[A-Za-z][A-Za-z.]*)*(?:\s*\^?\s*\{?[23]\}?)?)$"
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_LATEX_SPACING = re.compile(r"\\[,!;:> ]|~")
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|mathrm|mbox|mathbf|operatorname)\s*\{([^{}]*)\}")


def normalize_answer(answer: str) -> str:
    """Canonical string form of an answer: no delimiters, currency, units, separators or spaces."""
    text = answer.strip()
    for opener, closer in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if (
            text.startswith(opener)
            and text.endswith(closer)
            and len(text) > len(opener) + len(closer)
        ):
            text = text[len(opener) : -len(closer)].strip()
    boxed = last_boxed(text)
    if boxed is not None:
        text = boxed
    text = _LATEX_SPACING.sub(" ", text)
    text = _TEXT_COMMAND.sub(r" \1", text)
    text = text.replace("\\$", "").replace("\\%", "%").replace("\\left", "").replace("\\right", "")
    text = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°", "", text)
    text = text.replace("$", "").strip()
    # "x = 5" / "k=3": keep the value side of a single short assignment.
    assignment = re.fullmatch(r"\s*[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(.+)", text)
    if assignment:
        text = assignment.group(1)
    text = text.strip().rstrip(".;:!?").strip()
    text = _THOUSANDS.sub("", text)
    unit = _UNIT_TAIL.match(text)
    if (
        unit
        and unit.group("unit").split()[0].lower() not in _MATH_WORDS
        and not _SCALE.match(unit.group("unit"))
        and (len(unit.group("unit")) >= 2 or re.search(r"\s[mgshl]$", text))  # "5 m", never "2x"
    ):
        text = unit.group("num") + (unit.group("pct") or "")
    text = text.replace(" ", "")
    if re.fullmatch(r"[-+]?\d+\.\d*?0+", text):
        text = text.rstrip("0").rstrip(".")  # "12.50" -> "12.5", "3.0" -> "3"
    return text


# ---------------------------------------------------------------------------------------------
# LaTeX and safe sympy parsing
# ---------------------------------------------------------------------------------------------


class UnparseableAnswer(ValueError):
    """The answer cannot be turned into a sympy expression safely."""


def _replace_command_with_args(text: str, command: str, arity: int, build: Any) -> str:
    """Replace ``\\command{a}{b}`` (brace-matched, or single-character args) via build(*args)."""
    while True:
        start = text.find(command)
        if start < 0:
            return text
        cursor = start + len(command)
        args: list[str] = []
        for _ in range(arity):
            while cursor < len(text) and text[cursor] == " ":
                cursor += 1
            if cursor >= len(text):
                raise UnparseableAnswer(f"{command} without arguments")
            if text[cursor] == "{":
                content = _match_braces(text, cursor)
                if content is None:
                    raise UnparseableAnswer("unbalanced braces")
                args.append(content)
                cursor += len(content) + 2
            else:  # \frac12 style: one character per argument
                args.append(text[cursor])
                cursor += 1
        text = text[:start] + build(*args) + text[cursor:]


def _replace_sqrt(text: str) -> str:
    text = re.sub(r"\\sqrt\s*\[([^\]]+)\]\s*\{", r"\\root{\1}{", text)
    text = _replace_command_with_args(text, "\\root", 2, lambda n, a: f"(({a})**(1/({n})))")
    return _replace_command_with_args(text, "\\sqrt", 1, lambda a: f"sqrt({a})")


def latex_to_plain(text: str) -> str:
    """Rewrite the common LaTeX answer forms into plain sympy syntax."""
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = text.replace("\\cdot", "*").replace("\\times", "*").replace("\\div", "/")
    text = text.replace("\\pi", " pi ").replace("\\infty", " oo ")
    text = _replace_sqrt(text)
    text = _replace_command_with_args(text, "\\frac", 2, lambda a, b: f"(({a})/({b}))")
    text = text.replace("{", "(").replace("}", ")")
    return text


_ALLOWED_CHARS = re.compile(r"[0-9A-Za-z_+\-*/^().\s]*")
_ALLOWED_NAMES = {"sqrt", "pi", "oo", "exp", "log", "ln", "sin", "cos", "tan", "E", "I"}
_TRANSFORMATIONS = standard_transformations + (
    rationalize,
    convert_xor,
    implicit_multiplication_application,
)


def _check_tokens(plain: str) -> None:
    """Refuse anything but numbers, arithmetic, brackets, whitelisted names and 1-letter symbols."""
    if len(plain) > MAX_EXPRESSION_CHARS:
        raise UnparseableAnswer("expression too long")
    if not _ALLOWED_CHARS.fullmatch(plain):
        raise UnparseableAnswer("unexpected characters")
    if re.search(r"\.\s*[A-Za-z_]", plain) or "__" in plain:
        raise UnparseableAnswer("attribute access")
    for name in re.findall(r"[A-Za-z_]+", plain):
        if len(name) > 1 and name not in _ALLOWED_NAMES:
            raise UnparseableAnswer(f"unknown name {name!r}")


def _check_power_sizes(expr: sympy.Basic) -> None:
    """Refuse numeric powers whose evaluation would be huge (9^9^9 and the like)."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and not node.exp.free_symbols:
            exponent = node.exp
            for inner in sympy.preorder_traversal(exponent):
                if isinstance(inner, sympy.Pow) and inner is not exponent:
                    _check_power_sizes(inner)
            value = sympy.N(exponent, 15)
            if value.is_real and abs(value) > MAX_NUMERIC_EXPONENT:
                raise UnparseableAnswer("exponent too large")


_LOCALS = {"e": sympy.E, "i": sympy.I, "ln": sympy.log, "pi": sympy.pi, "oo": sympy.oo}


def _parse_plain(plain: str) -> sympy.Expr:
    _check_tokens(plain)
    try:
        unevaluated = parse_expr(
            plain, local_dict=dict(_LOCALS), transformations=_TRANSFORMATIONS, evaluate=False
        )
        _check_power_sizes(unevaluated)
        return parse_expr(plain, local_dict=dict(_LOCALS), transformations=_TRANSFORMATIONS)
    except UnparseableAnswer:
        raise
    except Exception as error:  # sympy raises many types on malformed input
        raise UnparseableAnswer(f"cannot parse {plain!r}: {type(error).__name__}") from error


def _parse_latex_fallback(text: str) -> sympy.Expr:
    """sympy's own LaTeX parser (needs antlr4-python3-runtime 4.11); only for residual commands."""
    try:
        from sympy.parsing.latex import parse_latex

        return parse_latex(text)
    except Exception as error:
        raise UnparseableAnswer(f"cannot parse LaTeX {text!r}: {type(error).__name__}") from error


@dataclass(frozen=True)
class ParsedAnswer:
    """A normalised answer as sympy: value, and whether it was written as a percentage."""

    value: sympy.Expr
    percent: bool


def parse_answer(answer: str) -> ParsedAnswer:
    """Normalise and parse one answer string; raises UnparseableAnswer."""
    text = normalize_answer(answer)
    if not text:
        raise UnparseableAnswer("empty answer")
    percent = text.endswith("%")
    if percent:
        text = text[:-1]
    plain = latex_to_plain(text) if "\\" in text else text.replace("{", "(").replace("}", ")")
    if "\\" in plain:
        value = _parse_latex_fallback(text)
        _check_power_sizes(value)
    else:
        value = _parse_plain(plain)
    if not isinstance(value, sympy.Expr):
        raise UnparseableAnswer(f"not an expression: {answer!r}")
    return ParsedAnswer(value, percent)


# ---------------------------------------------------------------------------------------------
# Equivalence
# ---------------------------------------------------------------------------------------------


class AnswerTimeout(Exception):
    """sympy ran past the time budget."""


@contextlib.contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise AnswerTimeout after `seconds` (SIGALRM; only in the main thread, else unguarded)."""
    usable = (
        seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise AnswerTimeout(f"sympy exceeded {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _is_exact_rational(value: sympy.Expr) -> bool:
    return bool(value.is_Rational)


def _values_equal(left: sympy.Expr, right: sympy.Expr) -> bool:
    if left == right:
        return True
    symbols = left.free_symbols | right.free_symbols
    if not symbols:
        if _is_exact_rational(left) and _is_exact_rational(right):
            return False  # both exact and structurally different
        difference = sympy.N(left - right, 30)
        if not difference.is_number or difference.has(sympy.nan):
            return False
        if difference == 0:
            return True
        scale = max(1.0, abs(complex(sympy.N(right, 30))))
        # A written decimal against an exact irrational is a rounded value: allow 1e-6 relative.
        tolerance = 1e-6 if (left.is_Rational or right.is_Rational) else 1e-12
        return abs(complex(difference)) <= tolerance * scale
    if sympy.simplify(left - right) == 0:
        return True
    # Fall back to agreement at a few fixed points (guards against simplify's blind spots).
    ordered = sorted(symbols, key=lambda symbol: symbol.name)
    for point in (0.37, 1.91, -2.63):
        substitution = {symbol: point + index * 0.71 for index, symbol in enumerate(ordered)}
        try:
            a = complex(sympy.N(left.subs(substitution), 20))
            b = complex(sympy.N(right.subs(substitution), 20))
        except (TypeError, ValueError):
            return False
        if abs(a - b) > 1e-9 * max(1.0, abs(b)):
            return False
    return True


def _split_tuple(text: str) -> list[str] | None:
    """'(1, 2)' or '1, 2' -> ['1', '2'] at top-level commas; None when there is no tuple."""
    inner = text.strip()
    if inner[:1] in "([" and inner[-1:] in ")]":
        inner = inner[1:-1]
    parts, depth, current = [], 0, ""
    for char in inner:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts] if len(parts) > 1 else None


def _as_word(normal: str) -> str | None:
    """Lower-cased text for word answers and choice letters ('(B)' -> 'b'); None for math."""
    bare = normal.strip("()").strip()
    if re.fullmatch(r"[A-Za-z]{2,}", bare) and bare.lower() not in _MATH_WORDS:
        return bare.lower()
    if re.fullmatch(r"\([A-Ea-e]\)", normal):
        return bare.lower()
    return None


def _parsed_equal(left: ParsedAnswer, right: ParsedAnswer) -> bool:
    if left.percent == right.percent:
        return _values_equal(left.value, right.value)
    percent, other = (left, right) if left.percent else (right, left)
    return _values_equal(percent.value, other.value) or _values_equal(
        percent.value / 100, other.value
    )


def answers_equal(a: str, b: str, time_budget_s: float = DEFAULT_TIME_BUDGET_S) -> bool:
    """True iff two answer strings denote the same value (see module doc for the rules)."""
    return _compare(a, b, time_budget_s)[0]


def _compare(a: str, b: str, time_budget_s: float) -> tuple[bool, str]:
    norm_a, norm_b = normalize_answer(a), normalize_answer(b)
    if norm_a and norm_a == norm_b:
        return True, "identical after normalisation"
    word_a, word_b = _as_word(norm_a), _as_word(norm_b)
    if word_a is not None or word_b is not None:
        # Words and choice letters ("Monday", "(B)") compare as case-insensitive text.
        if word_a is not None and word_a == word_b:
            return True, "same word"
        return False, "different words"
    tuple_a, tuple_b = _split_tuple(norm_a), _split_tuple(norm_b)
    if tuple_a is not None or tuple_b is not None:
        if tuple_a is None or tuple_b is None or len(tuple_a) != len(tuple_b):
            return False, "tuple shape differs"
        verdicts = [_compare(x, y, time_budget_s) for x, y in zip(tuple_a, tuple_b)]
        return all(ok for ok, _ in verdicts), "element-wise tuple comparison"
    try:
        with time_budget(time_budget_s):
            parsed_a, parsed_b = parse_answer(norm_a), parse_answer(norm_b)
            equal = _parsed_equal(parsed_a, parsed_b)
    except AnswerTimeout as error:
        return False, f"timeout: {error}"
    except UnparseableAnswer as error:
        return False, f"unparseable: {error}"
    except (TypeError, ValueError, ZeroDivisionError, RecursionError) as error:
        return False, f"sympy error: {type(error).__name__}"
    return equal, "sympy-equal" if equal else "values differ"


def _gold_answer(gold: str) -> str:
    """Gold may be a bare answer or a full reference solution ('#### 72', '\\boxed{..}')."""
    if _HASHES.search(gold) or _BOXED.search(gold) or _ANSWER_IS.search(gold):
        found = extract_answer(gold, fallback_last_number=False)
        if found is not None:
            return found
    return gold


METHOD = "final_answer_marker+sympy"
FALLBACK_METHOD = "last_number+sympy"

# Worked arithmetic in a solution ("3 x 4 = 12", "11 = 33 x 3"): numbers and + - x * / only, no
# variables, units or words between them. A training solution whose working states a false equation
# teaches wrong arithmetic even when its final answer happens to match (as in MetaMath's FOBAR rows,
# where the answer can be right for the wrong reason).
_ARITH_NUM = r"\$?\d[\d,]*(?:\.\d+)?"
_ARITH_SIDE = rf"\(?\s*{_ARITH_NUM}\s*\)?(?:\s*[-+x×*/÷]\s*\(?\s*{_ARITH_NUM}\s*\)?)*"
_WORKED_EQUATION = re.compile(rf"(?<![\w.^/]){_ARITH_SIDE}(?:\s*=\s*{_ARITH_SIDE})+(?![\w.]*\d)(?!\s*[x×*/^(])")


def _arith_value(side: str) -> Fraction | None:
    expr = side.replace("$", "").replace(",", "").replace("×", "*").replace("÷", "/")
    expr = re.sub(r"(?<=[\d)])\s*x\s*(?=[\d(])", "*", expr).strip()
    if not re.fullmatch(r"[\d.\s()+\-*/]+", expr):
        return None
    try:
        return _exact(ast.parse(expr, mode="eval").body)
    except (SyntaxError, ZeroDivisionError, ValueError):
        return None


def _exact(node: ast.AST) -> Fraction:
    """Exact value of a parsed + - * / expression of numbers (anything else raises ValueError)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_exact(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        a, b = _exact(node.left), _exact(node.right)
        return a + b if isinstance(node.op, ast.Add) else a - b if isinstance(node.op, ast.Sub) \
            else a * b if isinstance(node.op, ast.Mult) else a / b
    raise ValueError("not plain arithmetic")


def false_equation(text: str) -> str | None:
    """The first worked equation in `text` whose two sides differ (allowing the stated side to be
    the other rounded to the decimals it shows), or None when all that can be checked holds."""
    for m in _WORKED_EQUATION.finditer(text):
        sides = m.group(0).split("=")  # a chain "7 = 3 + 4 = 8": every side equals the first
        if not re.search(r"[-+x×*/÷]", m.group(0)):
            continue  # "5 = 5": nothing worked out
        values = [_arith_value(side) for side in sides]
        if any(v is None for v in values):
            continue
        decimals = max(len(s.split(".")[1]) if "." in s else 0 for s in re.findall(r"\d[\d,]*(?:\.\d+)?", m.group(0)))
        # the stated side may be the other rounded to the decimals it shows ("10 / 3 = 3.33")
        if any(v != values[0] and round(float(v), decimals) != round(float(values[0]), decimals) for v in values[1:]):
            return m.group(0).strip()
    return None


def math_verdict(
    model_text: str,
    gold: str | float,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    fallback_last_number: bool = False,
) -> Verdict:
    """The verdict on one solution: ok iff its explicit final answer equals the gold answer.

    ok is True or False, never unknown: a solution with no acceptable final answer fails. The
    method is ``final_answer_marker+sympy`` (``last_number+sympy`` when the evaluation-only
    fallback fired); the evidence names the marker, both answers and the comparison.
    """
    gold_answer = _gold_answer(str(gold))
    found = final_answer(model_text or "", fallback_last_number, time_budget_s)
    method = FALLBACK_METHOD if found.method == "last_number" else METHOD
    if found.answer is None:
        return Verdict.failed(method, f"no answer: {found.reason}")
    wrong_step = None if fallback_last_number else false_equation(model_text)
    if wrong_step is not None:  # training data: the working must hold too, not only the answer
        return Verdict.failed(method, f"a worked equation is false: {wrong_step!r}")
    ok, why = _compare(found.answer, gold_answer, time_budget_s)
    evidence = f"{'match' if ok else 'mismatch'} ({found.method}): {found.answer!r} vs gold {gold_answer!r}; {why}"
    return Verdict(ok, method, evidence)


def verify_answer(
    model_text: str,
    gold: str | float,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    fallback_last_number: bool = False,
) -> dict[str, Any]:
    """`math_verdict` as a dict: ``{"ok", "detail", "extracted", "method"}``."""
    verdict = math_verdict(model_text, gold, time_budget_s, fallback_last_number)
    found = final_answer(model_text or "", fallback_last_number, time_budget_s)
    return {"ok": bool(verdict.ok), "detail": verdict.evidence, "extracted": found.answer,
            "method": verdict.method}
