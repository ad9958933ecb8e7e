"""EmbeddedModel.score: token log-probabilities of given texts (teacher forcing), real SmolLM2."""

from __future__ import annotations

import asyncio

import pytest

from synthloom.llm.base import ChatRequest, InvalidRequestError
from synthloom.llm.embedded import EmbeddedModel

ORDERED = ["The cat sat on the mat.", "I drink a cup of tea every morning.", "Water boils at one hundred degrees."]


def shuffled(text: str) -> str:
    words = text.rstrip(".").split()
    return " ".join(reversed(words)) + "."


@pytest.fixture(scope="module")
def model():
    m = EmbeddedModel(n_slots=4, n_ctx=4096)
    yield m
    m.close()


async def test_scores_equal_the_logprobs_the_model_generated_with(model):
    request = ChatRequest(messages=[{"role": "user", "content": "Name a fruit."}], max_tokens=12, temperature=0, logprobs=True)
    generated = (await model.chat([request]))[0].choices[0]
    prefix = model.template.render(request.messages)
    [score] = await model.score([generated.text], prefixes=[prefix])
    assert [t.token for t in score.tokens] == [t.token for t in generated.logprobs]
    assert [t.logprob for t in score.tokens] == [t.logprob for t in generated.logprobs]


async def test_scores_do_not_depend_on_reuse_or_on_what_runs_beside_them(model):
    alone = await model.score(ORDERED)
    again = await model.score(ORDERED)  # prompt cells now kept in the slots
    chats = [ChatRequest(messages=[{"role": "user", "content": f"Count to {i}."}], max_tokens=16, seed=i) for i in range(3)]
    _, beside = await asyncio.gather(model.chat(chats), model.score(ORDERED))
    key = [[t.logprob for t in s.tokens] for s in alone]
    assert [[t.logprob for t in s.tokens] for s in again] == key
    assert [[t.logprob for t in s.tokens] for s in beside] == key


async def test_fluent_text_is_more_expected_than_its_reversal(model):
    fluent = await model.score(ORDERED)
    reversed_ = await model.score([shuffled(t) for t in ORDERED])
    for f, r in zip(fluent, reversed_):
        assert len(f.tokens) > 3 and all(t.logprob <= 0 for t in f.tokens)
        assert f.perplexity < r.perplexity
    assert "".join(t.token for t in fluent[0].tokens) == ORDERED[0]


async def test_bad_score_requests_are_clear_errors(model):
    with pytest.raises(InvalidRequestError, match="empty"):
        await model.score([""])
    with pytest.raises(InvalidRequestError, match="context"):
        await model.score(["word " * 5000])
    with pytest.raises(InvalidRequestError, match="prefixes"):
        await model.score(["a", "b"], prefixes=["x"])
