"""Prefix reuse in the embedded engine: a free slot keeps its prompt's KV cells, and a new request
sharing a prefix decodes only the rest. It must be invisible in the output: text and logprobs are
bit-for-bit those of a fresh engine."""

from __future__ import annotations

import dataclasses

import pytest

from synthloom.llm.base import ChatRequest, chat_sync
from synthloom.llm.embedded import EmbeddedModel


def ask(content: str, **kw) -> ChatRequest:
    kw.setdefault("max_tokens", 16)
    return ChatRequest(messages=[{"role": "user", "content": content}], temperature=0.9, seed=5, logprobs=True, **kw)


def fingerprint(response) -> list[tuple[str, list[tuple[str, float]]]]:
    return [(c.text, [(t.token, t.logprob) for t in c.logprobs or []]) for c in response.choices]


TARGET = ask("Name three rivers in Europe.")
SIBLING = ask("Name three mountains in Asia.")  # same template and system prompt, different question


@pytest.fixture(scope="module")
def fresh():
    """What every request gives on a brand-new engine (nothing kept in any slot)."""
    out = {}
    for name, request in {"target": TARGET, "target_n3": dataclasses.replace(TARGET, n=3)}.items():
        m = EmbeddedModel(n_slots=4, n_ctx=2048)
        out[name] = fingerprint(chat_sync(m, [request])[0])
        assert m.stats.prompt_tokens_reused == 0
        m.close()
    return out


@pytest.mark.slow
async def test_reused_prefix_gives_the_fresh_engines_text_and_logprobs(fresh):
    async with EmbeddedModel(n_slots=1, n_ctx=2048) as m:  # one slot: every request lands on the kept prompt
        await m.chat([SIBLING])
        prompt = m.prompt_tokens(TARGET)
        decoded_before = m.stats.prompt_tokens_decoded
        after_sibling = (await m.chat([TARGET]))[0]
        reused = m.stats.prompt_tokens_reused
        assert 10 < reused < len(prompt)  # the shared template prefix, not the question
        assert m.stats.prompt_tokens_decoded - decoded_before == len(prompt) - reused
        assert fingerprint(after_sibling) == fresh["target"]

        # the very same prompt again: all but its last token is reused
        again = (await m.chat([TARGET]))[0]
        assert m.stats.prompt_tokens_reused - reused == len(prompt) - 1
        assert fingerprint(again) == fresh["target"]


@pytest.mark.slow
async def test_n_samples_after_reuse_match_a_fresh_engine(fresh):
    async with EmbeddedModel(n_slots=4, n_ctx=2048) as m:
        await m.chat([SIBLING, dataclasses.replace(SIBLING, seed=9)])  # two slots keep prompts
        r = (await m.chat([dataclasses.replace(TARGET, n=3)]))[0]
        assert m.stats.prompt_tokens_reused > 0
        assert fingerprint(r) == fresh["target_n3"]


async def test_shared_kv_mode_keeps_nothing():
    async with EmbeddedModel(n_slots=2, n_ctx=1024, batch_invariant=False) as m:
        await m.chat([ask("Say hi.", max_tokens=2)])
        await m.chat([ask("Say hi.", max_tokens=2)])
        assert m.stats.prompt_tokens_reused == 0


@pytest.mark.slow
async def test_requests_arriving_together_decode_their_shared_prefix_once(fresh):
    async with EmbeddedModel(n_slots=4, n_ctx=2048) as m:
        others = [ask(f"Name {k} colours of the rainbow.") for k in ("two", "three", "four")]
        prompts = [m.prompt_tokens(r) for r in [TARGET, *others]]
        results = await m.chat([TARGET, *others])
        st = m.stats
        # one request decodes the shared template; the others copy it and decode only their rest
        assert st.prompt_tokens_reused >= 3 * 15
        assert st.prompt_tokens_decoded + st.prompt_tokens_reused == sum(len(p) for p in prompts)
        assert fingerprint(results[0]) == fresh["target"]
        async with EmbeddedModel(n_slots=4, n_ctx=2048) as alone:
            for request, together in zip(others, results[1:]):
                assert fingerprint((await alone.chat([request]))[0]) == fingerprint(together)

