"""A refresh of the run's card and report after `synthloom audit RUN` (the section itself: report/audit_section.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def refresh_run_outputs(run_dir: Path, result: dict[str, Any]) -> None:
    """After `synthloom audit RUN`: put the Audit section into README.md and rewrite report.html."""
    from synthloom.io import write_text_atomic
    from synthloom.report.audit_section import card_with_audit

    card = run_dir / "README.md"
    if card.exists():
        write_text_atomic(card, card_with_audit(card.read_text(encoding="utf-8"), run_dir))
    if (run_dir / "stats.json").exists():
        from synthloom.report.html import write_report

        write_report(run_dir)
