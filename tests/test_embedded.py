"""The embedded llama.cpp engine, with the real SmolLM2-135M model (loaded once per module)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import jsonschema
import numpy as np
import pytest

from synthloom.errors import ConfigError
from synthloom.llm.base import ChatRequest, ChatResponse, InvalidRequestError, TextDelta
from synthloom.llm.embedded import EmbeddedModel

CAT = [{"role": "user", "content": "Describe a cat in one sentence."}]


@pytest.fixture(scope="module")
def model():
    m = EmbeddedModel(n_slots=16)
    yield m
    m.close()


def req(messages=CAT, **kw) -> ChatRequest:
    kw.setdefault("max_tokens", 24)
    return ChatRequest(messages=messages, **kw)


async def one(model: EmbeddedModel, request: ChatRequest):
    return (await model.chat([request]))[0]


async def test_generates_text_with_usage(model):
    r = await one(model, req(temperature=0, max_tokens=16))
    choice = r.choices[0]
    assert choice.text.strip()
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == len(model.prompt_tokens(req()))
    assert 1 <= r.usage.completion_tokens <= 16
    assert r.model == model.identity and model.identity.startswith("embedded:")


@pytest.mark.slow
async def test_same_seed_same_text_and_different_seeds_differ(model):
    a, b, c = await asyncio.gather(
        one(model, req(temperature=1.0, seed=7, max_tokens=12)),
        one(model, req(temperature=1.0, seed=7, max_tokens=12)),
        one(model, req(temperature=1.0, seed=8, max_tokens=12)),
    )
    again = await one(model, req(temperature=1.0, seed=7, max_tokens=12))
    assert a.text == b.text == again.text
    assert a.text != c.text


@pytest.mark.slow
async def test_n4_decodes_the_prompt_once(model):
    request = req(temperature=1.0, seed=3, n=4, max_tokens=10)
    st = model.stats
    before = st.prompt_tokens_decoded + st.prompt_tokens_reused
    r = await one(model, request)
    # decoded once, on one slot (part of it may already sit in that slot: prefix reuse)
    assert st.prompt_tokens_decoded + st.prompt_tokens_reused - before == len(model.prompt_tokens(request))
    assert len(r.choices) == 4
    assert len({c.text for c in r.choices}) > 1  # each sample has its own random stream
    assert all(c.text for c in r.choices)


async def test_stop_string_spanning_tokens_is_cut_and_not_emitted(model):
    full = await one(model, req(temperature=0, max_tokens=24))
    stop = full.text[12:17]
    cut = await one(model, req(temperature=0, max_tokens=24, stop=[stop], logprobs=True))
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    assert stop not in cut.text
    assert "".join(t.token for t in cut.choices[0].logprobs).startswith(cut.text)


async def test_max_tokens_gives_length(model):
    r = await one(model, req(temperature=0, max_tokens=3))
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3


async def test_json_schema_output_validates(model):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    msgs = [{"role": "user", "content": "Give a JSON person with a name and an age."}]
    r = await one(model, req(msgs, temperature=0.7, seed=1, max_tokens=48, json_schema=schema))
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.text), schema)


async def test_invalid_schema_is_a_clear_error(model):
    with pytest.raises(InvalidRequestError):
        await one(model, req(json_schema={"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}}))


async def test_logprobs_are_sane(model):
    r = await one(model, req(temperature=0, max_tokens=12, logprobs=True, top_logprobs=3))
    lps = r.choices[0].logprobs
    assert lps is not None and len(lps) == r.usage.completion_tokens
    for t in lps:
        assert t.logprob <= 0.0
        assert len(t.top) == 3
        # greedy picks the best token, so it is the first alternative
        assert t.top[0][0] == t.token and t.top[0][1] == pytest.approx(t.logprob)
        assert t.top[0][1] >= t.top[1][1] >= t.top[2][1]
        assert sum(np.exp(lp) for _, lp in t.top) <= 1.0 + 1e-6
    assert "".join(t.token for t in lps) == r.text


@pytest.mark.slow
async def test_sixteen_concurrent_requests_share_the_batch(model):
    prompts = [[{"role": "user", "content": f"Name one fact about the number {i}."}] for i in range(16)]
    before = model.stats.decode_calls
    results = await asyncio.gather(*(one(model, req(p, temperature=0.8, seed=i, max_tokens=8)) for i, p in enumerate(prompts)))
    assert all(r.text.strip() and r.choices[0].finish_reason in ("stop", "length") for r in results)
    assert model.stats.max_active_sequences >= 8
    # batched: far fewer decode calls than the 16 x 8 a one-at-a-time engine would make
    assert model.stats.decode_calls - before < 16 * 4


@pytest.mark.slow
async def test_request_text_is_the_same_alone_and_in_a_batch(model):
    target = req([{"role": "user", "content": "What is the capital of France?"}], temperature=0.9, seed=11, max_tokens=16)
    alone = await one(model, target)
    others = [req([{"role": "user", "content": f"Count to {i}."}], temperature=0.9, seed=i, max_tokens=16) for i in range(5)]
    batched = await model.chat(others[:3] + [target] + others[3:])
    assert batched[3].text == alone.text


async def test_logits_processor_steers_every_sequence():
    banana = None

    def favour_banana(tokens, logits):
        logits[banana] += 100.0  # a huge bias: the token must win

    m = EmbeddedModel(n_slots=2, n_ctx=512, logits_processors=[favour_banana])
    try:
        banana = m._file.tokenize(" banana", add_special=False)[0]
        r = await one(m, req(temperature=0.8, seed=1, max_tokens=4))
        piece = m._file.pieces[banana].decode()
        assert r.text == piece * 4
    finally:
        await m.aclose()


async def test_prompt_longer_than_context_is_invalid_request(model):
    long = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(InvalidRequestError, match="n_ctx"):
        await one(model, req(long))


async def test_n_larger_than_slots_is_invalid_request(model):
    with pytest.raises(InvalidRequestError, match="n_slots"):
        await one(model, req(n=17))


def test_bad_model_files_and_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        EmbeddedModel(str(tmp_path / "missing.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ConfigError, match="not a GGUF"):
        EmbeddedModel(str(junk))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ConfigError):
        EmbeddedModel(str(truncated))
    with pytest.raises(ConfigError, match="unknown embedded model option"):
        EmbeddedModel(n_slotz=4)
    with pytest.raises(ConfigError, match="positive integer"):
        EmbeddedModel(n_ctx=0)


async def test_closed_model_refuses_requests():
    m = EmbeddedModel(n_slots=1, n_ctx=256)
    await m.aclose()
    with pytest.raises(Exception, match="closed"):
        await one(m, req())


def test_top_p_keeps_exactly_the_nucleus_and_never_picks_forbidden_tokens():
    from synthloom.llm.embedded_sampling import sample_rows

    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.tile(np.log(probs).astype(np.float32), (4000, 1))
    us = np.random.default_rng(0).random(4000)
    picks = sample_rows(logits, np.ones(4000), np.full(4000, 0.7), us)
    counts = np.bincount(picks, minlength=4)
    assert counts[2] == counts[3] == 0  # 0.5 + 0.3 >= 0.7: the nucleus is {0, 1}
    assert abs(counts[0] / 4000 - 0.5 / 0.8) < 0.03
    masked = logits.copy()
    masked[:, 0] = -np.inf
    picks = sample_rows(masked, np.full(4000, 2.0), np.ones(4000), us)
    assert 0 not in picks and set(picks) == {1, 2, 3}


def test_sample_streams_depend_only_on_seed_and_sample_index():
    from synthloom.llm.embedded_sampling import make_rng

    assert make_rng(5, 0).random() == make_rng(5, 0).random()
    assert make_rng(5, 0).random() != make_rng(5, 1).random()
    assert make_rng(5, 1).random() != make_rng(6, 0).random()


def test_blocked_inverse_cdf_picks_the_same_token_as_a_full_float64_cdf():
    from synthloom.llm.embedded_sampling import sample_rows

    rng = np.random.default_rng(3)
    rows, vocab = 500, 1000  # not a multiple of the CDF block: exercises the padding
    logits = (rng.standard_normal((rows, vocab)) * 4).astype(np.float32)
    logits[:, rng.integers(0, vocab, 50)] = -np.inf  # forbidden tokens
    temps = rng.uniform(0.3, 1.5, rows)
    us = rng.random(rows)
    picks = sample_rows(logits, temps, np.ones(rows), us)
    x = logits.astype(np.float64) / temps[:, None]
    p = np.exp(x - x.max(axis=1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    ref = np.array([np.searchsorted(cdf[r], us[r], side="right") for r in range(rows)])
    near_boundary = np.array([np.abs(cdf[r] - us[r]).min() < 1e-5 for r in range(rows)])
    assert np.isfinite(logits[np.arange(rows), picks]).all()
    assert ((picks == ref) | near_boundary).all()
    assert (picks == ref).mean() > 0.99


async def test_stream_yields_the_same_text_piece_by_piece_and_stops_early_cleanly(model):
    request = req(temperature=0.9, seed=5, max_tokens=24, n=2)
    whole = (await model.chat([request]))[0]
    pieces: dict[int, list[str]] = {0: [], 1: []}
    events = [e async for e in model.stream(request)]
    for e in events[:-1]:
        assert isinstance(e, TextDelta)
        pieces[e.index].append(e.text)
    assert isinstance(events[-1], ChatResponse)
    assert ["".join(pieces[i]) for i in (0, 1)] == [c.text for c in whole.choices]
    assert min(len(p) for p in pieces.values()) > 3

    stop = whole.choices[0].text[6:10]
    cut = dataclasses.replace(request, stop=[stop], n=1)
    streamed = "".join([e.text async for e in model.stream(cut) if isinstance(e, TextDelta)])
    assert streamed == (await model.chat([cut]))[0].text and stop not in streamed

    it = model.stream(req([{"role": "user", "content": "Count to one hundred."}], max_tokens=200))
    async for _ in it:
        break
    await it.aclose()
    for _ in range(50):  # the engine frees the slot on its next step
        if len(model.engine._free_ids) == model.options.n_slots:
            break
        await asyncio.sleep(0.05)
    assert len(model.engine._free_ids) == model.options.n_slots
