"""Content-addressed request cache in SQLite, and a Model wrapper that uses it.

Key = `request_key(identity, request, sample_index)` (sha256 over model identity, messages,
every sampling parameter, schema and sample index); value = the ChatResponse as JSON. WAL mode
lets several processes read while one writes, busy_timeout makes concurrent writers queue instead
of failing, and every answer is committed the moment it arrives, so `kill -9` loses nothing that
was already answered (synchronous=NORMAL in WAL mode is durable against process crashes; only an
OS crash can lose the last transactions). Nothing secret is stored: the key is a hash and the
value is the model's answer.

The same row is the usage ledger: which run paid for the answer (`run_id`), in which process
(`session`), and its tokens and cost. A resumed run that finds an answer its own killed process
paid for counts it as paid, not cached, once per session (`claim`): the killed process's count
died with it, so that is the one that reaches stats.json and the --max-cost / --max-tokens-total
budgets. An answer paid by another run sharing the cache stays a cache hit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthloom.errors import ConfigError
from synthloom.llm.base import ChatRequest, ChatResponse, Choice, Model, TextScore, Usage, request_key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at REAL NOT NULL,
    run_id TEXT,
    session TEXT,
    cost_usd REAL,
    seconds REAL
) WITHOUT ROWID
"""
_LEDGER_COLUMNS = {"run_id": "TEXT", "session": "TEXT", "cost_usd": "REAL",
                   "seconds": "REAL"}  # added to older caches; seconds = how long the answer took
_LOOKUP_CHUNK = 500  # stay well below SQLite's bound-parameter limit


