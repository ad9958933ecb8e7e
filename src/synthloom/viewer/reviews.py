"""Apply expert review decisions to rows as a `human` verdict in `_meta.verdicts`."""

from __future__ import annotations

import copy
from typing import Any

from synthloom.records import META, Row
from synthloom.viewer.store import Decision


def human_label(decisions: dict[str, Decision]) -> bool | None:
    """True if every reviewer accepted (or corrected) the row, False if all rejected, else None."""
    labels = {d.accepted for d in decisions.values()}
    return labels.pop() if len(labels) == 1 else None


def human_verdict(decisions: dict[str, Decision]) -> dict[str, Any]:
    ordered = sorted(decisions.values(), key=lambda d: d.seq)
    ok = human_label(decisions)
    latest = ordered[-1]
    detail = latest.comment if ok is not None else "reviewers disagree"
    return {
        "ok": ok,
        "detail": detail,
        "reviews": [{"reviewer": d.reviewer, "decision": d.decision, "comment": d.comment,
                     "at": d.created_at} for d in ordered],
    }


def apply_review(row: Row, decisions: dict[str, Decision] | None) -> Row:
    """A copy of `row` with the human verdict and the latest edit applied (original values kept)."""
    if not decisions:
        return row
    out = copy.deepcopy(row)
    meta = out.setdefault(META, {})
    verdict = human_verdict(decisions)
    edits = [d for d in sorted(decisions.values(), key=lambda d: d.seq) if d.decision == "edit"]
    if edits:
        changes = edits[-1].edits
        verdict["original"] = {k: row.get(k) for k in changes}
        out.update(changes)
    meta.setdefault("verdicts", {})["human"] = verdict
    return out
