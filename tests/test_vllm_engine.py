"""The vLLM backend: request/response mapping and batching without vLLM; the real engine on a GPU.

The unit tests install a small stand-in `vllm` module (same names and output shapes as vLLM's
`LLM.chat`, `SamplingParams`, `RequestOutput`, `Logprob`) so the batcher, n, seeds, logprobs,
schema and error paths run here. The `gpu` test runs the real engine and skips cleanly without
vllm or CUDA.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import types
from types import SimpleNamespace as NS
from typing import ClassVar

import pytest

from synthloom.errors import ConfigError
from synthloom.llm.base import ChatRequest, InvalidRequestError
from synthloom.llm.spec import load_model
from synthloom.llm.vllm_engine import MISSING_VLLM, sampling_kwargs, to_chat_response


def fake_vllm_module() -> types.ModuleType:
    mod = types.ModuleType("vllm")
    sp = types.ModuleType("vllm.sampling_params")

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class StructuredOutputsParams:
        def __init__(self, json=None):
            self.json = json

    class LLM:
        instances: ClassVar[list] = []

        def __init__(self, model, **options):
            self.model, self.options, self.calls = model, options, []
            LLM.instances.append(self)

        def chat(self, conversations, params, use_tqdm=True):
            self.calls.append(len(conversations))
            outs = []
            for conv, p in zip(conversations, params):
                text = conv[-1]["content"]
                if "too long" in text:
                    raise ValueError("prompt is longer than the maximum model length")
                completions = []
                for i in range(p.n):
                    body = (json.dumps({"seed": p.seed, "i": i}) if getattr(p, "structured_outputs", None)
                            else f"{text} s{p.seed} #{i}")
                    ids = list(range(10, 10 + len(body.split())))
                    lps = None
                    if getattr(p, "logprobs", None) is not None:
                        lps = [{t: NS(logprob=-0.1, rank=1, decoded_token=f"w{t}"),
                                999: NS(logprob=-2.0, rank=2, decoded_token="alt")} for t in ids]
                    completions.append(NS(index=i, text=body, token_ids=ids, logprobs=lps,
                                          finish_reason="length" if p.max_tokens < 5 else "stop"))
                outs.append(NS(outputs=list(reversed(completions)), prompt_token_ids=[1] * len(text.split())))
            return outs

    mod.SamplingParams, mod.LLM, mod.sampling_params = SamplingParams, LLM, sp
    sp.StructuredOutputsParams = StructuredOutputsParams
    return mod


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = fake_vllm_module()
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


def test_sampling_kwargs_carry_every_parameter():
    r = ChatRequest([{"role": "user", "content": "hi"}], temperature=0.3, top_p=0.9, max_tokens=12,
                    stop=["\n"], seed=7, n=3, logprobs=True, top_logprobs=2)
    assert sampling_kwargs(r) == {"n": 3, "temperature": 0.3, "top_p": 0.9, "max_tokens": 12, "seed": 7,
                                  "stop": ["\n"], "logprobs": 2}
    assert "logprobs" not in sampling_kwargs(ChatRequest([{"role": "user", "content": "hi"}]))
    with pytest.raises(InvalidRequestError):
        sampling_kwargs(ChatRequest([{"role": "user", "content": "hi"}], n=0))


def test_response_mapping_orders_choices_and_maps_logprobs():
    out = NS(prompt_token_ids=[1, 2, 3], outputs=[
        NS(index=1, text="b", token_ids=[5], finish_reason="stop", logprobs=None),
        NS(index=0, text="a c", token_ids=[4, 6], finish_reason="length",
           logprobs=[{4: NS(logprob=-0.5, rank=2, decoded_token="a"), 8: NS(logprob=-0.1, rank=1, decoded_token="z")},
                     {6: NS(logprob=-0.2, rank=1, decoded_token=" c")}])])
    req = ChatRequest([{"role": "user", "content": "x"}], n=2, logprobs=True, top_logprobs=1)
    resp = to_chat_response(out, req, "m")
    assert [c.text for c in resp.choices] == ["a c", "b"]
    assert resp.choices[0].finish_reason == "length"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (3, 3)
    first = resp.choices[0].logprobs[0]
    assert (first.token, first.logprob, first.top) == ("a", -0.5, [("z", -0.1)])
    assert resp.choices[1].logprobs == []


def test_missing_vllm_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ConfigError) as e:
        load_model("vllm:some/model")
    assert str(e.value) == MISSING_VLLM and "\n" not in str(e.value)


def test_requests_are_batched_with_n_seeds_schema_and_logprobs(fake_vllm):
    model = load_model("vllm:org/tiny?gpu_memory_utilization=0.5&max_batch=8")
    llm = fake_vllm.LLM.instances[-1]
    assert model.identity == "vllm:org/tiny" and llm.options == {"gpu_memory_utilization": 0.5}

    async def go():
        reqs = [ChatRequest([{"role": "user", "content": f"q{i}"}], seed=100 + i, n=2) for i in range(10)]
        schema = {"type": "object", "properties": {"seed": {"type": "integer"}}}
        reqs.append(ChatRequest([{"role": "user", "content": "js"}], seed=5, json_schema=schema))
        reqs.append(ChatRequest([{"role": "user", "content": "lp"}], seed=6, logprobs=True, top_logprobs=1))
        out = await asyncio.gather(*(model.chat([r]) for r in reqs))
        await model.aclose()
        return [o[0] for o in out]

    out = asyncio.run(go())
    assert [c.text for c in out[3].choices] == ["q3 s103 #0", "q3 s103 #1"]
    assert json.loads(out[10].text) == {"seed": 5, "i": 0}
    assert out[11].choices[0].logprobs[0].top == [("w10", -0.1)]
    assert max(llm.calls) > 1 and all(c <= 8 for c in llm.calls)  # batched, bounded by max_batch


def test_a_bad_request_fails_alone(fake_vllm):
    model = load_model("vllm:org/tiny")

    async def go():
        ok = model.chat([ChatRequest([{"role": "user", "content": "fine"}], seed=1)])
        bad = model.chat([ChatRequest([{"role": "user", "content": "way too long"}], seed=2)])
        res = await asyncio.gather(ok, bad, return_exceptions=True)
        await model.aclose()
        return res

    ok, bad = asyncio.run(go())
    assert ok[0].text == "fine s1 #0"
    assert isinstance(bad, InvalidRequestError) and "maximum model length" in str(bad)


def _gpu_available() -> bool:
    try:
        import torch
        import vllm  # noqa: F401
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="needs vllm and a CUDA GPU")
def test_real_vllm_engine_contract_and_throughput():
    import os

    model = load_model(f"vllm:{os.environ.get('SYNTHLOOM_VLLM_MODEL', 'HuggingFaceTB/SmolLM2-135M-Instruct')}"
                       "?gpu_memory_utilization=0.5")

    async def go():
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        a = await model.chat([ChatRequest([{"role": "user", "content": "Say a number"}], seed=3, n=2,
                                          logprobs=True, top_logprobs=2, max_tokens=16)])
        b = await model.chat([ChatRequest([{"role": "user", "content": "Say a number"}], seed=3, n=2,
                                          logprobs=True, top_logprobs=2, max_tokens=16)])
        js = await model.chat([ChatRequest([{"role": "user", "content": "Give JSON"}], seed=1, json_schema=schema)])
        t0 = time.perf_counter()
        many = await model.chat([ChatRequest([{"role": "user", "content": f"Story {i}"}], seed=i, max_tokens=64)
                                 for i in range(256)])
        rate = sum(r.usage.completion_tokens for r in many) / (time.perf_counter() - t0)
        await model.aclose()
        return a[0], b[0], js[0], rate

    a, b, js, rate = asyncio.run(go())
    assert len(a.choices) == 2 and [c.text for c in a.choices] == [c.text for c in b.choices]
    assert all(len(c.logprobs) > 0 and not math.isnan(c.logprobs[0].logprob) for c in a.choices)
    assert isinstance(json.loads(js.text)["n"], int)
    print(f"vllm throughput: {rate:.0f} completion tokens/s")
