"""The trust audit's section in the dataset card and report.html, read from the run's audit.json.

The report shows what `synthloom.audit` wrote without importing it (the audit package builds on
the report, not the other way round).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.json"


def load_audit(run_dir: Path) -> dict[str, Any] | None:
    """The run's audit.json, or None when the run was never audited (or the file is unreadable)."""
    try:
        data = json.loads((Path(run_dir) / AUDIT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


HEADING = "## Audit"


def audit_markdown(result: dict[str, Any]) -> str:
    """The card's Audit section: every check with its value and limit, and the headline numbers."""
    verdict = "passed" if result.get("passed") else f"FAILED ({', '.join(result.get('failed', []))})"
    lines = [HEADING, "", f"Trust audit of {result.get('rows', 0)} rows: **{verdict}**.", "",
             "| area | check | value | limit | status |", "|---|---|---|---|---|"]
    for c in result.get("checks", []):
        value = "-" if c.get("value") is None else f"{c['value']:.4g}"
        sign = ">=" if c.get("direction") == "min" else "<="
        lines.append(f"| {c.get('area')} | {c.get('name')} | {value} | {sign} {c.get('limit'):g} | {c.get('status')} |")
    pii = result.get("pii")
    if pii:
        by_type = ", ".join(f"{k} {v}" for k, v in pii.get("by_type", {}).items()) or "none"
        lines += ["", f"PII found (Presidio pattern recognisers): {pii.get('rows_with_pii', 0)} rows; {by_type}."]
    lines += ["", "Methods and thresholds: see synthloom's docs/audit.md.", ""]
    return "\n".join(lines)


def card_with_audit(card: str, run_dir: Path) -> str:
    """`card` with its Audit section replaced by (or extended with) the run's audit.json, if any."""
    result = load_audit(run_dir)
    head, sep, tail = card.partition(f"\n{HEADING}\n")
    if sep:  # drop the old section, keep whatever follows it
        rest = tail.split("\n## ", 1)
        card = head + ("\n## " + rest[1] if len(rest) > 1 else "\n")
    if result is None:
        return card
    return card.rstrip("\n") + "\n\n" + audit_markdown(result)


def report_context(run_dir: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the report's Audit section shows: the run's audit.json and the `redact_pii` counts."""
    found = [r.get("pii_found") for r in rows if isinstance(r.get("pii_found"), list)]
    counts = Counter(t for f in found for t in f)
    return {"result": load_audit(run_dir), "redacted_rows": sum(1 for f in found if f),
            "redacted": dict(counts.most_common())}
