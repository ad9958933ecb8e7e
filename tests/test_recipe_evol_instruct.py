"""evol_instruct recipe: each of the four elimination rules on scripted model outputs (and that a failed
evolution puts the *original* back into the pool), operation sampling, and an end-to-end run on the
embedded model."""

from __future__ import annotations

import pytest

from synthloom.codegen import evolution as evo
from synthloom.errors import ConfigError
from synthloom.llm.scripted import ScriptedModel
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.recipes import evol_instruct

SEED = "Write a function that reverses a string."
EVOLVED = "Write a function that reverses a string without using slicing or the reversed built-in."
GOOD_ANSWER = "def reverse(s):\n    out = ''\n    for ch in s:\n        out = ch + out\n    return out"


def model_for(rewrite: str, response: str, judge: str = "Not Equal") -> ScriptedModel:
    """Answers the three kinds of request the evolve step makes: rewrite, response, equality judge."""
    def answer(request):
        prompt = request.messages[-1]["content"]
        if "Your Judgement" in prompt:
            return judge
        if "increase the difficulty" in prompt or "#The Given Prompt#" in prompt or "#Given Prompt#" in prompt:
            return rewrite
        return response
    return ScriptedModel(answer)


async def evolve(tmp_path, model, rounds=1, **opts):
    options = evol_instruct.Options(rounds=rounds, decontaminate=False, **opts)
    pipeline = evol_instruct.build(options)
    pipeline.source.generator = lambda: [{"instruction": SEED}]
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run"), models={"generator": model})
    return result, {s["step"]: s for s in result.stats["funnel"]}


async def test_a_good_evolution_is_kept_and_evolved_further(tmp_path):
    model = model_for(EVOLVED, GOOD_ANSWER)
    result, funnel = await evolve(tmp_path, model, rounds=2)
    assert funnel["evolve"]["rejected"] == {"no_information_gain": 1}  # round 2 rewrites EVOLVED into itself
    row = result.rows[0]
    assert (row["instruction"], row["output"], row["round"]) == (EVOLVED, GOOD_ANSWER, 1)
    assert row["seed_instruction"] == SEED and row["operation"].startswith("code_")
    rewrites = [r.messages[-1]["content"] for r in model.requests if "increase the difficulty" in r.messages[-1]["content"]]
    assert SEED in rewrites[0] and EVOLVED in rewrites[1]  # the pool advanced to the evolved instruction


@pytest.mark.parametrize("rewrite, response, judge, reason", [
    (EVOLVED, GOOD_ANSWER, "Equal", "no_information_gain"),  # rule 1: the model judges I' equal to I
    (EVOLVED, "I'm sorry, but I cannot help with that request.", "Not Equal", "struggled_response"),  # rule 2
    (EVOLVED, "Yes, it is. And so it is!", "Not Equal", "stopwords_only"),  # rule 3
    ("#Rewritten Prompt#: " + EVOLVED, GOOD_ANSWER, "Not Equal", "copied_prompt_words"),  # rule 4
    ("Rewrite the given prompt to avoid slicing.", GOOD_ANSWER, "Not Equal", "copied_prompt_words"),  # rule 4
])
async def test_each_elimination_rule_returns_the_original_to_the_pool(tmp_path, rewrite, response, judge, reason):
    model = model_for(rewrite, response, judge)
    result, funnel = await evolve(tmp_path, model, rounds=2)
    assert result.rows == []
    assert funnel["evolve"]["rejected"] == {reason: 2}
    rewrites = [r.messages[-1]["content"] for r in model.requests if "increase the difficulty" in r.messages[-1]["content"]]
    # round 2 evolves the original seed again, never the failed evolution
    assert len(rewrites) == 2 and all(SEED in p and EVOLVED not in p for p in rewrites)


