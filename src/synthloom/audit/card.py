"""The audit in the dataset card (README.md) and a refresh of the run's report after an audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    from synthloom.audit.runner import load_audit

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
    from collections import Counter

    from synthloom.audit.runner import load_audit

    found = [r.get("pii_found") for r in rows if isinstance(r.get("pii_found"), list)]
    counts = Counter(t for f in found for t in f)
    return {"result": load_audit(run_dir), "redacted_rows": sum(1 for f in found if f),
            "redacted": dict(counts.most_common())}


def refresh_run_outputs(run_dir: Path, result: dict[str, Any]) -> None:
    """After `synthloom audit RUN`: put the Audit section into README.md and rewrite report.html."""
    from synthloom.io import write_text_atomic

    card = run_dir / "README.md"
    if card.exists():
        write_text_atomic(card, card_with_audit(card.read_text(encoding="utf-8"), run_dir))
    if (run_dir / "stats.json").exists():
        from synthloom.report.html import write_report

        write_report(run_dir)
