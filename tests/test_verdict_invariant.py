"""The verdict invariant, on every built-in recipe with the embedded model: nothing reaches train that a
check did not pass.

Whatever text the 135M model writes, each recipe's output must satisfy: every row in data/train has
every required check recorded and True and no check False (advisory checks excepted); the rows the
gate stops are in rejected/ with a reason (or, with keep_unverified, in data/unverified.*, never in
train); the gate's counts add up. Recipes that produce labels a check can verify declare that check.
"""

from __future__ import annotations

import json

import pytest

from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.recipes.registry import BUILTIN_RECIPES, load_recipe
from synthloom.verdicts import gate_reason, verdicts_of

# small runs: every recipe's whole pipeline, a few rows, short generations
OPTIONS: dict[str, dict] = {
    "instruct": {"per_topic": 1, "max_response_tokens": 48},
    "metamath": {"num_seeds": 2, "max_depth": 1, "samples": 1, "max_tokens": 96},
    "llava": {"num_scenes": 1, "questions_per_scene": 1, "max_tokens": 64, "types": ["qa", "detail"]},
    "pix2struct": {"num_pages": 1, "viewports": "800x600", "budget": 600},
    "self_instruct": {"num_instructions": 2, "prompts_per_round": 2, "max_rounds": 1, "max_tokens": 96,
                      "max_instances": 1, "instance_max_tokens": 64},
    "evol_instruct": {"rounds": 1, "evolve_max_tokens": 48, "response_max_tokens": 48},
    "code_exec": {"num_problems": 1, "num_solutions": 2, "num_test_samples": 1, "max_tokens": 96},
    "constitutional": {"num_topics": 1, "per_topic": 1, "rounds": 1, "helpful_ratio": 0, "max_tokens": 48,
                       "critique_tokens": 32},
    "backtranslation": {"num_sentences": 2, "candidates": 2, "max_tokens": 32},
    "rag": {"num_topics": 2, "k": 1, "max_tokens": 48},
    "debate": {"num_seeds": 2, "max_depth": 1, "rounds": 1, "max_tokens": 48, "argue_tokens": 24},
    "reflection": {"num_seeds": 2, "max_depth": 1, "rounds": 1, "max_tokens": 48},
}
LIMIT = {"instruct": 2, "self_instruct": 4, "evol_instruct": 2, "code_exec": 1}
# recipes whose rows carry a label a check can verify must declare that check as required
MUST_REQUIRE = {"metamath": "math", "code_exec": "code_exec", "llava": "scene", "rag": "faithfulness",
                "debate": "debate_judge", "reflection": "math"}


def test_every_builtin_recipe_is_covered():
    assert set(OPTIONS) == set(BUILTIN_RECIPES)


@pytest.fixture(scope="module")
def embedded():
    from synthloom.llm.embedded import EmbeddedModel

    model = EmbeddedModel(n_slots=8, n_ctx=8192, n_threads=2)
    yield model
    model.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPTIONS))
async def test_nothing_reaches_train_that_a_check_did_not_pass(tmp_path, embedded, name):
    pipeline = load_recipe(name, {**OPTIONS[name], "keep_unverified": True})
    if name in MUST_REQUIRE:
        assert MUST_REQUIRE[name] in pipeline.required_checks
    models = {role: embedded for role in pipeline.model_roles()}
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / name, seed=1, limit=LIMIT.get(name),
                                                          report=False), models=models)
    assert result.complete
    required, advisory = pipeline.required_checks, pipeline.advisory_checks
    for row in result.rows:
        assert gate_reason(row, required, advisory) is None, (name, verdicts_of(row))
        for check in required:
            assert verdicts_of(row)[check]["ok"] is True
    gate = {s["step"]: s for s in result.stats["funnel"]}["verdict_gate"]
    assert gate["rows_in"] == gate["rows_out"] + gate["rejected_total"] == len(result.rows) + gate["rejected_total"]
    assert all(reason.startswith(("check_failed:", "check_unknown:", "check_missing:")) for reason in gate["rejected"])
    unverified_path = tmp_path / name / "data" / "unverified.jsonl"
    unverified = [json.loads(line) for line in unverified_path.read_text().splitlines()] if unverified_path.exists() else []
    assert len(unverified) == gate["rejected_total"] == result.stats["unverified_rows"]
    for row in unverified:  # each is there for the reason the gate gave, and none of them is in train
        assert gate_reason(row, required, advisory) is not None
    train_ids = {r["_meta"]["id"] for r in result.rows}
    assert not train_ids & {r["_meta"]["id"] for r in unverified}
