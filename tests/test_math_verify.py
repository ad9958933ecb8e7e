"""Answer extraction and sympy equivalence on the cases that break naive graders."""

from __future__ import annotations

import time

import pytest

from synthloom.verify.math import (
    answers_equal,
    extract_answer,
    extract_answer_with_method,
    final_answer,
    math_verdict,
    last_boxed,
    normalize_answer,
    verify_answer,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She pays 3 + 4 = 7 dollars. The answer is 7.", "7"),
        ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
        ("The answer is: 1,234.", "1,234"),
        ("so the total is \\boxed{\\frac{1}{\\sqrt{2}}} in the end", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{\\dfrac{a^{2}}{b_{1}}}.", "\\dfrac{a^{2}}{b_{1}}"),
        ("The value of x is 12.", "12"),
        ("Therefore the value of $X$ is -3.", "-3"),
        ("The answer is 2.5. Hope this helps!", "2.5"),
        ("We know the answer is 24, so x = 24 / 6 = 4. The value of x is 4.", "4"),
        ("**The answer is 7.**", "7"),
        ("The answer is 3 x 4 = 12.", "12"),
        ("First I thought 5. Wait, the answer is 6.", "6"),
    ],
)
def test_extract_answer_finds_the_final_marker(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_last_boxed_matches_nested_braces_and_ignores_unclosed() -> None:
    assert last_boxed("x \\boxed{\\frac{1}{2}} y \\boxed{{a}{b}") == "\\frac{1}{2}"
    assert last_boxed("no box here") is None


def test_fallback_to_last_number_is_opt_in_and_labelled() -> None:
    assert extract_answer("so we get 12 and then 15 apples") is None
    found = extract_answer_with_method("so we get 12 and then 15 apples", fallback_last_number=True)
    assert found is not None and (found.answer, found.method) == ("15", "last_number")
    assert extract_answer("no numbers at all", fallback_last_number=True) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I don't know. There are 12 apples and 3 boxes", "unsure"),
        ("The answer is not 3.", "negated"),
        ("Is it 3?", "no explicit final answer"),
        ("The answer is 3?", "question"),
        ("The answer is 3 or 4.", "alternative"),
        ("The answer is probably 3.", "hedged"),
        ("I think the answer is 3.", "hedged"),
        ("The answer is 3. The answer is 4.", "competing"),
        ("\\boxed{3} at first, but really \\boxed{4}.", "competing"),
        ("The answer is 2.5. The next question is about 9 apples.", "goes on"),
        ("So 3 x 4 = 12. The answer is \\boxed{1", "without an answer"),
        ("The answer is", "without an answer"),
        ("The answer is 3 x 4 = 13.", "does not hold"),
        ('End with "The answer is 12."', "no explicit final answer"),
        ("The answer is 12. Or is it?", "goes on"),
        ("", "empty"),
    ],
)
def test_strict_extraction_refuses_unclear_answers(text: str, reason: str) -> None:
    found = final_answer(text)
    assert found.answer is None and reason in found.reason


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("$1,234.50", "1234.5"),
        ("12 dollars", "12"),
        ("5 cm^2", "5"),
        ("x = 7", "7"),
        ("90^\\circ", "90"),
        ("\\$ 40", "40"),
        ("12\\text{ cm}", "12"),
        ("3.0", "3"),
        ("5 m", "5"),
        ("12 thousand", "12thousand"),
    ],
)
def test_normalize_strips_units_currency_and_separators(raw: str, normal: str) -> None:
    assert normalize_answer(raw) == normal


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1,234", "1234"),
        ("$12", "12"),
        ("0.5", "1/2"),
        ("\\frac{1}{2}", "0.5"),
        ("\\dfrac{3}{4}", "0.75"),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\left( 3, 4 \\right)", "(3,4)"),
        ("50%", "50"),
        ("50%", "0.5"),
        ("2x + 2", "2(x+1)"),
        ("-7", "-7.0"),
        ("1.4142136", "\\sqrt{2}"),
        ("\\frac12", "0.5"),
        ("Monday", "monday"),
        ("(B)", "(b)"),
    ],
)
def test_equivalent_answers(a: str, b: str) -> None:
    assert answers_equal(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("0.33", "1/3"),
        ("-12", "12"),
        ("50%", "5"),
        ("(3,4)", "(4,3)"),
        ("2x", "2"),
        ("1234", "123"),
        ("\\sqrt{2}", "1.41"),
        ("(B)", "(C)"),
        ("Monday", "5"),
    ],
)
def test_different_answers(a: str, b: str) -> None:
    assert not answers_equal(a, b)


def test_verify_answer_verdict_carries_extraction_and_reason() -> None:
    verdict = verify_answer("Each costs $3, so 4 cost $12.\nThe answer is $12.", "#### 12")
    assert verdict["ok"] and verdict["extracted"] == "$12"
    assert "answer_is" in verdict["detail"] and verdict["method"] == "final_answer_marker+sympy"
    wrong = verify_answer("The answer is 13.", "12")
    assert not wrong["ok"] and "mismatch" in wrong["detail"]
    missing = verify_answer("I do not know.", "12")
    assert not missing["ok"] and missing["extracted"] is None and "unsure" in missing["detail"]


def test_math_verdict_follows_the_contract() -> None:
    assert math_verdict("The answer is 12.", "12").ok is True
    rambling = math_verdict("There are 12 apples and 3 boxes", "3")
    assert rambling.ok is False and rambling.method == "final_answer_marker+sympy"
    lenient = math_verdict("There are 12 apples and 3 boxes", "3", fallback_last_number=True)
    assert lenient.ok is True and lenient.method == "last_number+sympy"


def test_malicious_and_pathological_inputs_are_refused_quickly() -> None:
    start = time.perf_counter()
    for hostile in (
        "__import__('os').system('true')",
        "9^9^9^9",
        "getattr(x, 'real')",
        "10**10**10",
    ):
        verdict = verify_answer(f"The answer is {hostile}", "1")
        assert not verdict["ok"]
        assert "unparseable" in verdict["detail"]
    assert time.perf_counter() - start < 2.0


def test_time_budget_interrupts_runaway_work() -> None:
    from synthloom.verify.math import AnswerTimeout, time_budget

    start = time.perf_counter()
    with pytest.raises(AnswerTimeout), time_budget(0.05):
        while True:
            pass
    assert time.perf_counter() - start < 1.0


def test_repeating_outputs_are_refused_fast() -> None:
    start = time.perf_counter()
    for degenerate in ("The answer is 1. " * 2000, "\\boxed{" * 3000):
        assert "repeating output" in final_answer(degenerate).reason
    assert final_answer("The answer is 1. " * 5).answer == "1"  # agreeing repeats are fine
    assert time.perf_counter() - start < 1.0