def test_elimination_rules_as_pure_functions():
    assert evo.struggled("Sorry, I can't.") and not evo.struggled("sorry " + "word " * 90)
    assert not evo.struggled("Here is the code you asked for.")
    assert evo.only_stopwords("") and evo.only_stopwords("... it is, yes!")
    assert not evo.only_stopwords("def f(): return 1")
    assert evo.copies_prompt_words("As the #Given Prompt# says") == "#given prompt#"
    assert evo.parse_equality("Not Equal") is False and evo.parse_equality("Equal.") is True
    assert evo.parse_equality("maybe") is None
    # echoes of the prompt and sentences are unknown, never "Equal"
    for text in ("Your Judgement (just answer: Equal", "Equal or Not Equal", "They are equal in depth",
                 "not equal", "Equal, but", ""):
        assert evo.parse_equality(text) in (None, False) and evo.parse_equality(text) is not True
    assert evo.parse_equality("not equal") is False


def test_general_mode_has_depth_and_breadth_operations_and_rejects_unknown_ones():
    names = {op.name for op in evo.operations("general")}
    assert names == {"add_constraints", "deepening", "concretizing", "increase_reasoning", "complicate_input",
                     "breadth"}
    code = {op.name: op.method for op in evo.operations("code")}
    assert "erroneous code" in code["code_erroneous"] and "complexity" in code["code_complexity"]
    with pytest.raises(ConfigError):
        evol_instruct.build(evol_instruct.Options(operations=["teleport"]))


async def test_general_mode_prompts_cap_growth_and_breadth_uses_its_own_template(tmp_path):
    model = model_for(EVOLVED, GOOD_ANSWER)
    await evolve(tmp_path, model, mode="general", operations=["breadth"], judge=False)
    assert "#Created Prompt#" in model.requests[0].messages[-1]["content"]
    model = model_for(EVOLVED, GOOD_ANSWER)
    await evolve(tmp_path / "b", model, mode="general", operations=["add_constraints"], judge=False)
    assert "10 to 20 words" in model.requests[0].messages[-1]["content"]


@pytest.fixture(scope="module")
def embedded():
    from synthloom.llm.embedded import EmbeddedModel

    return EmbeddedModel()


@pytest.mark.slow
async def test_end_to_end_on_the_embedded_model(tmp_path, embedded):
    options = evol_instruct.Options(rounds=1, evolve_max_tokens=48, response_max_tokens=48)
    result = await run_pipeline_async(evol_instruct.build(options),
                                      RunOptions(out=tmp_path / "run", seed=3, limit=2),
                                      models={"generator": embedded})
    funnel = result.stats["funnel"]
    assert [s["step"] for s in funnel] == ["source", "evolve", "decontaminate", "verdict_gate"]
    evolve_stats = funnel[1]
    assert evolve_stats["rows_in"] == 2
    assert evolve_stats["rows_out"] + evolve_stats["rejected_total"] == 2  # one outcome per lineage per round
    assert set(evolve_stats["rejected"]) <= {"empty_evolution", "copied_prompt_words", "struggled_response",
                                             "stopwords_only", "no_information_gain", "judge_unreadable",
                                             "invalid_request", "truncated"}
    for row in result.rows:
        assert row["round"] == 1 and row["instruction"] != row["seed_instruction"]
        assert row["_meta"]["model"].startswith("embedded:")


async def test_a_rewrite_or_response_cut_off_at_max_tokens_is_eliminated(tmp_path):
    long = " ".join(["word"] * 60)
    for rewrite, response in ((long, GOOD_ANSWER), (EVOLVED, long)):
        model = model_for(rewrite, response)
        out = tmp_path / str(len(rewrite))
        result = await run_pipeline_async(evol_instruct.build(evol_instruct.Options(rounds=1, evolve_max_tokens=40,
                                                                                    response_max_tokens=40)),
                                          RunOptions(out=out, limit=1), models={"generator": model})
        assert result.rows == []
        assert {s["step"]: s for s in result.stats["funnel"]}["evolve"]["rejected"] == {"truncated": 1}
