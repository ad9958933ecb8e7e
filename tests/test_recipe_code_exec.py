"""code_exec recipe: assert/solution extraction, CodeT dual agreement and first-passing on crafted code
executed in the real sandbox, the bundled seed tasks' reference solutions, and an end-to-end run on
the embedded model where every kept row is re-verified by a fresh sandbox run."""

from __future__ import annotations

import itertools

import pytest

from synthloom.codegen.execution import (
    code_blocks,
    definitions_only,
    dual_agreement,
    extract_asserts,
    extract_solution,
    first_passing,
)
from synthloom.codegen.instructions import load_seed_tasks
from synthloom.llm.scripted import ScriptedModel
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.recipes import code_exec
from synthloom.verify.code import SandboxPool, Snippet

GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
ALSO_GOOD = "Here you go:\n```python\ndef add(x, y):\n    s = x + y\n    return s\n\nprint(add(1, 2))\n```\nDone."
OFF_BY_ONE = "```python\ndef add(a, b):\n    return a + b + 1\n```"
ZERO = "```python\ndef add(a, b):\n    return 0\n```"
TESTS = "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(2, 2) == 5\nassert add(-1, 1) == 0"


# -- extraction ---------------------------------------------------------------------------------

def test_extract_asserts_keeps_compilable_asserts_on_the_entry_point():
    text = ("Tests:\n```python\nassert add(1, 2) == 3\nassert add(1,\n    2) == 3\nassert other(1) == 2\n"
            "assert add(1, 2 == \nassert add(1, 2) == 3\nassert add(5, 5) == 10\n```")
    tests = extract_asserts(text, "add", limit=5)
    assert tests == ["assert add(1, 2) == 3", "assert add(1,\n    2) == 3", "assert add(5, 5) == 10"]
    assert extract_asserts(TESTS, "add", limit=2) == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    assert extract_asserts("print(add(1, 2))", "add") == []


def test_extract_solution_takes_compiling_fenced_definitions_only():
    assert extract_solution(ALSO_GOOD, "add") == "def add(x, y):\n    s = x + y\n    return s"
    assert extract_solution("```python\ndef add(a, b)\n    return a\n```", "add") == ""  # syntax error
    assert extract_solution("Use a + b to add numbers.", "add") == ""  # prose is never code
    assert extract_solution("```python\ndef plus(a, b):\n    return a + b\n```", "add") == ""
    assert code_blocks("```js\nlet x = 1;\n```") == []
    assert definitions_only("import os\nx = 1\nassert x == 2\nf(x)\n") == "import os\nx = 1"


def test_dual_agreement_scores_consensus_sets():
    a, b = frozenset({0, 1}), frozenset({0, 1, 2})
    ranked = dual_agreement([a, a, b, frozenset(), a])
    assert [s.score for s in ranked] == [6, 3, 0]  # 3 solutions x 2 tests beats 1 x 3
    assert ranked[0].solutions == (0, 1, 4)
    assert first_passing([a, b, b], 3) == 1
    assert first_passing([a], 0) is None


# -- the execute step on crafted model outputs, real sandbox ---------------------------------------

def scripted(solutions: list[str], tests: str) -> ScriptedModel:
    def answer(request):
        prompt = request.messages[-1]["content"]
        return [tests] if "Write unit tests" in prompt else solutions
    return ScriptedModel(answer)


async def run_exec(tmp_path, solutions, tests, **opts):
    options = code_exec.Options(num_problems=1, num_solutions=len(solutions), num_test_samples=1,
                                decontaminate=False, **opts)
    pipeline = code_exec.build(options)
    pipeline.source.generator = lambda: [{"instruction": "Add two numbers.", "entry_point": "add"}]
    return await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run"),
                                    models={"generator": scripted(solutions, tests)})


async def test_dual_agreement_picks_the_largest_consensus_in_the_sandbox(tmp_path):
    # passed sets: OFF_BY_ONE {wrong test add(2,2)==5} (score 1), GOOD and ALSO_GOOD {3 right tests}
    # (score 2 x 3 = 6), ZERO {add(0,0), add(-1,1)} (score 2)
    result = await run_exec(tmp_path, [OFF_BY_ONE, GOOD, ALSO_GOOD, ZERO], TESTS)
    assert len(result.rows) == 1
    row = result.rows[0]
    assert row["solution"] == "def add(a, b):\n    return a + b"
    assert row["tests"] == ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"]
    assert row["agreement_score"] == 6  # 2 solutions x 3 tests; ZERO passes 2 tests alone (score 2)
    verdict = row["_meta"]["verdicts"]["code_exec"]
    assert verdict["ok"] is True and "passes 3/3" in verdict["evidence"]


