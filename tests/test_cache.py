"""Request cache (SQLite) with a real HTTP server counting calls, several writer processes, kill -9;
plus usage/cost accounting."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from synthloom.errors import ConfigError
from synthloom.llm.base import ChatRequest, ChatResponse, Choice, Usage
from synthloom.llm.cache import CachedModel, RequestCache
from synthloom.llm.openai_compat import OpenAIModel
from synthloom.llm.scripted import ScriptedModel
from synthloom.llm.usage import PriceTable, UsageTracker
from tests.fakes import FakeOpenAIServer

FAST = {"api_key_env": None, "backoff_base": 0.01, "backoff_max": 0.05}


def base_request(i: int = 0) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": f"question {i}"}], temperature=0.5, seed=7)


async def test_second_identical_run_makes_zero_model_calls(tmp_path):
    requests = [base_request(i) for i in range(20)]
    with FakeOpenAIServer() as srv:
        first_model = CachedModel(OpenAIModel([srv.url], "m", **FAST), RequestCache(tmp_path / "c.sqlite"))
        first = await first_model.chat(requests)
        await first_model.aclose()
        assert srv.received == 20 and not any(r.cached for r in first)

        # A new run: new client, new cache object, same file.
        second_model = CachedModel(OpenAIModel([srv.url], "m", **FAST), RequestCache(tmp_path / "c.sqlite"))
        second = await second_model.chat(requests)
        await second_model.aclose()
    assert srv.received == 20, "the second run must not reach the server"
    assert all(r.cached for r in second)
    assert [r.text for r in second] == [r.text for r in first]
    assert second_model.stats.hits == 20 and second_model.stats.misses == 0
    assert second_model.stats.tokens_saved == sum(r.usage.total_tokens for r in first) > 0


VARIANTS = {
    "messages": {"messages": [{"role": "user", "content": "question 0?"}]},
    "temperature": {"temperature": 0.6},
    "top_p": {"top_p": 0.9},
    "max_tokens": {"max_tokens": 255},
    "stop": {"stop": ["\n"]},
    "seed": {"seed": 8},
    "n": {"n": 2},
    "logprobs": {"logprobs": True},
    "top_logprobs": {"logprobs": True, "top_logprobs": 2},
    "json_schema": {"json_schema": {"type": "string"}},
}


async def test_changing_any_sampling_parameter_or_the_model_misses(tmp_path):
    cache_path = tmp_path / "c.sqlite"
    with FakeOpenAIServer(responder=lambda p: '"a json string"') as srv:
        model = CachedModel(OpenAIModel([srv.url], "m", **FAST), RequestCache(cache_path))
        await model.chat([base_request()])
        for name, change in VARIANTS.items():
            before = srv.received
            await model.chat([dataclasses.replace(base_request(), **change)])
            assert srv.received > before, f"changing {name} must miss the cache"
            assert model.stats.hits == 0
        await model.chat([base_request()])
        assert model.stats.hits == 1  # the original is still a hit

        other = CachedModel(OpenAIModel([srv.url], "other-model", **FAST), RequestCache(cache_path))
        before = srv.received
        [resp] = await other.chat([base_request()])
        assert srv.received == before + 1 and not resp.cached
        await model.aclose()
        await other.aclose()


async def test_replicas_and_moved_servers_share_the_cache(tmp_path):
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        first = CachedModel(OpenAIModel([a.url], "m", **FAST), RequestCache(tmp_path / "c.sqlite"))
        await first.chat([base_request()])
        moved = CachedModel(OpenAIModel([b.url], "m", **FAST), RequestCache(tmp_path / "c.sqlite"))
        [resp] = await moved.chat([base_request()])
        await first.aclose()
        await moved.aclose()
    assert resp.cached and b.received == 0


async def test_identical_in_flight_misses_are_coalesced(tmp_path):
    with FakeOpenAIServer(delay=0.05) as srv:
        model = CachedModel(OpenAIModel([srv.url], "m", **FAST), RequestCache(tmp_path / "c.sqlite"))
        responses = await model.chat([base_request()] * 10)
        await model.aclose()
    assert srv.received == 1
    assert len({r.text for r in responses}) == 1
    assert model.stats.misses == 1 and model.stats.coalesced == 9


async def test_a_failed_request_is_not_cached_and_its_waiters_see_the_error(tmp_path):
    from synthloom.llm.base import ModelError, chat_settled

    def flaky(request):
        raise ModelError("server exploded")

    inner = ScriptedModel(flaky, delay=0.02)
    model = CachedModel(inner, RequestCache(tmp_path / "c.sqlite"))
    results = await chat_settled(model, [base_request()] * 3)
    assert inner.calls == 1  # coalesced into one call...
    assert all(isinstance(r, ModelError) and "exploded" in str(r) for r in results)  # ...all told
    assert len(model.cache) == 0
    inner.responses = ["fine now"]
    [resp] = await model.chat([base_request()])
    assert resp.text == "fine now" and not resp.cached and len(model.cache) == 1


async def test_secrets_never_reach_the_cache(tmp_path, monkeypatch):
    secret = "sk-secret-" + "ab12cd34" * 4
    monkeypatch.setenv("SYNTHLOOM_TEST_KEY", secret)
    cache_path = tmp_path / "c.sqlite"
    with FakeOpenAIServer(api_key=secret) as srv:
        model = CachedModel(OpenAIModel([srv.url], "m", api_key_env="SYNTHLOOM_TEST_KEY"),
                            RequestCache(cache_path))
        responses = await model.chat([base_request(i) for i in range(5)])
        await model.aclose()
        model.cache.close()
    assert srv.auth_headers[0] == f"Bearer {secret}"
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())  # db, -wal, -shm
    assert len(stored) > 0 and secret.encode() not in stored
    assert secret not in json.dumps([r.to_json() for r in responses])


WRITER = textwrap.dedent("""
    import sys
    from synthloom.llm.base import ChatResponse, Choice, Usage
    from synthloom.llm.cache import RequestCache
    path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cache = RequestCache(path)
    for i in range(count):
        key = f"shared-{i}" if i % 4 == 0 else f"w{worker}-{i}"
        cache.put(key, "m", ChatResponse([Choice(f"text {key}")], Usage(3, 4), "m"))
        got = cache.get(key)
        assert got is not None and got.text == f"text {key}", key
        print(key, flush=True)
