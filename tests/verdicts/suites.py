"""The registry of verdict suites: labelled cases, the verifier that judges them, and the bar.

A suite is a JSONL file of cases (each with an `id`, a hand label `ok` — would this row be right
to keep — and whatever the verifier reads) and a `judge(case) -> bool | None` that runs the real
verifier; only True counts as "ok" (False and unknown both keep a row out of train). Precision
of ok is the share of accepted cases labelled ok (a false accept poisons training data); recall
is the share of ok-labelled cases accepted. Add a suite with `register(...)`; the test
(`test_math_scene_verdicts.py`) and `benchmarks/bench_verdicts.py` pick it up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIN_PRECISION = 0.995
MIN_RECALL = 0.90


@dataclass(frozen=True)
class Suite:
    name: str
    cases: Path
    judge: Callable[[dict[str, Any]], bool | None]
    min_cases: int = 100
    min_precision: float = MIN_PRECISION
    min_recall: float = MIN_RECALL


@dataclass
class Score:
    n: int = 0
    labelled_ok: int = 0
    accepted: int = 0
    true_accepts: int = 0
    false_accepts: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.true_accepts / self.accepted if self.accepted else 1.0

    @property
    def recall(self) -> float:
        return self.true_accepts / self.labelled_ok if self.labelled_ok else 1.0

    def line(self, name: str) -> str:
        return (f"{name:<16} precision(ok) {self.precision:6.1%}  recall {self.recall:6.1%}  n {self.n} "
                f"({self.labelled_ok} ok, {self.n - self.labelled_ok} not ok; false accepts {len(self.false_accepts)})")


SUITES: dict[str, Suite] = {}


def register(name: str, cases: str, judge: Callable[[dict[str, Any]], bool | None], **bar: Any) -> Suite:
    suite = Suite(name, HERE / cases, judge, **bar)
    SUITES[name] = suite
    return suite


def load_cases(path: Path) -> list[dict[str, Any]]:
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            case = json.loads(line)
            if not isinstance(case.get("ok"), bool) or "id" not in case:
                raise ValueError(f"{path.name}:{number}: a case needs an 'id' and a boolean 'ok' label")
            cases.append(case)
    return cases


def score(suite: Suite) -> Score:
    result = Score()
    for case in load_cases(suite.cases):
        accepted = suite.judge(case) is True
        result.n += 1
        result.labelled_ok += case["ok"]
        result.accepted += accepted
        if accepted and case["ok"]:
            result.true_accepts += 1
        elif accepted:
            result.false_accepts.append(case["id"])
        elif case["ok"]:
            result.misses.append(case["id"])
    return result


# --- the suites ---------------------------------------------------------------------------------

def _math(case: dict[str, Any]) -> bool | None:
    from synthloom.verify.math import math_verdict

    return math_verdict(case["text"], case["gold"]).ok


@cache
def _named_scenes() -> dict[str, Any]:
    return json.loads((HERE / "scenes.json").read_text(encoding="utf-8"))


def _scene(case: dict[str, Any]) -> bool | None:
    from synthloom.multimodal.scene_verify import check_answer
    from synthloom.multimodal.scenes import Scene

    graph = case["scene"] if isinstance(case["scene"], dict) else _named_scenes()[case["scene"]]
    return check_answer(case["question"], case["answer"], Scene.from_dict(graph)).ok


def _judge_label(case: dict[str, Any]) -> bool | None:
    # how every model verdict is read (llm/constrained.py): a lone label, or unknown
    from synthloom.llm.base import ChatResponse, Choice
    from synthloom.llm.constrained import read_choice

    reading = read_choice(ChatResponse([Choice(case["text"], case.get("finish", "stop"))]), case["labels"])
    return True if reading.label == case["positive"] else None


register("math", "math_cases.jsonl", _math, min_cases=250)
register("judge_label", "judge_cases.jsonl", _judge_label, min_cases=250)
register("scene", "scene_cases.jsonl", _scene, min_cases=100)