class RequestCache:
    """A SQLite file of answered requests, shareable across runs, pipelines and processes."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=busy_timeout_s,
                                       isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}
            for column, kind in _LEDGER_COLUMNS.items():
                if column not in have:
                    try:
                        self._db.execute(f"ALTER TABLE responses ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError as e:
                        # another process opening the same old cache added it first
                        if "duplicate column" not in str(e):
                            raise
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"cannot open request cache {self.path}: {e} "
                              "(is it a synthloom cache file? delete it or choose another path)"
                              ) from None
        except OSError as e:
            raise ConfigError(f"cannot create request cache {self.path}: {e.strerror or e}") from None
        self._lock = threading.Lock()  # one connection, used from the loop and sync callers

    def get(self, key: str) -> ChatResponse | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return _decode(row[0]) if row else None

    def get_many(self, keys: list[str]) -> dict[str, ChatResponse]:
        return {key: entry.response for key, entry in self.lookup(keys).items()}

    def lookup(self, keys: list[str]) -> dict[str, Entry]:
        """The stored answers among `keys`, each with who paid for it (run and session)."""
        found: dict[str, Entry] = {}
        for i in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[i:i + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT key, response, run_id, session, seconds FROM responses WHERE key IN ({marks})",
                    chunk).fetchall()
            for key, text, run_id, session, seconds in rows:
                resp = _decode(text)
                if resp is not None:
                    found[key] = Entry(resp, run_id, session, seconds)
        return found

    def put(self, key: str, model: str, response: ChatResponse, run_id: str | None = None,
            session: str | None = None, cost_usd: float | None = None, seconds: float | None = None) -> None:
        data = response.to_json()
        data["cached"] = False  # stored answers are facts about the model, not about this lookup
        blob = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            # Autocommit mode: this statement is its own committed transaction, so the answer and
            # its ledger entry land together.
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, response, prompt_tokens, completion_tokens, "
                "created_at, run_id, session, cost_usd, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, model, blob, response.usage.prompt_tokens,
                 response.usage.completion_tokens, time.time(), run_id, session, cost_usd, seconds))

    def claim(self, key: str, session: str) -> None:
        """Mark an answer as counted by `session` (a resumed process re-counting its run's answer)."""
        with self._lock:
            self._db.execute("UPDATE responses SET session = ? WHERE key = ?", (session, key))

    def ledger(self, run_id: str) -> dict[str, dict[str, float]]:
        """Per model: answers paid for by run `run_id`, their tokens and cost (None cost = unpriced)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd) "
                "FROM responses WHERE run_id = ? GROUP BY model ORDER BY model", (run_id,)).fetchall()
        return {model: {"requests": n, "prompt_tokens": p or 0, "completion_tokens": c or 0,
                        "cost_usd": round(cost or 0.0, 6)} for model, n, p, c, cost in rows}

    def entries(self) -> list[tuple[str, str, str]]:
        """Every stored (key, model, response JSON): for merging per-worker caches into one."""
        with self._lock:
            return [tuple(r) for r in self._db.execute("SELECT key, model, response FROM responses")]

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(slots=True)
class Entry:
    response: ChatResponse
    run_id: str | None  # the run that paid for this answer (None: before the ledger existed)
    session: str | None  # the process of that run that last counted it
    seconds: float | None = None  # how long the model took to answer (None: not recorded)


def _decode(text: str) -> ChatResponse | None:
    try:
        return ChatResponse.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None  # a damaged entry is a miss, not a crash; the fresh answer overwrites it


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    coalesced: int = 0  # misses that waited for an identical request already in flight
    tokens_saved: int = 0
    reclaimed: int = 0  # hits paid by an earlier (killed) process of this run: counted as paid
    untimed_hits: int = 0  # hits whose answer time was never recorded (older caches)

    def to_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "coalesced": self.coalesced,
                "tokens_saved": self.tokens_saved, "reclaimed": self.reclaimed, "untimed_hits": self.untimed_hits}


class CachedModel:
    """Wraps any Model with the request cache (same identity, so keys match the inner model).

    Hits come back with `cached=True` and cost nothing. Misses go to the inner model one request
    at a time so each answer is stored as soon as it arrives; identical requests already in flight
    (in this process) are coalesced into one call (the followers count as cached: paid once).
    With `run_id` set (the runner does), every answer is booked to that run in the ledger, and a
    hit on an answer this run paid for in an earlier process comes back with `cached=False`.
    """

    def __init__(self, inner: Model, cache: RequestCache, run_id: str | None = None,
                 prices: Any = None) -> None:
        self.inner = inner
        self.cache = cache
        self.identity = inner.identity
        self.stats = CacheStats()
        self.run_id = run_id
        self.prices = prices  # a PriceTable: the ledger records each answer's cost
        self.session = uuid.uuid4().hex  # this process
        self.replay_latency = False  # sleep on a hit as long as the answer first took (dry-run timing)
        self._in_flight: dict[str, asyncio.Future[ChatResponse]] = {}

    def key(self, request: ChatRequest, sample_index: int = 0) -> str:
        return request_key(self.identity, request, sample_index)

    def _paid_by_us_earlier(self, key: str, entry: Entry) -> bool:
        """An answer this run paid for in a process whose count was lost (kill -9): claim it once."""
        if self.run_id is None or entry.run_id != self.run_id or entry.session == self.session:
            return False
        self.cache.claim(key, self.session)
        self.stats.reclaimed += 1
        return True

    def _book(self, key: str, response: ChatResponse, seconds: float | None = None) -> None:
        cost = None
        if self.prices is not None:
            price = self.prices.lookup(self.identity)
            if price is not None:
                cost = price.cost(response.usage.prompt_tokens, response.usage.completion_tokens)
        self.cache.put(key, self.identity, response, self.run_id, self.session, cost, seconds)

    async def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        keys = [self.key(r) for r in requests]
        found = self.cache.lookup(keys)
        results: list[ChatResponse | None] = [None] * len(requests)
        pending = []
        replay = 0.0
        for i, (key, request) in enumerate(zip(keys, requests)):
            entry = found.get(key)
            if entry is not None:
                replay = max(replay, entry.seconds or 0.0)
                self.stats.untimed_hits += entry.seconds is None
                hit = entry.response
                hit.cached = not self._paid_by_us_earlier(key, entry)
                if hit.cached:
                    self.stats.hits += 1
                    self.stats.tokens_saved += hit.usage.total_tokens
                results[i] = hit
            else:
                pending.append((i, key, request))
        if self.replay_latency and replay > 0:
            await asyncio.sleep(replay)  # a dry run times hits as long as the model took to answer
        if pending:
            answers = await asyncio.gather(*(self._miss(k, r) for _, k, r in pending))
            for (i, _, _), answer in zip(pending, answers):
                results[i] = answer
        return results  # type: ignore[return-value]

    async def _miss(self, key: str, request: ChatRequest) -> ChatResponse:
        while (waiting := self._in_flight.get(key)) is not None:
            self.stats.coalesced += 1
            try:
                follower = _copy(await asyncio.shield(waiting))
                follower.cached = True  # the leader paid for it
                return follower
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if waiting.cancelled() and task is not None and not task.cancelling():
                    continue  # the leading caller was cancelled, not us: take over the call
                raise
        self.stats.misses += 1
        fut: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = fut
        try:
            started = time.perf_counter()
            response = (await self.inner.chat([request]))[0]
            self._book(key, response, time.perf_counter() - started)
            fut.set_result(response)
            return response
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._in_flight[key]

    @property
    def can_score(self) -> bool:
        """Whether the inner model scores given text (token log-probabilities by teacher forcing)."""
        return bool(getattr(self.inner, "can_score", callable(getattr(self.inner, "score", None))))

    async def score(self, texts: Sequence[str], prefixes: Sequence[str] | None = None) -> list[TextScore]:
        """The inner model's `score`, cached like chat answers (keyed on model, text and prefix)."""
        if not callable(getattr(self.inner, "score", None)):
            raise ConfigError(
                f"model {self.identity} cannot score texts (token log-probabilities of given text); "
                "use an embedded model for this role"
            )
        prefixes = list(prefixes) if prefixes is not None else [""] * len(texts)
        keys = [score_key(self.identity, t, p) for t, p in zip(texts, prefixes)]
        found = self.cache.lookup(keys)
        results: list[TextScore | None] = [None] * len(texts)
        missing = []
        for i, key in enumerate(keys):
            entry = found.get(key)
            if entry is None:
                missing.append(i)
                continue
            hit = entry.response
            cached = not self._paid_by_us_earlier(key, entry)
            if cached:
                self.stats.hits += 1
                self.stats.tokens_saved += hit.usage.prompt_tokens
            results[i] = TextScore(hit.choices[0].logprobs or [], cached=cached)
        if missing:
            self.stats.misses += len(missing)
            fresh = await self.inner.score([texts[i] for i in missing], [prefixes[i] for i in missing])
            for i, scored in zip(missing, fresh):
                stored = ChatResponse([Choice("", "score", scored.tokens)], Usage(prompt_tokens=len(scored.tokens)))
                self._book(keys[i], stored)
                results[i] = scored
        return results  # type: ignore[return-value]

    async def aclose(self) -> None:
        await self.inner.aclose()


def score_key(identity: str, text: str, prefix: str) -> str:
    """Cache key of a scoring call (never equal to a chat request's key)."""
    canonical = json.dumps({"kind": "score", "model": identity, "text": text, "prefix": prefix}, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _copy(response: ChatResponse) -> ChatResponse:
    """Coalesced callers get their own object so one caller's edits don't leak to another."""
    return ChatResponse.from_json(response.to_json())
