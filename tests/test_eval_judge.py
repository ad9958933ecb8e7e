"""Pairwise judge (order randomisation, logprob preferences) and rubric grading."""

from __future__ import annotations

import asyncio

import pytest

from synthloom.eval.judge import (
    PairwiseConfig,
    judge_pairwise,
    judge_rubric,
    parse_label,
    parse_rating,
    swap_for,
)
from synthloom.llm.scripted import ScriptedModel

ITEMS = [{"instruction": f"Name a colour number {i}.", "output_1": "Blue.", "output_2": f"Red is a warm colour ({i})."}
         for i in range(8)]


def test_order_is_randomised_per_instruction_and_seeded():
    orders = [swap_for(item["instruction"], seed=0) for item in ITEMS]
    assert any(orders) and not all(orders)
    assert orders == [swap_for(item["instruction"], seed=0) for item in ITEMS]  # deterministic
    assert orders != [swap_for(item["instruction"], seed=1) for item in ITEMS]


def test_text_label_maps_back_through_the_swap():
    # The judge always answers "A": the model wins exactly when its output was shown first.
    annotations = asyncio.run(judge_pairwise(ScriptedModel(["A"]), ITEMS, PairwiseConfig(top_logprobs=0)))
    for a in annotations:
        assert a["preference_source"] == "text"
        assert a["p_model"] == (1.0 if a["swapped"] else 0.0)
        assert a["shown_first"] == ("output_2" if a["swapped"] else "output_1")
        assert a["preference"] == 1 + a["p_model"]


def test_unparseable_judgment_is_kept_with_a_reason():
    [a] = asyncio.run(judge_pairwise(ScriptedModel(["I cannot decide."]), ITEMS[:1], PairwiseConfig(top_logprobs=0)))
    assert a["preference"] is None and a["reject_reason"] == "unparseable_judgment"


def test_label_and_rating_parsers():
    assert parse_label("Answer B is better", ("A", "B")) == 1
    assert parse_label("BA", ("A", "B")) is None
    assert parse_label("m", ("m", "M")) == 0
    assert parse_rating("Rating: [[8]]") == 8
    assert parse_rating("I give it a score of 11 then 7") == 7
    assert parse_rating("none") is None


@pytest.fixture(scope="module")
def embedded():
    from synthloom.llm.embedded import EmbeddedModel

    model = EmbeddedModel(n_ctx=4096, n_slots=8)
    yield model
    model.close()


@pytest.mark.slow
def test_pairwise_judge_with_logprobs_on_embedded_model(embedded):
    items = ITEMS[:6]
    annotations = asyncio.run(judge_pairwise(embedded, items, PairwiseConfig(seed=0, max_tokens=2)))
    assert [a["swapped"] for a in annotations] == [swap_for(i["instruction"], 0) for i in items]
    assert {a["swapped"] for a in annotations} == {True, False}
    judged = [a for a in annotations if a["preference"] is not None]
    assert judged, [a["judge_raw"] for a in annotations]
    for a in judged:
        assert 0.0 <= a["p_model"] <= 1.0 and 1.0 <= a["preference"] <= 2.0
    soft = [a for a in judged if a["preference_source"] == "logprobs"]
    assert soft, "the embedded model returns top_logprobs: preferences should come from them"
    # determinism: the same seed gives the same order and labels; the probabilities themselves can
    # move by ~1e-2 when requests share a llama.cpp batch differently (see docs/embedded.md)
    again = asyncio.run(judge_pairwise(embedded, items, PairwiseConfig(seed=0, max_tokens=2)))
    assert [a["swapped"] for a in again] == [a["swapped"] for a in annotations]
    for a, b in zip(again, annotations):
        assert (a["p_model"] is None) == (b["p_model"] is None)
        if a["p_model"] is not None:
            assert abs(a["p_model"] - b["p_model"]) < 0.08


def test_rubric_on_embedded_model(embedded):
    graded = asyncio.run(judge_rubric(embedded, [{"instruction": "What is 2+2?", "output": "4"}]))
    g = graded[0]
    assert (g["score"] is None and g["reject_reason"] == "unparseable_rating") or 1 <= g["score"] <= 10
