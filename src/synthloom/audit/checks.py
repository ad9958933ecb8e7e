"""One audit check: a measured value against a stated limit, giving a `Verdict`.

Every number the audit gates on goes through `Check`, so the report, the card and the exit code
show the same value, limit and direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from synthloom.verdicts import Verdict


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    limit: float
    higher_is_better: bool
    method: str
    note: str = ""

    @property
    def verdict(self) -> Verdict:
        sign = ">=" if self.higher_is_better else "<="
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return Verdict.unknown(self.method, f"{self.name}: not measured {self.note}".strip())
        ok = self.value >= self.limit if self.higher_is_better else self.value <= self.limit
        evidence = f"{self.name} = {self.value:.4g} (pass if {sign} {self.limit:g})"
        return Verdict(bool(ok), self.method, f"{evidence}; {self.note}" if self.note else evidence)

    def as_dict(self) -> dict[str, Any]:
        v = self.verdict
        return {"name": self.name, "value": self.value, "limit": self.limit,
                "direction": "min" if self.higher_is_better else "max", "status": v.status, **v.as_meta()}


def rounded(x: float, digits: int = 4) -> float:
    return float(round(float(x), digits))
