"""A run's kept and rejected rows in memory, with search and filters for the viewer.

Every row gets a stable key: its `_meta.id` (suffixed `~2`, `~3` … for repeats, in file order, which
is deterministic), so review decisions stored against a key find the same row after a restart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthloom.errors import BadInputError
from synthloom.records import META, Row, meta_of
from synthloom.report.rundata import RunData, load_run
from synthloom.verdicts import verdicts_of
from synthloom.viewer.reviews import apply_review, human_label
from synthloom.viewer.store import Decision

STATUSES = ("kept", "rejected")


@dataclass
class Entry:
    key: str
    status: str  # kept | rejected
    step: str
    reason: str
    detail: str
    row: Row

    def text(self, column: str | None = None) -> str:
        """Lower-cased searchable text of one column, or of every column plus id and reason."""
        if column:
            v = self.row.get(column)
            return (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)).lower() if v is not None else ""
        parts = [self.key, self.reason, self.detail]
        parts += [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in self.row.items() if k != META]
        return "\n".join(parts).lower()

    def automatic_verdicts(self) -> dict[str, bool]:
        """Verdicts with a definite ok (not `human`), plus the pipeline's own keep/reject."""
        out = {name: v["ok"] for name, v in verdicts_of(self.row).items()
               if name != "human" and isinstance(v, dict) and isinstance(v.get("ok"), bool)}
        out["pipeline"] = self.status == "kept"
        return out


@dataclass
class Query:
    q: str = ""
    column: str = ""
    status: str = ""  # "" = both
    reason: str = ""
    step: str = ""
    verdict: str = ""  # "<verifier>:pass|fail|none", verifier may be "human"
    review: str = ""  # reviewed | unreviewed | accepted | rejected | edited | disputed
    offset: int = 0
    limit: int = 25


class ViewerDataset:
    def __init__(self, data: RunData) -> None:
        self.data = data
        self.entries: list[Entry] = []
        seen: dict[str, int] = {}
        for i, row in enumerate(data.kept):
            self._add(seen, row, "kept", str(meta_of(row).get("step", "")), "", "", f"kept-{i}")
        for i, rej in enumerate(data.rejected):
            self._add(seen, rej.row, "rejected", rej.step, rej.reason, rej.detail, f"rejected-{i}")
        self.by_key = {e.key: e for e in self.entries}

    @classmethod
    def load(cls, run_dir: Path, max_rows: int = 200_000) -> ViewerDataset:
        return cls(load_run(Path(run_dir), max_rows=max_rows))

    def _add(self, seen: dict[str, int], row: Row, status: str, step: str, reason: str, detail: str,
             fallback: str) -> None:
        base = str(meta_of(row).get("id") or fallback)
        seen[base] = seen.get(base, 0) + 1
        key = base if seen[base] == 1 else f"{base}~{seen[base]}"
        self.entries.append(Entry(key, status, step, reason, detail, row))

    # --- facets for the filter menus -------------------------------------------------------
    def columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for e in self.entries:
            for k in e.row:
                if k != META:
                    cols.setdefault(k, None)
        return list(cols)

    def reasons(self) -> list[str]:
        return sorted({e.reason for e in self.entries if e.reason})

    def steps(self) -> list[str]:
        return [str(s.get("step")) for s in self.data.funnel]

    def verifiers(self) -> list[str]:
        names = {n for e in self.entries for n in verdicts_of(e.row)}
        return sorted(names | {"human"})

    # --- querying ---------------------------------------------------------------------------
    def get(self, key: str) -> Entry:
        try:
            return self.by_key[key]
        except KeyError:
            raise BadInputError(f"no row with key {key!r} in this run") from None

    def query(self, query: Query, reviews: dict[str, dict[str, Decision]]) -> tuple[int, list[Entry]]:
        """(number of matching rows, the page of them at offset/limit)."""
        if query.status and query.status not in STATUSES:
            raise BadInputError(f"unknown status {query.status!r}; use kept or rejected")
        matches = [e for e in self._filtered(query, reviews)]
        start = max(0, query.offset)
        return len(matches), matches[start: start + max(1, min(query.limit, 500))]

    def _filtered(self, query: Query, reviews: dict[str, dict[str, Decision]]) -> Iterator[Entry]:
        needle = query.q.strip().lower()
        vname, _, vwant = query.verdict.partition(":")
        for e in self.entries:
            if query.status and e.status != query.status:
                continue
            if query.reason and e.reason != query.reason:
                continue
            if query.step and e.step != query.step:
                continue
            decisions = reviews.get(e.key)
            if query.review and not _review_matches(query.review, decisions):
                continue
            if vname and not _verdict_matches(vname, vwant, e, decisions):
                continue
            if needle:
                row = apply_review(e.row, decisions) if decisions else e.row
                probe = Entry(e.key, e.status, e.step, e.reason, e.detail, row)
                if needle not in probe.text(query.column or None):
                    continue
            yield e

    def shown(self, entry: Entry, reviews: dict[str, dict[str, Decision]]) -> dict[str, Any]:
        """The JSON the page shows for a row: review applied, `_meta` included."""
        decisions = reviews.get(entry.key)
        return {"key": entry.key, "status": entry.status, "step": entry.step, "reason": entry.reason,
                "detail": entry.detail, "row": apply_review(entry.row, decisions),
                "decisions": [d.to_dict() for d in (decisions or {}).values()]}


def _review_matches(want: str, decisions: dict[str, Decision] | None) -> bool:
    if want == "unreviewed":
        return not decisions
    if not decisions:
        return False
    label = human_label(decisions)
    return {"reviewed": True, "accepted": label is True, "rejected": label is False,
            "disputed": label is None,
            "edited": any(d.decision == "edit" for d in decisions.values())}.get(want, False)


def _verdict_matches(name: str, want: str, entry: Entry, decisions: dict[str, Decision] | None) -> bool:
    if name == "human":
        ok = human_label(decisions) if decisions else None
        present = bool(decisions)
    else:
        v = verdicts_of(entry.row).get(name)
        present = isinstance(v, dict)
        ok = v.get("ok") if isinstance(v, dict) else None
    if want in ("", "any"):
        return present
    if want == "pass":
        return ok is True
    if want == "fail":
        return ok is False
    if want == "none":
        return present and ok is None
    raise BadInputError(f"unknown verdict filter {want!r}; use pass, fail or none")
