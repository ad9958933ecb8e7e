"""The audit as pipeline steps.

- `redact_pii` (map): replaces PII in the named columns with `<ENTITY_TYPE>` (Presidio, offline
  recognisers) and lists the entity types it replaced in `pii_found`.
- `trust_audit` (global): audits the rows that reach it against a reference file, private seeds
  and/or canaries, writes `audit.json` into the run directory (the report and card show it) and
  passes every row through; with `fail_run: true` a failed audit stops the run with an error.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from synthloom.errors import SynthloomError
from synthloom.pipeline.step import Step, StepContext, register_step
from synthloom.records import Row


def redact_rows(rows: list[Row], columns: list[str], redactor: Any, found_column: str = "pii_found"
                ) -> tuple[list[Row], dict[str, int]]:
    """Rows with PII in `columns` replaced, each listing the entity types found; and counts by type."""
    counts: Counter = Counter()
    out = []
    for row in rows:
        new = dict(row)
        found: list[str] = []
        for col in columns:
            value = row.get(col)
            if isinstance(value, str):
                red = redactor.redact(value)
                new[col] = red.text
                found += [e["type"] for e in red.entities]
        counts.update(found)
        new[found_column] = sorted(set(found))
        out.append(new)
    return out, dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@register_step("redact_pii")
class RedactPiiStep(Step):
    columns: list[str]
    entities: list[str] = []
    found_column: str = "pii_found"

    def input_columns(self) -> set[str]:
        return set(self.columns)

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {self.found_column}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        from synthloom.audit.pii import PiiRedactor

        return redact_rows(rows, self.columns, PiiRedactor(self.entities or None), self.found_column)[0]


class AuditFailed(SynthloomError):
    exit_code = 4


@register_step("trust_audit")
class TrustAuditStep(Step):
    is_global: ClassVar[bool] = True
    column: str
    reference: str | None = None
    reference_column: str | None = None
    private_seeds: str | None = None
    seed_column: str | None = None
    canaries: list[str] = []
    bias: bool = True
    pii: bool = True
    thresholds: dict[str, float] = {}
    sample: int | None = None
    fail_run: bool = False

    def input_columns(self) -> set[str]:
        return {self.column}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        from synthloom.audit.runner import AUDIT_FILE, AuditLimits, run_audit, write_audit
        from synthloom.quality.commands import _load

        def column_of(path: str | None, column: str | None) -> list[str] | None:
            return None if path is None else _load(Path(path), column or self.column)[1]

        result = run_audit([str(r.get(self.column) or "") for r in rows],
                           reference=column_of(self.reference, self.reference_column),
                           private_seeds=column_of(self.private_seeds, self.seed_column), canaries=self.canaries or None,
                           bias=self.bias, pii=self.pii, limits=AuditLimits.from_pairs(self.thresholds), seed=ctx.run_seed,
                           sample=self.sample)
        if ctx.run_dir is not None:
            write_audit(result, Path(ctx.run_dir) / AUDIT_FILE)
        if self.fail_run and not result["passed"]:
            raise AuditFailed(f"trust audit failed: {', '.join(result['failed'])}")
        return rows
