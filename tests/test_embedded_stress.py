"""A mixed, concurrent workload on one embedded engine must give every request exactly what it
gets alone: prefix reuse and copies, queueing for slots, n>1, stop strings, JSON grammars,
scoring jobs and abandoned streams all share the batch."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest

from synthloom.llm.base import ChatRequest, TextDelta
from synthloom.llm.embedded import EmbeddedModel

SYSTEMS = ["You are a terse assistant.", "You are a helpful teacher. Answer in one short paragraph."]
FEW_SHOT = [{"role": "user", "content": "Capital of Italy?"}, {"role": "assistant", "content": "Rome."}]
QUESTIONS = ["Capital of Spain?", "Name a red fruit.", "What is 2 + 3?", "Name a large animal.", "Say hello.",
             "Name a colour.", "Capital of Japan?", "Name a planet."]
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 12}}, "required": ["answer"]}


def workload(rng: random.Random) -> list[ChatRequest]:
    out = []
    for i in range(20):
        messages = [{"role": "system", "content": SYSTEMS[i % 2]}]
        if i % 3 == 0:
            messages += FEW_SHOT  # a longer shared prefix
        messages.append({"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]})
        kw: dict = {"max_tokens": rng.randint(4, 20), "temperature": 0.8, "seed": i, "logprobs": True}
        if i % 5 == 1:
            kw["n"] = 2
        if i % 7 == 2:
            kw["stop"] = ["."]
        if i % 6 == 4:
            kw |= {"json_schema": SCHEMA, "max_tokens": 24}
        out.append(ChatRequest(messages=messages, **kw))
    return out


def fingerprint(response) -> list:
    return [(c.text, c.finish_reason, [(t.token, t.logprob) for t in c.logprobs or []]) for c in response.choices]


@pytest.mark.slow
@pytest.mark.parametrize("n_batch", [512, 24], ids=["whole-prompts", "chunked-prompts"])
async def test_mixed_concurrent_workload_equals_each_request_alone(n_batch):
    rng = random.Random(7)
    requests = workload(rng)
    texts = [f"{q} The answer is short." for q in QUESTIONS[:5]]
    # n_batch=24: prompts arrive in several chunks, so copies wait for leaders over several steps
    async with EmbeddedModel(n_slots=6, n_ctx=6144, n_batch=n_batch) as model:
        alone = [fingerprint((await model.chat([r]))[0]) for r in requests]
        scores_alone = [[t.logprob for t in s.tokens] for s in await model.score(texts)]

        async def late(r: ChatRequest, delay: float):
            await asyncio.sleep(delay)  # staggered arrivals: some join mid-batch, some wait for a slot
            return fingerprint((await model.chat([r]))[0])

        async def abandoned(i: int):
            stream = model.stream(dataclasses.replace(requests[i], max_tokens=200, n=1))
            async for event in stream:
                if isinstance(event, TextDelta):
                    break
            await stream.aclose()

        async def scored():
            await asyncio.sleep(0.05)
            return [[t.logprob for t in s.tokens] for s in await model.score(texts)]

        results = await asyncio.gather(
            *(late(r, rng.random() * 0.3) for r in requests), abandoned(3), abandoned(8), scored()
        )
        together, scores_together = results[: len(requests)], results[-1]
        for i, (a, b) in enumerate(zip(alone, together)):
            assert a == b, f"request {i} differs when run concurrently"
        assert scores_together == scores_alone
        assert model.stats.prompt_tokens_reused > 0
        for _ in range(100):  # abandoned streams give their slots back
            if len(model.engine._free_ids) == model.options.n_slots:
                break
            await asyncio.sleep(0.05)
        assert len(model.engine._free_ids) == model.options.n_slots
