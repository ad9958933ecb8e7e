"""All 164 HumanEval canonical solutions pass in the sandbox; wrong completions do not."""

from __future__ import annotations

import time

import pytest

from synthloom.verify.code import SandboxLimits, SandboxPool
from synthloom.verify.code.humaneval import humaneval_snippet, load_humaneval, run_humaneval


@pytest.fixture(scope="module")
def pool():
    with SandboxPool() as sandbox:
        yield sandbox


async def test_all_canonical_solutions_pass_in_the_sandbox(pool):
    problems = load_humaneval()
    assert len(problems) == 164
    started = time.monotonic()
    results = await run_humaneval(pool)
    failures = {task: (r.status, r.stderr[-300:]) for task, r in results.items() if not r.verified}
    assert failures == {}
    assert len(results) == 164
    assert time.monotonic() - started < 60


async def test_wrong_and_hanging_completions_fail(pool):
    first, second = load_humaneval()[:2]
    results = await run_humaneval(pool, {first.task_id: "    return None\n",
                                         second.task_id: "    while True:\n        pass\n"},
                                  limits=SandboxLimits(wall_s=1.5))
    assert results[first.task_id].status == "error" and not results[first.task_id].verified
    assert "AssertionError" in results[first.task_id].stderr
    assert results[second.task_id].status == "timeout" and not results[second.task_id].verified


def test_prompt_without_body_is_not_verified(pool):
    problem = load_humaneval()[0]
    result = pool.run(humaneval_snippet(problem, completion="    pass\n"))
    assert not result.verified and result.tests_total == 1 and result.tests_passed == 0
