"""Evidence retrieval for SAFE: a local SQLite FTS5 search engine (BM25) and a web-search adapter.

Any object with `search(query, k) -> list[SearchResult]` is a backend. `LocalSearch` indexes a
user corpus (JSONL rows with `text` and optional `title`/`id`, or plain text with one passage per
blank-line-separated block) in an FTS5 table and ranks with bm25(). `CallableSearch` adapts a web
API: wrap a function that calls it (Serper, Bing, a company search service...) and returns dicts.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from synthloom.io import read_rows
from synthloom.errors import BadInputError, ConfigError


@dataclass(frozen=True)
class SearchResult:
    title: str
    text: str
    source: str = ""
    score: float = 0.0  # higher = more relevant


@runtime_checkable
class SearchBackend(Protocol):
    def search(self, query: str, k: int = 3) -> list[SearchResult]: ...


_TOKEN = re.compile(r"\w+", re.UNICODE)
# Words too common to help a BM25 OR-query (they only add noise to the ranking).
_STOPWORDS = frozenset(["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is", "it", "its",
                        "of", "on", "or", "that", "the", "this", "to", "was", "were", "which", "who", "with", "what", "when",
                        "where", "how", "did", "does", "do"])


def fts_query(text: str) -> str:
    """A safe FTS5 MATCH expression from free text: quoted terms OR'ed (model queries have punctuation)."""
    terms = [t for t in _TOKEN.findall(text.lower()) if t not in _STOPWORDS]
    seen: list[str] = []
    for t in terms:
        if t not in seen:
            seen.append(t)
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in seen[:32])


class LocalSearch:
    """BM25 search over a passage corpus held in an SQLite FTS5 table (in memory or on disk)."""

    def __init__(self, passages: Iterable[Mapping[str, Any]], db_path: str | Path = ":memory:") -> None:
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(db_path), check_same_thread=False)
            self._db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS passages USING fts5(title, text, source UNINDEXED, "
                             "tokenize='porter unicode61')")
        except sqlite3.OperationalError as e:
            raise ConfigError(f"this Python's SQLite lacks FTS5 ({e}); install a Python built with FTS5") from None
        rows = []
        for i, p in enumerate(passages):
            text = str(p.get("text", "")).strip()
            if not text:
                raise BadInputError(f"corpus passage {i} has no 'text'")
            rows.append((str(p.get("title", "")), text, str(p.get("id", p.get("source", i)))))
        if not rows and self.size == 0:
            raise BadInputError("the search corpus is empty")
        with self._db:
            self._db.executemany("INSERT INTO passages(title, text, source) VALUES (?, ?, ?)", rows)

    @property
    def size(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM passages").fetchone()[0])

    @classmethod
    def from_file(cls, path: str | Path) -> LocalSearch:
        """A corpus from JSONL ({"text", "title"?, "id"?} per line) or text (blank-line-separated passages)."""
        p = Path(path)
        if not p.is_file():
            raise BadInputError(f"corpus file {p} does not exist")
        if p.suffix == ".jsonl":
            return cls(read_rows(p, "jsonl"))
        return cls(_paragraphs(p.read_text(encoding="utf-8")))

    @classmethod
    def bundled(cls) -> LocalSearch:
        """The small encyclopedic corpus shipped with synthloom (for tests and demos)."""
        with resources.as_file(resources.files("synthloom.eval").joinpath("data/corpus.jsonl")) as path:
            return cls(read_rows(path, "jsonl"))

    def search(self, query: str, k: int = 3) -> list[SearchResult]:
        match = fts_query(query)
        if not match or k < 1:
            return []
        # bm25() is lower-is-better; titles weigh double so an entity's own article ranks first.
        with self._lock:
            rows = self._db.execute(
                "SELECT title, text, source, bm25(passages, 2.0, 1.0) AS rank FROM passages "
                "WHERE passages MATCH ? ORDER BY rank LIMIT ?", (match, k)).fetchall()
        return [SearchResult(title, text, source, -float(rank)) for title, text, source, rank in rows]

    def close(self) -> None:
        self._db.close()


def _paragraphs(text: str) -> list[dict[str, Any]]:
    """A plain-text corpus: one document per blank-line-separated paragraph."""
    return [{"text": block.strip()} for block in re.split(r"\n\s*\n", text) if block.strip()]


class CallableSearch:
    """A web-search adapter: `fetch(query, k)` calls your API and returns dicts with
    title/snippet (or text)/link (or source). Errors from the API propagate to the caller."""

    def __init__(self, fetch: Callable[[str, int], list[Mapping[str, Any]]]) -> None:
        self.fetch = fetch

    def search(self, query: str, k: int = 3) -> list[SearchResult]:
        results = []
        for r in list(self.fetch(query, k))[:k]:
            text = str(r.get("snippet") or r.get("text") or "").strip()
            if text:
                results.append(SearchResult(str(r.get("title", "")), text,
                                            str(r.get("link") or r.get("source") or ""), float(r.get("score", 0.0))))
        return results
