"""Debate and reflection loops: control flow with a scripted model, then the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthloom.llm.scripted import ScriptedModel
from synthloom.pipeline.runner import RunOptions, run_pipeline_async
from synthloom.recipes import debate, reflection
from synthloom.recipes.loop_steps import parse_choice

QUESTIONS = [{"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "7"},
             {"question": "A pen costs $2. How much do 5 pens cost?", "answer": "10"}]


def write_questions(tmp_path: Path) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(q) for q in QUESTIONS))
    return path


def debater(answer_for_apples: str, answer_for_pens: str):
    def respond(request):
        text = request.messages[-1]["content"]
        if "You are debater" in text:
            side = text.split("You are debater ")[1][0]
            return f"Argument from {side}."
        return f"The answer is {answer_for_apples if 'apples' in text else answer_for_pens}."
    return respond


async def run_debate(tmp_path: Path, judge_reply: str, rounds: int = 2):
    a, b = ScriptedModel(debater("7", "10")), ScriptedModel(debater("8", "10"))
    judge = ScriptedModel([judge_reply])
    pipeline = debate.build(debate.Options(rounds=rounds))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run", input_path=write_questions(tmp_path)),
                                      models={"debater_a": a, "debater_b": b, "judge": judge})
    return result, a, b, judge


async def test_debate_runs_rounds_over_a_shared_transcript_and_the_judge_picks_the_label(tmp_path):
    result, _a, b, judge = await run_debate(tmp_path, "B", rounds=2)
    rows = {r["answer"]: r for r in result.rows}
    apples = rows["7"]
    assert (apples["answer_a"], apples["answer_b"]) == ("7", "8")
    assert [(t["round"], t["speaker"]) for t in apples["transcript"]] == [(0, "A"), (0, "B"), (1, "A"), (1, "B"),
                                                                           (2, "A"), (2, "B")]
    # the judge always answers "B" (the second position shown); the order shown is seeded-random, so
    # "B" means debater B unless the debaters were swapped for this row
    expected = "A" if apples["judge_swapped"] else "B"
    assert apples["winner"] == expected and apples["label"] == {"A": "7", "B": "8"}[expected]
    assert apples["response"] == f"The answer is {apples['label']}."
    assert apples["_meta"]["verdicts"]["debate_judge"]["ok"] is (expected == "A")  # judge accuracy recorded
    judge_prompt = judge.requests[0].messages[-1]["content"]
    first_shown = "7" if not apples["judge_swapped"] else "8"
    assert f"Debater A says the answer is {first_shown}." in judge_prompt
    # B's round-2 argument was written after seeing A's round-2 argument
    b_round2 = [r.messages[-1]["content"] for r in b.requests if "You are debater B" in r.messages[-1]["content"]][-1]
    assert "A: Argument from A." in b_round2 and b_round2.count("B: Argument from B.") == 1
    # agreeing debaters need no argument and no judge
    pens = rows["10"]
    assert pens["winner"] == "agree" and len(pens["transcript"]) == 2 and pens["label"] == "10"
    assert judge.calls == 1


async def test_debate_judge_order_is_randomised_per_row(tmp_path):
    a, b = ScriptedModel(debater("7", "1")), ScriptedModel(debater("8", "2"))
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(json.dumps({"question": f"Q{i}: apples?", "answer": "7"}) for i in range(12)))
    result = await run_pipeline_async(debate.build(debate.Options(rounds=0)), RunOptions(out=tmp_path / "run", input_path=path),
                                      models={"debater_a": a, "debater_b": b, "judge": ScriptedModel(["A"])})
    swaps = [r["judge_swapped"] for r in result.rows]
    assert len(swaps) == 12 and 0 < sum(swaps) < 12
    assert all(r["winner"] == ("B" if r["judge_swapped"] else "A") for r in result.rows)


async def test_debate_unparseable_judge_is_rejected_with_a_reason(tmp_path):
    result, *_ = await run_debate(tmp_path, "I cannot decide", rounds=1)
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert funnel["debate"]["rejected"] == {"judge_unparseable": 1}


def test_parse_choice():
    assert parse_choice("B") == "B" and parse_choice("Debater A is right.") == "A" and parse_choice("none") is None


def reflect_script(request):
    text = request.messages[-1]["content"]
    if text.startswith("Task:") and "Review the response" in text:
        return "The sum is wrong." if "checker: the final answer is wrong" in text else "NO ISSUES"
    if "Previous response" in text:
        return "3 + 4 = 7. The answer is 7." if "apples" in text else "5 x 2 = 10. The answer is 10."
    return "3 + 4 = 8. The answer is 8." if "apples" in text else "5 x 2 = 10. The answer is 10."


async def test_reflection_revises_until_the_checker_passes_and_records_both_verdicts(tmp_path):
    model = ScriptedModel(reflect_script)
    pipeline = reflection.build(reflection.Options(rounds=3))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run", input_path=write_questions(tmp_path)),
                                      models={"generator": model, "critic": model})
    rows = {r["answer"]: r for r in result.rows}
    apples = rows["7"]
    assert apples["draft"].endswith("The answer is 8.") and apples["response"].endswith("The answer is 7.")
    assert apples["critiques"] == ["The sum is wrong."] and len(apples["revisions"]) == 1  # stopped once correct
    verdicts = apples["_meta"]["verdicts"]
    assert verdicts["draft_math"]["ok"] is False and verdicts["math"]["ok"] is True
    pens = rows["10"]
    assert pens["rounds_used"] == 0 and pens["revisions"] == []  # correct draft: nothing to critique


async def test_reflection_without_gold_stops_when_the_critic_finds_no_issues(tmp_path):
    model = ScriptedModel(reflect_script)
    pipeline = reflection.build(reflection.Options(rounds=3, use_gold=False))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run", input_path=write_questions(tmp_path)),
                                      models={"generator": model, "critic": model})
    for row in result.rows:
        assert row["critiques"] == ["NO ISSUES"] and row["response"] == row["draft"]
        assert "math" not in row["_meta"].get("verdicts", {})


@pytest.mark.slow
async def test_debate_and_reflection_end_to_end_on_the_embedded_model(tmp_path):
    from synthloom.llm.embedded import EmbeddedModel

    model = EmbeddedModel(n_slots=4, n_ctx=4096, n_threads=1)
    d = await run_pipeline_async(debate.build(debate.Options(num_seeds=2, max_depth=1, rounds=1, max_tokens=48,
                                                            argue_tokens=24)),
                                 RunOptions(out=tmp_path / "debate"),
                                 models={"debater_a": model, "debater_b": model, "judge": model})
    funnel = {s["step"]: s for s in d.stats["funnel"]}
    assert funnel["debate"]["rows_out"] + sum(funnel["debate"]["rejected"].values()) == 2
    for row in d.rows:
        assert row["winner"] in ("A", "B", "agree") and row["label"] in (row["answer_a"], row["answer_b"])
    r = await run_pipeline_async(reflection.build(reflection.Options(num_seeds=2, max_depth=1, rounds=1,
                                                                     max_tokens=48)),
                                 RunOptions(out=tmp_path / "reflect"), models={"generator": model, "critic": model})
    assert len(r.rows) == 2
    for row in r.rows:
        assert row["draft"] and row["response"] and "math" in row["_meta"]["verdicts"]
        assert row["rounds_used"] <= 1
