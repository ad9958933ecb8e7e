"""Content-addressed request cache in SQLite, and a Model wrapper that uses it.

Key = `request_key(identity, request, sample_index)` (sha256 over model identity, messages,
every sampling parameter, schema and sample index); value = the ChatResponse as JSON. WAL mode
lets several processes read while one writes, busy_timeout makes concurrent writers queue instead
of failing, and every answer is committed the moment it arrives, so `kill -9` loses nothing that
was already answered (synchronous=NORMAL in WAL mode is durable against process crashes; only an
OS crash can lose the last transactions). Nothing secret is stored: the key is a hash and the
value is the model's answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from synthloom.errors import ConfigError
from synthloom.llm.base import ChatRequest, ChatResponse, Choice, Model, TextScore, Usage, request_key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID
"""
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
        found: dict[str, ChatResponse] = {}
        for i in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[i:i + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk).fetchall()
            for key, text in rows:
                resp = _decode(text)
                if resp is not None:
                    found[key] = resp
        return found

    def put(self, key: str, model: str, response: ChatResponse) -> None:
        data = response.to_json()
        data["cached"] = False  # stored answers are facts about the model, not about this lookup
        blob = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            # Autocommit mode: this statement is its own committed transaction.
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                (key, model, blob, response.usage.prompt_tokens,
                 response.usage.completion_tokens, time.time()))

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

    def to_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "coalesced": self.coalesced,
                "tokens_saved": self.tokens_saved}


class CachedModel:
    """Wraps any Model with the request cache (same identity, so keys match the inner model).

    Hits come back with `cached=True` and cost nothing. Misses go to the inner model one request
    at a time so each answer is stored as soon as it arrives; identical requests already in flight
    (in this process) are coalesced into one call.
    """

    def __init__(self, inner: Model, cache: RequestCache) -> None:
        self.inner = inner
        self.cache = cache
        self.identity = inner.identity
        self.stats = CacheStats()
        self._in_flight: dict[str, asyncio.Future[ChatResponse]] = {}

    def key(self, request: ChatRequest, sample_index: int = 0) -> str:
        return request_key(self.identity, request, sample_index)

    async def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        keys = [self.key(r) for r in requests]
        found = self.cache.get_many(keys)
        results: list[ChatResponse | None] = [None] * len(requests)
        pending = []
        for i, (key, request) in enumerate(zip(keys, requests)):
            hit = found.get(key)
            if hit is not None:
                self.stats.hits += 1
                self.stats.tokens_saved += hit.usage.total_tokens
                hit.cached = True
                results[i] = hit
            else:
                pending.append((i, key, request))
        if pending:
            answers = await asyncio.gather(*(self._miss(k, r) for _, k, r in pending))
            for (i, _, _), answer in zip(pending, answers):
                results[i] = answer
        return results  # type: ignore[return-value]

    async def _miss(self, key: str, request: ChatRequest) -> ChatResponse:
        while (waiting := self._in_flight.get(key)) is not None:
            self.stats.coalesced += 1
            try:
                return _copy(await asyncio.shield(waiting))
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if waiting.cancelled() and task is not None and not task.cancelling():
                    continue  # the leading caller was cancelled, not us: take over the call
                raise
        self.stats.misses += 1
        fut: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = fut
        try:
            response = (await self.inner.chat([request]))[0]
            self.cache.put(key, self.identity, response)
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
        found = self.cache.get_many(keys)
        results: list[TextScore | None] = [None] * len(texts)
        missing = []
        for i, key in enumerate(keys):
            hit = found.get(key)
            if hit is None:
                missing.append(i)
                continue
            self.stats.hits += 1
            self.stats.tokens_saved += hit.usage.prompt_tokens
            results[i] = TextScore(hit.choices[0].logprobs or [], cached=True)
        if missing:
            self.stats.misses += len(missing)
            fresh = await self.inner.score([texts[i] for i in missing], [prefixes[i] for i in missing])
            for i, scored in zip(missing, fresh):
                stored = ChatResponse([Choice("", "score", scored.tokens)], Usage(prompt_tokens=len(scored.tokens)))
                self.cache.put(keys[i], self.identity, stored)
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
