"""The generator held-out set is disjoint from training by construction (template and signature)."""

from __future__ import annotations

import pytest

from synthloom.selfimprove.data import (
    Guard,
    Problem,
    disjoint,
    problem_sets,
    skeleton,
    template_diversity,
)


@pytest.fixture(scope="module")
def sets() -> tuple[list[Problem], list[Problem]]:
    return problem_sets(1024, 100, seed=0)  # the experiment's held-out size and its largest pool


def test_skeleton_masks_names_numbers_case_and_space_only():
    a = skeleton("Alice  has 5 more apples than Ben. Ben has 3 apples. How many apples does Alice have?")
    b = skeleton("Quinn has 12 more apples than Zed. zed has 7 apples.\nHow many apples does Quinn have?")
    assert a == b == "<name> has <n> more apples than <name>. <name> has <n> apples. how many apples does <name> have?"
    assert skeleton("Twice as many: three quarters of $1,250.50 is 75%.") == "<n> times as many: <n> <n> of $<n> is <n>%."
    # a different item or question is a different template
    assert a != skeleton("Alice has 5 more marbles than Ben. Ben has 3 marbles. How many marbles does Alice have?")
    assert skeleton("The ratio is 7:5.") == "the ratio is <n>:<n>."


def test_heldout_is_disjoint_from_256_and_1024_training_problems(sets):
    train, heldout = sets
    assert len(train) == 1024 and len(heldout) == 100
    held_skeletons = {skeleton(p.question) for p in heldout}
    held_signatures = {p.signature for p in heldout}
    assert all(p.signature for p in heldout + train)
    for n in (256, 1024):
        assert not held_skeletons & {skeleton(p.question) for p in train[:n]}
        assert not held_signatures & {p.signature for p in train[:n]}
        assert not {p.question for p in heldout} & {p.question for p in train[:n]}
    # every family is represented in the held-out set, and the pool is nested in n
    assert {p.family for p in heldout} == {p.family for p in train}
    assert problem_sets(256, 100, seed=0) == (train[:256], heldout)


def _variant(problem: Problem, question: str, signature: str = "") -> Problem:
    return Problem("x", question, problem.answer, family=problem.family, signature=signature)


def test_guard_excludes_problems_equal_up_to_names_or_numbers(sets):
    train, heldout = sets
    guard = Guard(train[:256])
    source = train[0]
    assert not guard.admits(source)  # a training problem itself
    renamed = source.question
    for name in ("Alice", "Ben", "Carla", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira", "Leo",
                 "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor"):
        renamed = renamed.replace(name, "Zelda")
    assert not guard.admits(_variant(source, renamed))  # equal up to names
    renumbered = "".join("9" if c.isdigit() else c for c in source.question)
    assert not guard.admits(_variant(source, renumbered))  # equal up to numbers
    # same (family, equations, numbers) in a new wording: excluded by the signature
    assert not guard.admits(_variant(source, "A brand new sentence nobody wrote.", source.signature))
    assert guard.admits(_variant(source, "A brand new sentence nobody wrote.", "other|signature"))
    assert all(guard.admits(p) for p in heldout)
    assert disjoint(train[:10] + heldout[:3], train[:256]) == heldout[:3]


def test_template_diversity_counts_distinct_skeletons_overall_and_per_family():
    ps = [Problem("a", "Ann has 3 pens.", "3", family="f"), Problem("b", "Bo has 40 pens.", "40", family="f"),
          Problem("c", "Ann has 3 cups.", "3", family="f"), Problem("d", "What is 2 + 2?", "4", family="g")]
    assert template_diversity(ps) == {"problems": 4, "skeletons": 3, "per_family": {"f": 2, "g": 1}}
    assert template_diversity([]) == {"problems": 0, "skeletons": 0, "per_family": {}}
