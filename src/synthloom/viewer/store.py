"""Durable store of expert review decisions: `review.sqlite` in the run directory.

An append-only log (one row per click): the latest decision of each reviewer on each row is the
one that counts, and history is never rewritten. WAL journal + synchronous=FULL + a commit per
decision, so a decision the page saw acknowledged survives a killed server or a power cut.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from synthloom.errors import BadInputError

DECISIONS = ("accept", "reject", "edit")
DB_NAME = "review.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    row_key    TEXT NOT NULL,
    reviewer   TEXT NOT NULL,
    decision   TEXT NOT NULL CHECK (decision IN ('accept', 'reject', 'edit')),
    comment    TEXT NOT NULL DEFAULT '',
    edits      TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_row ON decisions (row_key, reviewer, seq);
"""


@dataclass(frozen=True)
class Decision:
    seq: int
    row_key: str
    reviewer: str
    decision: str
    comment: str
    created_at: str
    edits: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        """An edit accepts the row as corrected."""
        return self.decision in ("accept", "edit")

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "row_key": self.row_key, "reviewer": self.reviewer, "decision": self.decision,
                "comment": self.comment, "edits": self.edits, "created_at": self.created_at}


class ReviewStore:
    """Thread-safe (one connection behind a lock): the web server handles requests in threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    @classmethod
    def for_run(cls, run_dir: Path) -> ReviewStore:
        return cls(Path(run_dir) / DB_NAME)

    def record(self, row_key: str, reviewer: str, decision: str, comment: str = "",
               edits: dict[str, Any] | None = None) -> Decision:
        """Append one decision and commit it before returning."""
        reviewer = reviewer.strip()
        if decision not in DECISIONS:
            raise BadInputError(f"unknown review decision {decision!r}; use {', '.join(DECISIONS)}")
        if not reviewer:
            raise BadInputError("a review decision needs a reviewer name")
        if decision == "edit" and not edits:
            raise BadInputError("an 'edit' decision needs the edited columns")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        edits_json = json.dumps(edits, ensure_ascii=False, sort_keys=True) if edits else None
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self._conn.execute(
                    "INSERT INTO decisions (row_key, reviewer, decision, comment, edits, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (row_key, reviewer, decision, comment, edits_json, now))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return Decision(int(cur.lastrowid or 0), row_key, reviewer, decision, comment, now, edits or {})

    def latest(self) -> dict[str, dict[str, Decision]]:
        """{row key: {reviewer: that reviewer's latest decision}}."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, row_key, reviewer, decision, comment, created_at, edits FROM decisions"
                " WHERE seq IN (SELECT MAX(seq) FROM decisions GROUP BY row_key, reviewer) ORDER BY seq").fetchall()
        out: dict[str, dict[str, Decision]] = {}
        for seq, key, reviewer, decision, comment, created_at, edits in rows:
            out.setdefault(key, {})[reviewer] = Decision(seq, key, reviewer, decision, comment, created_at,
                                                         json.loads(edits) if edits else {})
        return out

    def history(self, row_key: str) -> list[Decision]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, row_key, reviewer, decision, comment, created_at, edits FROM decisions"
                " WHERE row_key = ? ORDER BY seq", (row_key,)).fetchall()
        return [Decision(s, k, r, d, c, t, json.loads(e) if e else {}) for s, k, r, d, c, t, e in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
