"""The usage ledger in the request cache (real SQLite): who paid for each answer, counted once.
The scripted model stands in for a server only to drive control flow; the cache is the real one."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from synthloom.llm.base import ChatRequest
from synthloom.llm.cache import CachedModel, RequestCache
from synthloom.llm.scripted import ScriptedModel
from synthloom.llm.usage import PriceTable


def req(text: str) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], seed=1)


def process(cache: RequestCache, run_id: str | None, prices: PriceTable | None = None) -> CachedModel:
    """One process of a run: its own session over the shared cache file."""
    return CachedModel(ScriptedModel(["four word answer here"], identity="openai:paid"), cache, run_id, prices)


async def test_a_resumed_process_counts_its_runs_answers_as_paid_once(tmp_path: Path):
    cache = RequestCache(tmp_path / "c.sqlite")
    killed = process(cache, "run-a")
    await killed.chat([req("q1"), req("q2")])
    resumed = process(cache, "run-a")  # same run, new process: the killed one's count was lost
    first = await resumed.chat([req("q1"), req("q2"), req("q3")])
    assert [r.cached for r in first] == [False, False, False]  # q1, q2 paid by this run; q3 new
    assert resumed.stats.reclaimed == 2 and resumed.stats.misses == 1 and resumed.inner.calls == 1
    again = await resumed.chat([req("q1")])  # the same process asking again: now a plain hit
    assert again[0].cached is True and resumed.stats.hits == 1
    other_run = process(cache, "run-b")  # another run sharing the cache: never paid for these
    assert all(r.cached for r in await other_run.chat([req("q1"), req("q3")]))
    assert other_run.stats.reclaimed == 0 and other_run.inner.calls == 0
    assert cache.ledger("run-a")["openai:paid"]["requests"] == 3 and cache.ledger("run-b") == {}


async def test_without_a_run_id_hits_are_cached_and_nothing_is_booked(tmp_path: Path):
    cache = RequestCache(tmp_path / "c.sqlite")
    await process(cache, None).chat([req("q1")])
    later = process(cache, None)
    assert (await later.chat([req("q1")]))[0].cached is True and later.stats.reclaimed == 0


async def test_each_answer_is_booked_with_its_tokens_and_cost(tmp_path: Path):
    cache = RequestCache(tmp_path / "c.sqlite")
    prices = PriceTable({"paid": {"prompt": 1.0, "completion": 2.0}})
    model = process(cache, "run-a", prices)
    [answer] = await model.chat([req("one two three")])
    expected = (answer.usage.prompt_tokens * 1.0 + answer.usage.completion_tokens * 2.0) / 1e6
    entry = cache.ledger("run-a")["openai:paid"]
    assert entry["prompt_tokens"] == 3 and entry["completion_tokens"] == 4
    assert abs(entry["cost_usd"] - expected) < 1e-9
    unpriced = process(cache, "run-u")  # no price table: tokens booked, cost unknown (0 in the sum)
    await unpriced.chat([req("something else")])
    assert cache.ledger("run-u")["openai:paid"]["cost_usd"] == 0.0


async def test_identical_requests_in_flight_are_paid_once(tmp_path: Path):
    cache = RequestCache(tmp_path / "c.sqlite")
    model = CachedModel(ScriptedModel(["x y"], identity="openai:paid", delay=0.05), cache, "run-a")
    answers = await asyncio.gather(*(model.chat([req("same")]) for _ in range(3)))
    assert sorted(a[0].cached for a in answers) == [False, True, True]  # one leader paid, two followed
    assert model.stats.coalesced == 2 and model.inner.calls == 1


def test_a_cache_from_before_the_ledger_opens_and_its_answers_stay_hits(tmp_path: Path):
    path = tmp_path / "old.sqlite"
    answer = {"choices": [{"text": "old", "finish_reason": "stop", "logprobs": None}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1}, "model": "", "cached": False}
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, response TEXT NOT NULL, "
                   "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created_at REAL NOT NULL) "
                   "WITHOUT ROWID")
        model = process(RequestCache(tmp_path / "probe.sqlite"), None)
        db.execute("INSERT INTO responses VALUES (?, ?, ?, 1, 1, 0)", (model.key(req("q")), "openai:paid",
                                                                       json.dumps(answer)))
    cache = RequestCache(path)  # adds the ledger columns
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(responses)")}
    assert {"run_id", "session", "cost_usd"} <= columns
    [hit] = asyncio.run(process(cache, "run-a").chat([req("q")]))
    assert hit.text == "old" and hit.cached is True  # paid before the ledger: by no run of ours
