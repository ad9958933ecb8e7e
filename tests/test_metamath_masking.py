"""MetaMath backward questions: one mask per number, affixes kept, FOBAR and SV templates."""

from __future__ import annotations

import pytest

from synthloom.recipes.metamath_masking import (
    backward_questions,
    declarative_statement,
    fobar_question,
    is_number_token,
    mask_token,
    sv_question,
    sv_split,
)
from synthloom.verify.math import answers_equal

QUESTION = (
    "A shirt costs $12.50, and a 25% discount applies to 1,000 shirts. "
    "Sam buys three shirts and pays $40. How much change does Sam get?"
)


def test_one_backward_question_per_number_with_only_that_number_masked() -> None:
    results = backward_questions(QUESTION)
    assert [r.masked_value for r in results] == ["12.50", "25", "1000", "3", "40"]
    tokens = QUESTION.split(" ")
    for result in results:
        masked_tokens = result.question.split(" ")
        assert len(masked_tokens) == len(tokens)
        changed = [i for i, (a, b) in enumerate(zip(tokens, masked_tokens)) if a != b]
        assert changed == [result.token_index]
        assert result.question.count("x") == QUESTION.count("x") + 1


@pytest.mark.parametrize(
    ("token", "replacement", "value"),
    [
        ("$12.50,", "$x,", "12.50"),
        ("25%", "x%", "25"),
        ("50%.", "x%.", "50"),
        ("$40.", "$x.", "40"),
        ("1,000", "x", "1000"),
        ("7?", "x?", "7"),
        ("“12”", "x”", "12"),
        ("three", "x", "3"),
        ("half,", "x,", "50%"),
    ],
)
def test_mask_keeps_dollar_percent_and_punctuation(
    token: str, replacement: str, value: str
) -> None:
    token = token.removeprefix("“")  # the opening quote is not part of MetaMath's token rule
    assert mask_token(token) == (replacement, value)


@pytest.mark.parametrize("token", ["-5", "3:30", "(4", "2+3", "x2", "5kg", "10-12", "hello"])
def test_tokens_that_are_not_masked(token: str) -> None:
    assert not is_number_token(token)


def test_math_dataset_uses_capital_x_no_number_words_and_keeps_closing_dollar() -> None:
    results = backward_questions("If $x = 5$, what is three times $2x$ plus 4?", "math")
    assert [r.question for r in results] == [
        "If $x = X$, what is three times $2x$ plus 4?",
        "If $x = 5$, what is three times $2x$ plus X?",
    ]


def test_fobar_appends_the_forward_answer() -> None:
    masked = backward_questions(QUESTION)[4].question
    text = fobar_question(masked, "7.50")
    assert text == (
        f"{masked}\nIf we know the answer to the above question is 7.50, "
        "what is the value of unknown variable x?"
    )
    assert fobar_question("Q X?", "3", "math").endswith(
        "\n### If we know the answer to the above question is 3, what is the value of unknown variable $X$?"
    )


def test_sv_split_keeps_decimals_and_thousands_intact() -> None:
    masked = backward_questions(QUESTION)[3].question  # "three" masked
    context, sentence = sv_split(masked)
    assert sentence == "How much change does Sam get?"
    assert context.startswith("A shirt costs $12.50, and a 25% discount applies to 1,000 shirts.")
    assert context.endswith("Sam buys x shirts and pays $40.")


def test_sv_question_is_context_plus_declarative_statement() -> None:
    masked = backward_questions("Bob has 5 apples and buys 3 more. How many apples does Bob have?")[
        0
    ]
    context, sentence = sv_split(masked.question)
    statement = declarative_statement(sentence, "8")
    assert statement == "Bob has 8 apples."
    assert sv_question(context, statement) == (
        "Bob has x apples and buys 3 more. Bob has 8 apples. What is the value of unknown variable x?"
    )
    assert answers_equal(masked.masked_value, "5")


@pytest.mark.parametrize(
    ("sentence", "statement"),
    [
        ("How many cookies are there in the jar?", "There are 12 cookies in the jar."),
        ("How many clips did Natalia sell in May?", "Natalia sold 12 clips in May."),
        ("How much does Sam spend on pens?", "Sam spends 12 on pens."),
        ("What is the total cost?", "The total cost is 12."),
    ],
)
def test_rule_based_declarative_rewrites(sentence: str, statement: str) -> None:
    assert declarative_statement(sentence, "12") == statement


def test_unknown_shape_needs_the_model_rewrite() -> None:
    assert declarative_statement("Can you find the area?", "12") is None