async def test_first_passing_needs_every_test(tmp_path):
    result = await run_exec(tmp_path, [ZERO, GOOD], TESTS, selection="first_passing")
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert result.rows == []  # the wrong test add(2, 2) == 5 fails every solution
    assert funnel["execute"]["rejected"] == {"no_passing_solution": 1}
    good_tests = "\n".join(t for t in TESTS.splitlines() if "== 5" not in t)
    result = await run_exec(tmp_path / "b", [ZERO, OFF_BY_ONE, GOOD], good_tests, selection="first_passing")
    assert [r["solution"] for r in result.rows] == ["def add(a, b):\n    return a + b"]


@pytest.mark.parametrize("tests, reason", [
    ("The function should add numbers.", "no_tests"),  # no asserts: never verified
    ("assert True\nassert 1 == 1", "no_tests"),  # asserts that never call the entry point
])
async def test_code_without_asserts_is_never_verified(tmp_path, tests, reason):
    result = await run_exec(tmp_path, [GOOD], tests)
    assert result.rows == []
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert funnel["execute"]["rejected"] == {reason: 1}


async def test_hanging_and_prose_solutions_are_rejected(tmp_path):
    hang = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
    result = await run_exec(tmp_path, [hang], "assert add(1, 2) == 3", test_timeout_s=0.5)
    assert result.rows == []
    result = await run_exec(tmp_path / "b", ["I would add a and b."], "assert add(1, 2) == 3")
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert funnel["execute"]["rejected"] == {"no_solution": 1}


def test_bundled_seed_solutions_pass_their_tests_in_the_sandbox():
    seeds = load_seed_tasks()
    assert 20 <= len(seeds) <= 30
    assert sum(bool(s["is_classification"]) for s in seeds) >= 3
    with SandboxPool(workers=2) as pool:
        results = pool.run_batch([Snippet(s["output"], tests=tuple(s["tests"])) for s in seeds])
    assert [s["entry_point"] for s, r in zip(seeds, results) if not r.verified] == []


# -- end to end on the embedded model --------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded():
    from synthloom.llm.embedded import EmbeddedModel

    return EmbeddedModel()


@pytest.mark.slow
async def test_end_to_end_on_the_embedded_model(tmp_path, embedded):
    options = code_exec.Options(num_problems=2, num_solutions=2, num_test_samples=1, max_tokens=64)
    result = await run_pipeline_async(code_exec.build(options), RunOptions(out=tmp_path / "run", seed=1),
                                      models={"generator": embedded})
    funnel = result.stats["funnel"]
    assert [s["step"] for s in funnel] == ["source", "problem", "solutions", "tests", "execute", "decontaminate",
                                           "verdict_gate"]
    assert funnel[0]["rows_out"] == 2
    for before, after in itertools.pairwise(funnel):  # every row is either passed on or rejected with a reason
        assert after["rows_in"] == before["rows_out"]
        assert after["rows_out"] + after["rejected_total"] == after["rows_in"], funnel
    allowed = {"no_solution", "no_tests", "no_passing_solution", "confirmation_failed"}
    assert set(funnel[4]["rejected"]) <= allowed
    # every kept row is verified by a fresh, independent sandbox run of its solution and tests
    with SandboxPool(workers=2) as pool:
        checks = pool.run_batch([Snippet(r["solution"], tests=tuple(r["tests"])) for r in result.rows])
    for row, check in zip(result.rows, checks):
        assert row["_meta"]["verdicts"]["code_exec"]["ok"] is True
        assert row["tests"] and check.verified


def test_recipes_load_through_the_registry(monkeypatch):
    from synthloom.errors import ConfigError
    from synthloom.recipes import registry

    monkeypatch.setitem(registry.BUILTIN_RECIPES, "code_exec", "synthloom.recipes.code_exec")
    monkeypatch.setitem(registry.BUILTIN_RECIPES, "self_instruct", "synthloom.recipes.self_instruct")
    monkeypatch.setitem(registry.BUILTIN_RECIPES, "evol_instruct", "synthloom.recipes.evol_instruct")
    pipeline = registry.load_recipe("code_exec", {"selection": "first_passing", "num_solutions": 3})
    execute = next(s for s in pipeline.steps if s.name == "execute")
    assert execute.selection == "first_passing" and pipeline.options["num_solutions"] == 3
    assert [s.name for s in registry.load_recipe("self_instruct", {"variant": "code_alpaca"}).steps] == [
        "generate", "decontaminate", "verdict_gate"]
    assert registry.load_recipe("evol_instruct", {"mode": "general"}).steps[0].mode == "general"
    with pytest.raises(ConfigError, match="selection"):
        registry.load_recipe("code_exec", {"selection": "vote"})
