"""Pairwise judge (order randomisation, logprob preferences) and rubric grading."""

from __future__ import annotations

import asyncio

import pytest

from synthloom.eval.judge import (
    PairwiseConfig,
    judge_pairwise,
    judge_rubric,
    rubric_score,
    swap_for,
)
from synthloom.llm.base import ChatResponse, Choice
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
        assert a["preference_source"] in ("label", "logprobs@label")
        assert a["p_model"] == (1.0 if a["swapped"] else 0.0)
        assert a["shown_first"] == ("output_2" if a["swapped"] else "output_1")
        assert a["preference"] == 1 + a["p_model"]


def test_unparseable_judgment_is_kept_with_a_reason():
    [a] = asyncio.run(judge_pairwise(ScriptedModel(["I cannot decide."]), ITEMS[:1], PairwiseConfig(top_logprobs=0)))
    assert a["preference"] is None and a["reject_reason"] == "judge_unknown"


@pytest.mark.parametrize("reply", ["A: When you", "Answer B is better", "A or B", "The first one", "BA", "",
                                   "Which answer is better? Reply with only the letter A or B."])
def test_a_judge_reply_that_is_not_a_lone_label_is_unknown_never_a_vote(reply):
    [a] = asyncio.run(judge_pairwise(ScriptedModel([reply]), ITEMS[:1], PairwiseConfig(top_logprobs=0)))
    assert a["preference"] is None and a["reject_reason"] == "judge_unknown"


def test_labels_that_differ_only_by_case_need_an_exact_match():
    [a] = asyncio.run(judge_pairwise(ScriptedModel(["m"]), ITEMS[:1], PairwiseConfig(labels=("m", "M"), top_logprobs=0)))
    assert a["p_model"] == (1.0 if a["swapped"] else 0.0)


def test_rubric_reads_a_lone_rating_only():
    def score(text):
        return rubric_score(ChatResponse([Choice(text)]))

    assert score("8") == 8 and score(" 10 ") == 10 and score("[[7]]") == 7
    for text in ("Rating: [[8]]", "I give it a score of 11 then 7", "11", "0", "none", "7/10", ""):
        assert score(text) is None


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
    # every answer of the constrained judge is a label, read at the label position
    assert len(judged) == len(items) and all(a["preference_source"] == "logprobs@label" for a in judged)
    soft = [a for a in judged if a["preference_source"] == "logprobs@label"]
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
    assert g["reject_reason"] is None and 1 <= g["score"] <= 10 and g["judge_raw"] == str(g["score"])
