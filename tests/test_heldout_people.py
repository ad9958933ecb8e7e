"""The people-written held-out set: well-formed, gold answers checked, no generator templates."""

from __future__ import annotations

import re

import pytest

from synthloom.selfimprove.data import people_heldout, people_records, skeleton
from synthloom.verify.math import math_verdict

FIELDS = {"id", "question", "answer", "steps", "tags", "solution"}
_LINE = re.compile(r"^([\d.,\s+\-×÷*/()]+?)\s*=\s*(?:[\d.,\s+\-×÷*/()]+=\s*)*([\d.,]+)$")


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return people_records()


def _value(expression: str) -> float:
    """An arithmetic line's left side, evaluated (digits and + - × ÷ * / ( ) only)."""
    code = expression.replace("×", "*").replace("÷", "/").replace(",", "")
    if not re.fullmatch(r"[\d.\s+\-*/()]+", code):
        raise ValueError(f"not arithmetic: {expression!r}")
    return float(eval(code, {"__builtins__": {}}))  # noqa: S307 - digits and operators only, checked above


def test_records_are_well_formed_and_unique(records):
    assert len(records) >= 160
    assert all(set(r) == FIELDS for r in records)
    assert len({r["id"] for r in records}) == len(records)
    assert len({" ".join(r["question"].lower().split()) for r in records}) == len(records)
    assert len({skeleton(r["question"]) for r in records}) == len(records)  # no two share a template
    assert {r["steps"] for r in records} == {1, 2} and all(isinstance(r["tags"], list) for r in records)
    loaded = people_heldout()
    assert [p.id for p in loaded] == [r["id"] for r in records] and all(p.family == "people" for p in loaded)


def test_every_worked_solution_is_right_and_matches_the_gold_answer(records):
    for r in records:
        *lines, final = r["solution"].splitlines()
        assert final.startswith("The answer is ") and lines, r["id"]
        for line in lines:  # every step's arithmetic, recomputed
            match = _LINE.match(line)
            assert match, f"{r['id']}: not an arithmetic line: {line!r}"
            assert _value(match.group(1)) == pytest.approx(float(match.group(2).replace(",", ""))), line
        assert math_verdict(r["solution"], r["answer"]).ok, r["id"]
        # the gold answer is the last step's result
        assert math_verdict(f"The answer is {lines[-1].split('=')[-1].strip()}.", r["answer"]).ok, r["id"]


def test_the_check_rejects_a_wrong_gold_answer_or_wrong_arithmetic(records):
    first = records[0]
    assert not math_verdict(first["solution"], str(float(first["answer"]) + 1)).ok
    match = _LINE.match("3 × 4 = 13")
    assert match and _value(match.group(1)) != float(match.group(2))
    with pytest.raises(ValueError):
        _value("__import__('os')")


def test_no_question_shares_a_template_with_the_generator(records):
    from synthloom.mathgen import WORD_FAMILIES, generate_problems
    from synthloom.selfimprove.data import problem_sets

    train, heldout = problem_sets(1024, 100, seed=0)
    generated = [p["question"] for p in generate_problems(1500, seed=7, families=list(WORD_FAMILIES),
                                                          min_depth=1, max_depth=2)]
    generator = {skeleton(q) for q in generated + [p.question for p in train + heldout]}
    assert len(generator) > 100
    assert not generator & {skeleton(r["question"]) for r in records}
    # must-fail: a generator question, renamed and renumbered, is caught by the same test
    assert skeleton(generated[0].replace("1", "7").replace("2", "5")) in generator
