"""OpenAIModel against real local HTTP servers: faults, retry budget, AIMD, breaker, replicas,
auth errors and secrets, n>1, structured output fallback, logprobs, rate limits."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest

from synthloom.errors import ConfigError
from synthloom.llm.base import ChatRequest, InvalidRequestError, ModelError, chat_settled
from synthloom.llm.openai_compat import (
    AuthenticationError,
    EndpointError,
    EndpointUnreachableError,
    OpenAIModel,
    ServerRejectedError,
    derive_seed,
)
from synthloom.llm.structured import parse_json_output
from tests.fakes import FakeOpenAIServer, fingerprint, free_port
from tests.status_server import always

FAST = {"api_key_env": None, "backoff_base": 0.01, "backoff_max": 0.05}


def req(text: str, **kw) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], **kw)


def sends(server: FakeOpenAIServer, request: ChatRequest, model: str = "m") -> int:
    payload = {"messages": request.messages, "seed": request.seed, "n": request.n}
    return server.by_fingerprint[fingerprint(payload)]


async def test_every_fault_ends_answered_or_with_a_clear_error_within_the_retry_budget():
    max_retries = 3
    scripts = ["fault:429@0.01,ok", "fault:500,502,ok", "fault:malformed,ok", "fault:reset,ok",
               "fault:stall,ok", "fault:empty,empty,ok", "fault:503,429,500,ok", "plain",
               "fault:500", "fault:reset", "fault:429@0.01"]  # the last three never succeed
    with FakeOpenAIServer(stall_s=3.0) as srv:
        model = OpenAIModel([srv.url], "m", timeout=0.4, max_retries=max_retries, **FAST)
        requests = [req(f"q{i} {s}", seed=i) for i, s in enumerate(scripts)]
        started = time.monotonic()
        results = await chat_settled(model, requests)
        elapsed = time.monotonic() - started
        await model.aclose()
    assert elapsed < 5, "no request may hang"
    for request, result, script in zip(requests, results, scripts):
        count = sends(srv, request)
        assert count <= max_retries + 1, f"{script} sent {count} times"
        if script in ("fault:500", "fault:reset", "fault:429@0.01"):
            assert isinstance(result, ModelError), script
            message = str(result)
            assert "\n" not in message and f"after {max_retries + 1} attempts" in message
            assert srv.url in message
            assert count == max_retries + 1
        else:
            assert not isinstance(result, BaseException), f"{script}: {result}"
            assert result.text.startswith(f"echo {request.messages[0]['content']}")
    assert model.stats.timeouts >= 1 and model.stats.malformed >= 2


async def test_retry_after_header_is_honoured():
    with FakeOpenAIServer() as srv:
        model = OpenAIModel([srv.url], "m", **FAST)
        started = time.monotonic()
        [resp] = await model.chat([req("fault:429@0.4,ok")])
        waited = time.monotonic() - started
        await model.aclose()
    assert resp.text.startswith("echo")
    assert waited >= 0.4  # backoff alone would have been ~0.01 s
    assert srv.statuses["429@0.4"] == 1 and srv.statuses["ok"] == 1


@pytest.mark.parametrize("status", [400, 404])
async def test_client_errors_are_not_retried(status):
    with FakeOpenAIServer() as srv:
        model = OpenAIModel([srv.url], "m", **FAST)
        # a 400 is about this request (the row is rejected); a 404 about the endpoint (the run ends)
        expected = EndpointError if status == 404 else ServerRejectedError
        with pytest.raises(expected) as info:
            await model.chat([req(f"fault:{status}")])
        await model.aclose()
    assert srv.received == 1
    assert f"HTTP {status}" in str(info.value) and "\n" not in str(info.value)
    assert not isinstance(info.value, InvalidRequestError) if status == 404 else True
    if status == 404:
        assert "/v1" in str(info.value) and info.value.exit_code == 1  # hints at the base URL


@pytest.mark.parametrize("message, endpoint", [
    ("The model `llama-9` does not exist.", True),
    ("model 'x' not found, try pulling it first", True),
    ("Invalid model: gpt-5-turbo", True),
    ("error code model_not_found", True),
    ("response_format json_schema is not supported by this model", False),
    ("This model's maximum context length is 4096 tokens, you requested 9000", False),
    ("'n' > 1 is not supported", False),
])
async def test_a_400_naming_an_unknown_model_is_an_endpoint_error(message, endpoint):
    with always(400, message) as srv:
        model = OpenAIModel([srv.url], "m", **FAST)
        with pytest.raises(ModelError) as info:
            await model.chat([req("hello")])
        await model.aclose()
    assert isinstance(info.value, EndpointError) is endpoint, message
    assert isinstance(info.value, ServerRejectedError) is not endpoint
    assert model.stats.rejected == 1 and model.stats.statuses == {"400": 1}


async def test_after_an_endpoint_error_nothing_more_is_sent():
    with always(404, "no such route") as srv:
        model = OpenAIModel([srv.url], "m", max_concurrency=4, min_concurrency=1, **FAST)
        results = await chat_settled(model, [req(f"q{i}") for i in range(40)])
        await model.aclose()
    assert all(isinstance(r, EndpointError) and "HTTP 404" in str(r) for r in results)
    assert srv.received <= 4  # the first window; the other 36 failed without a send
    with always(400, "bad parameter") as srv:  # a per-request rejection does not stop the others
        model = OpenAIModel([srv.url], "m", max_concurrency=4, **FAST)
        results = await chat_settled(model, [req(f"q{i}") for i in range(10)])
        await model.aclose()
    assert srv.received == 10 and all(isinstance(r, ServerRejectedError) for r in results)


async def test_retries_and_time_lost_are_counted_by_status():
    with FakeOpenAIServer() as srv:
        model = OpenAIModel([srv.url], "m", **FAST)
        await model.chat([req("fault:429@0.2,500,malformed,ok"), req("plain")])
        await model.aclose()
    s = model.stats
    assert s.retries == 3 and s.attempts == 5
    assert s.statuses == {"429": 1, "500": 1, "malformed": 1}
    assert s.time_lost_s >= 0.2  # the Retry-After wait is time lost
    assert s.to_dict()["statuses"] == {"429": 1, "500": 1, "malformed": 1}


async def test_aimd_reduces_concurrency_under_429s():
    capacity = 6
    with FakeOpenAIServer(capacity=capacity, delay=0.02) as srv:
        model = OpenAIModel([srv.url], "m", max_concurrency=64, max_retries=20, **FAST)
        responses = await model.chat([req(f"q{i}") for i in range(300)])
        await model.aclose()
    assert len(responses) == 300 and all(r.text.startswith("echo q") for r in responses)
    assert model.limiter.decreases >= 1
    assert model.limiter.current < 64
    # After adapting, the client keeps the server near its capacity instead of flooding it.
    late = srv.in_flight_log[-150:]
    assert sorted(late)[len(late) // 2] <= 2 * capacity
    assert srv.statuses["overload"] < 300


async def test_dead_url_opens_the_breaker_fast_with_a_clear_error():
    dead = f"http://127.0.0.1:{free_port()}/v1"
    model = OpenAIModel([dead], "m", **FAST)
    started = time.monotonic()
    with pytest.raises(EndpointUnreachableError) as info:
        await model.chat([req(f"q{i}") for i in range(100)])
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert dead in message and "unreachable" in message and "check the server / URL" in message
    assert "\n" not in message
    # The breaker stopped the hammering: far fewer sends than 100 requests x 7 attempts.
    assert model.stats.attempts <= 30
    await model.aclose()


async def test_replicas_share_load_and_a_dead_replica_fails_over():
    with FakeOpenAIServer(delay=0.01) as a, FakeOpenAIServer(delay=0.01) as b:
        model = OpenAIModel([a.url, b.url], "m", max_concurrency=16, **FAST)
        await model.chat([req(f"q{i}") for i in range(200)])
        await model.aclose()
        assert a.received + b.received == 200
        assert 60 <= a.received <= 140, (a.received, b.received)

        dead = f"http://127.0.0.1:{free_port()}/v1"
        model = OpenAIModel([a.url, dead, b.url], "m", max_concurrency=16, **FAST)
        responses = await model.chat([req(f"r{i}") for i in range(100)])
        await model.aclose()
    assert all(r.text.startswith("echo r") for r in responses)
    dead_replica = model.replicas[1]
    assert dead_replica.breaker.is_open
    assert dead_replica.sent <= 10  # stopped being chosen once its breaker opened


async def test_a_server_restart_within_the_grace_period_loses_no_request():
    srv = FakeOpenAIServer().start()
    port = srv.port
    model = OpenAIModel([srv.url], "m", breaker_threshold=2, breaker_cooldown=0.05,
                        outage_grace=10, max_retries=20, **FAST)
    await model.chat([req("warm up")])
    srv.stop()
    restarted: list[FakeOpenAIServer] = []
    timer = threading.Timer(0.5, lambda: restarted.append(FakeOpenAIServer(port=port).start()))
    timer.start()
    try:
        responses = await model.chat([req(f"during outage {i}") for i in range(20)])
    finally:
        timer.join()
        await model.aclose()
        for s in restarted:
            s.stop()
    assert all(r.text.startswith("echo during outage") for r in responses)
    assert restarted and restarted[0].received >= 20


async def test_401_names_the_env_var_and_never_shows_the_key(monkeypatch, caplog):
    secret = "sk-test-" + "7f3a9c1e5b" * 3
    monkeypatch.setenv("SYNTHLOOM_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(api_key="the-right-key") as srv:
        model = OpenAIModel([srv.url], "m", api_key_env="SYNTHLOOM_TEST_KEY",
                            backoff_base=0.01)
        with pytest.raises(AuthenticationError) as info:
            await model.chat([req("hello")])
        await model.aclose()
    message = str(info.value)
    assert srv.received == 1  # 401 is not retried
    assert srv.auth_headers == [f"Bearer {secret}"]  # the key was sent...
    assert "SYNTHLOOM_TEST_KEY" in message and "\n" not in message
    assert secret not in message and secret not in repr(model)  # ...but shown nowhere
    assert secret not in caplog.text
    assert info.value.exit_code == 1  # a run error: nothing was wrong with the rows


async def test_api_key_is_sent_and_accepted(monkeypatch):
    monkeypatch.setenv("SYNTHLOOM_TEST_KEY", "the-right-key")
    with FakeOpenAIServer(api_key="the-right-key") as srv:
        model = OpenAIModel([srv.url], "m", api_key_env="SYNTHLOOM_TEST_KEY")
        [resp] = await model.chat([req("hello")])
        await model.aclose()
    assert resp.text.startswith("echo hello")
    assert model.identity == "openai:m"  # no URL, no key


@pytest.mark.parametrize("n_mode", ["honour", "ignore", "reject"])
async def test_n_samples_are_returned_whatever_the_server_does_with_n(n_mode):
    with FakeOpenAIServer(n_mode=n_mode) as srv:
        model = OpenAIModel([srv.url], "m", **FAST)
        [resp] = await model.chat([req("sample me", n=4, seed=11)])
        await model.aclose()
    assert len(resp.choices) == 4
    texts = [c.text for c in resp.choices]
    if n_mode == "honour":
        assert srv.received == 1 and srv.payloads[0]["n"] == 4
        assert model.supports_n is True
    else:
        # Emulated: every sample its own request with a distinct, reproducible seed.
        assert model.supports_n is False
        seeds = [derive_seed(11, i) for i in range(4)]
        assert len(set(seeds)) == 4 and seeds[0] == 11
        for i, text in enumerate(texts):
            assert f"seed={seeds[i]}" in text
    assert resp.usage.completion_tokens > 0


async def test_structured_output_uses_response_format_when_supported():
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    with FakeOpenAIServer(responder=lambda p: '{"answer": 42}') as srv:
        model = OpenAIModel([srv.url], "m", **FAST)
        [resp] = await model.chat([req("6*7?", json_schema=schema)])
        await model.aclose()
    assert parse_json_output(resp.text, schema) == {"answer": 42}
    assert srv.received == 1
    assert srv.payloads[0]["response_format"]["json_schema"]["schema"] == schema


async def test_structured_output_falls_back_to_prompt_parse_and_repair():
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    answers = iter(['Sure! {"answer": "forty-two"}', "```json\n{'answer': 42,}\n```"])

    def responder(payload):
        return next(answers)

    with FakeOpenAIServer(schema_mode="reject", responder=responder) as srv:
        model = OpenAIModel([srv.url], "m", **FAST)
        [resp] = await model.chat([req("6*7?", json_schema=schema)])
        await model.aclose()
    assert json.loads(resp.text) == {"answer": 42}
    assert model.supports_json_schema is False
    # 1 rejected native try, 1 prompted answer (invalid), 1 repair round (valid).
    assert srv.received == 3
    prompted, repair = srv.payloads[1], srv.payloads[2]
    assert "response_format" not in prompted
    assert '"answer"' in prompted["messages"][-1]["content"]  # the schema went into the prompt
    assert "schema violation at answer" in repair["messages"][-1]["content"]


async def test_logprobs_are_mapped():
    with FakeOpenAIServer() as srv:
        model = OpenAIModel([srv.url], "m", **FAST)
        [resp] = await model.chat([req("a b", logprobs=True, top_logprobs=2)])
        await model.aclose()
    lps = resp.choices[0].logprobs
    assert lps is not None and [t.token for t in lps] == resp.text.split()
    assert lps[1].logprob == pytest.approx(-1.0)
    assert lps[1].top == [(lps[1].token, -1.0), (lps[1].token.upper(), -3.0)]


async def test_rpm_bucket_paces_requests():
    with FakeOpenAIServer() as srv:
        model = OpenAIModel([srv.url], "m", rpm=1200, **FAST)  # 20/s, burst 20
        started = time.monotonic()
        await model.chat([req(f"q{i}") for i in range(40)])
        elapsed = time.monotonic() - started
        await model.aclose()
    assert 0.9 <= elapsed < 3


async def test_announced_rate_limits_are_adopted():
    headers = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0",
               "x-ratelimit-reset-requests": "400ms"}
    with FakeOpenAIServer(rate_headers=headers) as srv:
        model = OpenAIModel([srv.url], "m", **FAST)
        await model.chat([req("first")])
        assert model.rpm_bucket is not None and model.rpm_bucket.per_minute == 600
        started = time.monotonic()
        await model.chat([req("second")])  # budget announced as spent for 400 ms
        assert time.monotonic() - started >= 0.35
        await model.aclose()


def test_bad_options_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="unknown option.*max_concurency"):
        OpenAIModel(["http://x/v1"], "m", max_concurency=3)
    with pytest.raises(ConfigError, match="http://"):
        OpenAIModel(["ftp://x/v1"], "m")
    with pytest.raises(ConfigError, match="min_concurrency"):
        OpenAIModel(["http://x/v1"], "m", max_concurrency=2, min_concurrency=4)


def test_load_model_builds_the_client_from_a_spec_string():
    from synthloom.llm.spec import load_model

    model = load_model("openai:http://a:1/v1,http://b:2/v1#qwen?max_concurrency=8&rpm=60")
    assert isinstance(model, OpenAIModel)
    assert model.identity == "openai:qwen" and len(model.replicas) == 2
    assert model.limiter.max_limit == 8 and model.rpm_bucket is not None
    with pytest.raises(ConfigError):
        load_model("openai:http://a:1/v1#qwen?bogus=1")


def test_chat_sync_works_across_event_loops():
    from synthloom.llm.base import chat_sync

    with FakeOpenAIServer() as srv:
        model = OpenAIModel([srv.url], "m", **FAST)
        first = chat_sync(model, req("one"))
        second = chat_sync(model, req("two"))  # a new loop: the client must rebind, not crash
        asyncio.run(model.aclose())
    assert first[0].text.startswith("echo one") and second[0].text.startswith("echo two")


# ------------------------------------------------------------------ flow-control units


def test_aimd_cuts_once_per_window_and_respects_its_bounds():
    from synthloom.llm.ratelimit import AIMDLimiter

    limiter = AIMDLimiter(max_limit=64, min_limit=2, initial=8)
    for _ in range(8):
        limiter.on_success()  # slow start: +1 per success doubles per window
    assert limiter.current == 16
    epoch = limiter.epoch
    for _ in range(10):  # a burst of 429s from requests sent in the same window
        limiter.on_overload(epoch)
    assert limiter.current == 12 and limiter.decreases == 1
    for _ in range(12):
        limiter.on_success()  # additive now: about +1 per window
    assert limiter.current == 12 or limiter.current == 13
    for _ in range(30):
        limiter.on_overload(limiter.epoch)
    assert limiter.current == 2  # never below min_limit


async def test_aimd_queues_callers_over_the_limit_fifo():
    from synthloom.llm.ratelimit import AIMDLimiter

    limiter = AIMDLimiter(max_limit=2, initial=2)
    order: list[int] = []

    async def worker(i: int) -> None:
        await limiter.acquire()
        order.append(i)
        await asyncio.sleep(0.01)
        limiter.release()

    await asyncio.gather(*(worker(i) for i in range(6)))
    assert order == list(range(6)) and limiter.in_flight == 0


def test_retry_after_and_reset_headers_are_parsed():
    from email.utils import formatdate

    from synthloom.llm.ratelimit import RetryPolicy, parse_reset_duration, parse_retry_after

    assert parse_retry_after("2") == 2.0
    assert 8 <= parse_retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10.5
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_reset_duration("6m0s") == 360 and parse_reset_duration("120ms") == pytest.approx(0.12)
    assert parse_reset_duration("1h2m3.5s") == pytest.approx(3723.5)
    policy = RetryPolicy(backoff_base=1.0, backoff_max=8.0)
    assert all(1 <= policy.delay(2) <= 2 for _ in range(50))  # ceiling base * 2**(n-1)
    assert all(4 <= policy.delay(10) <= 8 for _ in range(50))  # capped
    assert 3.0 <= policy.delay(1, retry_after=3.0) <= 3.1


# ------------------------------------------------------------------ end to end: real server, real model


@pytest.fixture(scope="module")
def real_server():
    """`python -m synthloom.llm.server --model embedded` (SmolLM2-135M via llama.cpp) on a free port."""
    import subprocess
    import sys
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "synthloom.llm.server", "--model", "embedded",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as r:
                    name = json.loads(r.read())["data"][0]["id"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        def chat_requests() -> int:
            with urllib.request.urlopen(f"{base}/stats", timeout=5) as r:
                return json.loads(r.read())["chat_requests"]

        yield base, name, chat_requests
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
async def test_end_to_end_against_synthloom_serve_with_the_cache(real_server, tmp_path):
    from synthloom.llm.cache import CachedModel, RequestCache

    base, name, chat_requests = real_server
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    requests = [
        req("Name a colour.", seed=1, max_tokens=16),
        req("Name a colour.", seed=2, max_tokens=16),
        req("Name two animals.", seed=3, max_tokens=16, n=2),
        req("Say hi.", seed=4, max_tokens=8, logprobs=True, top_logprobs=2),
        req("Name a city as JSON.", seed=5, max_tokens=48, temperature=0.0, json_schema=schema),
    ]
    start = chat_requests()
    model = CachedModel(OpenAIModel([base], name, api_key_env=None),
                        RequestCache(tmp_path / "cache.sqlite"))
    first = await model.chat(requests)
    sent = chat_requests() - start
    assert sent == len(requests)  # n=2 went to the server as one request, the schema natively
    assert all(r.text for r in first) and not any(r.cached for r in first)
    assert len(first[2].choices) == 2
    lps = first[3].choices[0].logprobs
    assert lps and len(lps[0].top) == 2 and all(t.logprob <= 0 for t in lps)
    assert isinstance(parse_json_output(first[4].text, schema)["city"], str)
    assert model.inner.supports_json_schema is not False

    before = chat_requests()
    second = await model.chat(requests)
    await model.aclose()
    assert chat_requests() == before, "a cached run must make zero model calls"
    assert [r.text for r in second] == [r.text for r in first] and all(r.cached for r in second)
