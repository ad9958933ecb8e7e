"""The verdict gate: the last step of every pipeline, enforced by the engine rather than each recipe.

A row reaches `data/train.*` only when every check its recipe declares as required passed and no
other recorded check failed (see synthloom.verdicts). Rows stopped here are rejected with the
reason (`check_failed:<name>`, `check_unknown:<name>`, `check_missing:<name>`); with the pipeline's
`keep_unverified` the runner also writes them to the separate `data/unverified.*` split.
"""

from __future__ import annotations

from typing import Any

from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.records import Row
from synthloom.verdicts import gate_reason

GATE_NAME = "verdict_gate"


@register_step("verdict_gate")
class VerdictGate(Step):
    """Keeps a row only when its required checks are all True and no other check is False."""

    required: list[str] = []
    advisory: list[str] = []

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            why = gate_reason(row, self.required, self.advisory)
            out.append(row if why is None else Rejected(why[0], row, why[1]))
        return out


def is_gate(step: Step) -> bool:
    return isinstance(step, VerdictGate)


__all__ = ["GATE_NAME", "VerdictGate", "is_gate"]
