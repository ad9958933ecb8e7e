"""Answer extraction and sympy equivalence on the cases that break naive graders."""

from __future__ import annotations

import time

import pytest

from synthloom.verify.math import (
    answers_equal,
    extract_answer,
    extract_answer_with_method,
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
        (
            "\\boxed{3} at first, but really \\boxed{\\dfrac{a^{2}}{b_{1}}}.",
            "\\dfrac{a^{2}}{b_{1}}",
        ),
        ("The value of x is 12.", "12"),
        ("Therefore the value of $X$ is -3.", "-3"),
        ("The answer is 2.5. The next question is about 9 apples.", "2.5"),
        ("First I thought 5. Wait, the answer is 6.", "6"),
    ],
)
def test_extract_answer_finds_the_final_marker(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_last_boxed_matches_nested_braces_and_ignores_unclosed() -> None:
    assert last_boxed("x \\boxed{\\frac{1}{2}} y \\boxed{{a}{b}") == "\\frac{1}{2}"
    assert last_boxed("no box here") is None


def test_fallback_to_last_number_is_labelled_and_can_be_disabled() -> None:
    found = extract_answer_with_method("so we get 12 and then 15 apples")
    assert found is not None and (found.answer, found.method) == ("15", "last_number")
    assert extract_answer("so we get 12 and then 15 apples", fallback_last_number=False) is None
    assert extract_answer("no numbers at all") is None


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
    assert "answer_is" in verdict["detail"]
    wrong = verify_answer("The answer is 13.", "12")
    assert not wrong["ok"] and "mismatch" in wrong["detail"]
    missing = verify_answer("I do not know.", "12", fallback_last_number=False)
    assert missing == {"ok": False, "detail": "no answer found in model output", "extracted": None}


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