""")


def test_concurrent_writers_in_several_processes_do_not_corrupt_the_cache(tmp_path):
    path = tmp_path / "shared.sqlite"
    workers, count = 4, 250
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(count)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(workers)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    cache = RequestCache(path)
    assert cache.integrity_ok()
    shared = count // 4 + (1 if count % 4 else 0)
    assert len(cache) == shared + workers * (count - shared)
    keys = [line for out, _ in outputs for line in out.split()]
    found = cache.get_many(keys)
    assert set(found) == set(keys) and all(found[k].text == f"text {k}" for k in keys)


def test_kill_9_loses_no_answered_request(tmp_path):
    path = tmp_path / "killed.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "0", "100000"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    answered = [proc.stdout.readline().strip() for _ in range(200)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    cache = RequestCache(path)
    assert cache.integrity_ok()
    assert set(cache.get_many(answered)) == set(answered)


def test_a_file_that_is_not_a_cache_is_a_clear_config_error(tmp_path):
    bogus = tmp_path / "notes.sqlite"
    bogus.write_text("this is not a database " * 100)
    with pytest.raises(ConfigError, match="cannot open request cache") as info:
        RequestCache(bogus)
    assert "\n" not in str(info.value)


def test_a_damaged_entry_is_a_miss_not_a_crash(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    cache.put("k", "m", ChatResponse([Choice("fine")]))
    cache._db.execute("UPDATE responses SET response = '{broken' WHERE key = 'k'")
    assert cache.get("k") is None and cache.get_many(["k"]) == {}


# ------------------------------------------------------------------ usage and cost


def test_usage_tracker_counts_tokens_cost_and_cache_savings():
    prices = PriceTable({"gpt-4o-mini": {"prompt": 0.15, "completion": 0.60},
                         "openai:gpt-4o*": (2.5, 10.0)})
    tracker = UsageTracker(prices)
    tracker.record("openai:gpt-4o-mini", Usage(1_000_000, 500_000))
    tracker.record("openai:gpt-4o-mini", Usage(1000, 1000), cached=True)
    tracker.record("openai:gpt-4o-2024", Usage(1000, 0))
    tracker.record("embedded:abc123", Usage(5000, 5000))
    tracker.record("openai:mystery", Usage(10, 10))
    d = tracker.to_dict()
    mini = d["models"]["openai:gpt-4o-mini"]
    assert mini["requests"] == 2 and mini["cached_requests"] == 1
    assert mini["prompt_tokens"] == 1_000_000 and mini["tokens_saved"] == 2000
    assert mini["cost_usd"] == pytest.approx(0.15 + 0.30)
    assert d["models"]["openai:gpt-4o-2024"]["cost_usd"] == pytest.approx(0.0025)
    assert d["models"]["embedded:abc123"]["cost_usd"] == 0 and d["models"]["embedded:abc123"]["priced"]
    assert d["models"]["openai:mystery"]["priced"] is False
    assert d["total"]["cost_usd"] == pytest.approx(0.45 + 0.0025)

    resumed = UsageTracker(prices)
    resumed.merge(json.loads(json.dumps(d)))
    resumed.record("openai:gpt-4o-mini", Usage(0, 1_000_000))
    assert resumed.to_dict()["models"]["openai:gpt-4o-mini"]["cost_usd"] == pytest.approx(0.45 + 0.60)
    assert resumed.to_dict()["total"]["requests"] == 6


def test_usage_tracker_is_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    tracker = UsageTracker()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: tracker.record("embedded:x", Usage(1, 2)), range(20_000)))
    m = tracker.model("embedded:x")
    assert m.requests == 20_000 and m.prompt_tokens == 20_000 and m.completion_tokens == 40_000


def test_price_table_loads_yaml_and_rejects_bad_files(tmp_path):
    good = tmp_path / "prices.yaml"
    good.write_text("prices:\n  gpt-4o-mini: {prompt: 0.15, completion: 0.6}\n  'claude-*': [3, 15]\n")
    table = PriceTable.load(good)
    assert table.lookup("openai:gpt-4o-mini").completion_per_m == 0.6
    assert table.lookup("openai:claude-3-5").prompt_per_m == 3
    assert table.lookup("openai:unknown") is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpt: {prompt: cheap}\n")
    with pytest.raises(ConfigError, match="bad price for 'gpt'"):
        PriceTable.load(bad)
    with pytest.raises(ConfigError, match="cannot read price table"):
        PriceTable.load(tmp_path / "missing.yaml")


async def test_cached_usage_flows_into_the_tracker(tmp_path):
    tracker = UsageTracker(PriceTable({"scripted": (1.0, 1.0)}))
    model = CachedModel(ScriptedModel(["one two three"], identity="openai:scripted"),
                        RequestCache(tmp_path / "c.sqlite"))
    for _ in range(2):
        [resp] = await model.chat([base_request()])
        tracker.record(model.identity, resp.usage, cached=resp.cached)
    m = tracker.model("openai:scripted")
    assert m.requests == 2 and m.cached_requests == 1
    assert m.tokens_saved == resp.usage.total_tokens and m.cost_saved_usd > 0
