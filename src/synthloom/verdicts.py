"""The verdict contract: what every check (verifier, judge, parser) says about a row.

A verdict is three-valued — `ok` True (passed), False (failed) or None (unknown: the check could not
decide, e.g. the judge's answer was not a lone label) — plus the `method` that decided and the
`evidence` it saw. Verdicts live in `_meta.verdicts[name]` as `{ok, method, evidence}`.

A recipe declares which checks are *required* (`Pipeline.required_checks`); the runner, not the
recipe, guarantees that a row reaches `data/train.*` only when every required check is True and no
other recorded check is False (checks a pipeline lists as `advisory_checks` are informational, e.g.
the verdict on a draft that a later step corrected). Everything else goes to `rejected/` with the
reason, or with `keep_unverified` to the separate `data/unverified.*` split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthloom.records import META, Row, meta_of


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool | None
    method: str
    evidence: str = ""

    @classmethod
    def passed(cls, method: str, evidence: str = "") -> "Verdict":
        return cls(True, method, evidence)

    @classmethod
    def failed(cls, method: str, evidence: str = "") -> "Verdict":
        return cls(False, method, evidence)

    @classmethod
    def unknown(cls, method: str, evidence: str = "") -> "Verdict":
        return cls(None, method, evidence)

    @property
    def status(self) -> str:
        return "passed" if self.ok is True else "failed" if self.ok is False else "unknown"

    def as_meta(self) -> dict[str, Any]:
        return {"ok": self.ok, "method": self.method, "evidence": self.evidence[:500]}

    def record(self, row: Row, name: str) -> Row:
        """Write this verdict into `row[_meta].verdicts[name]` in place; returns the row."""
        meta = row.setdefault(META, {})
        meta.setdefault("verdicts", {})[name] = self.as_meta()
        return row


def verdicts_of(row: Row) -> dict[str, dict[str, Any]]:
    """The row's recorded verdicts, `{name: {ok, method, evidence}}` (empty when none)."""
    v = meta_of(row).get("verdicts")
    return v if isinstance(v, dict) else {}


def verdict_ok(record: Any) -> bool | None:
    """The three-valued `ok` of one recorded verdict; anything malformed is unknown."""
    if not isinstance(record, dict):
        return None
    ok = record.get("ok")
    return ok if isinstance(ok, bool) else None


def verdict_evidence(record: Any) -> str:
    """The evidence of a recorded verdict (older runs stored it as `detail`)."""
    if not isinstance(record, dict):
        return ""
    return str(record.get("evidence", record.get("detail", "")) or "")


def tally(rows: list[Row]) -> dict[str, dict[str, int]]:
    """Per check, how many of `rows` it passed, failed or left unknown (e.g. over the rows in train:
    reflection's advisory `draft_math` failures there are the rows the loop corrected)."""
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        for name, record in verdicts_of(row).items():
            ok = verdict_ok(record)
            c = counts.setdefault(name, {"passed": 0, "failed": 0, "unknown": 0})
            c["passed" if ok is True else "failed" if ok is False else "unknown"] += 1
    return dict(sorted(counts.items()))


def gate_reason(row: Row, required: tuple[str, ...] | list[str],
                advisory: tuple[str, ...] | list[str] = ()) -> tuple[str, str] | None:
    """Why `row` may not enter train, as (reason, detail), or None when it may.

    A required check must be recorded and True; any other recorded check that is False blocks the
    row too, unless the pipeline lists it as advisory.
    """
    verdicts = verdicts_of(row)
    for name in required:
        if name not in verdicts:
            return f"check_missing:{name}", f"required check {name!r} was never recorded"
        ok = verdict_ok(verdicts[name])
        if ok is not True:
            status = "failed" if ok is False else "unknown"
            return f"check_{status}:{name}", verdict_evidence(verdicts[name])[:300]
    advisory_set = set(advisory)
    for name, record in verdicts.items():
        if name not in advisory_set and verdict_ok(record) is False:
            return f"check_failed:{name}", verdict_evidence(record)[:300]
    return None


__all__ = ["Verdict", "gate_reason", "tally", "verdict_evidence", "verdict_ok", "verdicts_of"]
