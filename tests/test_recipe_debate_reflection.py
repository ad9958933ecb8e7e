"""Debate and reflection loops: control flow with a scripted model, then the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthloom.llm.scripted import ScriptedModel
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.recipes import debate, reflection
from synthloom.pipeline.checkpoint import Checkpoints
from synthloom.report.rundata import step_dirs

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


def rejected_rows(run_dir: Path, step: str) -> list[dict]:
    index = next(i for i, name, _ in step_dirs(run_dir, "rejected") if name == step)
    return Checkpoints(run_dir).read_rejected(index, step)


async def test_debate_runs_rounds_over_a_shared_transcript_and_the_judge_picks_the_label(tmp_path):
    result, _a, b, judge = await run_debate(tmp_path, "B", rounds=2)
    rows = {r["answer"]: r for r in result.rows}
    if "7" in rows:
        apples = rows["7"]
    else:  # the judge picked the wrong debater: the row is rejected, never a label
        [rec] = [r for r in rejected_rows(result.run_dir, "debate") if r["row"]["answer"] == "7"]
        assert rec["reason"] == "wrong_label"
        apples = rec["row"]
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
    # the judge always says "A" (the first shown): right when debater A (answer 7 = gold) is shown first
    wrong = rejected_rows(result.run_dir, "debate")
    assert len(result.rows) + len(wrong) == 12 and result.rows and wrong
    assert all(not r["judge_swapped"] and r["winner"] == "A" and r["label"] == "7" for r in result.rows)
    assert all(rec["reason"] == "wrong_label" and rec["row"]["judge_swapped"] for rec in wrong)


async def test_debate_unparseable_judge_is_rejected_with_a_reason(tmp_path):
    result, *_ = await run_debate(tmp_path, "I cannot decide", rounds=1)
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert funnel["debate"]["rejected"] == {"judge_unknown": 1}


async def test_debate_judge_reply_in_prose_or_echo_is_unknown_not_a_vote(tmp_path):
    for i, reply in enumerate(("Debater A is right.", "A or B", "Which debater is right? Reply with A or B.",
                               "B is wrong")):
        (tmp_path / str(i)).mkdir()
        result, *_ = await run_debate(tmp_path / str(i), reply, rounds=0)
        funnel = {s["step"]: s for s in result.stats["funnel"]}
        assert funnel["debate"]["rejected"] == {"judge_unknown": 1}, reply


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
    # how many rows the loop turned from false to true: the advisory draft verdicts failed in train
    assert apples["fixed_by_reflection"] is True and pens["fixed_by_reflection"] is False
    assert result.stats["train_verdicts"] == {"draft_math": {"passed": 1, "failed": 1, "unknown": 0},
                                              "math": {"passed": 2, "failed": 0, "unknown": 0}}
    card = (result.run_dir / "README.md").read_text()
    assert "`draft_math` on the rows in train: 1 passed, 1 failed" in card and "advisory" in card
    report = (result.run_dir / "report.html").read_text()
    assert 'id="train-verdicts"' in report and "required checks math" in report


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
    assert set(funnel["debate"]["rejected"]) <= {"no_answer", "judge_unknown", "wrong_label", "invalid_request",
                                                  "truncated"}
    for row in d.rows:  # a kept row's label is the gold answer, whichever debater the judge chose
        assert row["winner"] in ("A", "B", "agree") and row["label"] in (row["answer_a"], row["answer_b"])
        assert row["_meta"]["verdicts"]["debate_judge"]["ok"] is True
    r = await run_pipeline_async(reflection.build(reflection.Options(num_seeds=2, max_depth=1, rounds=1,
                                                                     max_tokens=48)),
                                 RunOptions(out=tmp_path / "reflect"), models={"generator": model, "critic": model})
    funnel = {s["step"]: s for s in r.stats["funnel"]}
    assert len(r.rows) + sum(funnel["reflect"]["rejected"].values()) == 2  # every question kept or rejected
    assert set(funnel["reflect"]["rejected"]) <= {"wrong_answer", "empty_response", "invalid_request", "truncated"}
    for row in r.rows:  # whatever the model wrote, a kept row's final answer checked out
        assert row["draft"] and row["response"] and row["_meta"]["verdicts"]["math"]["ok"] is True
        assert row["rounds_used"] <= 1
        assert row["fixed_by_reflection"] is (row["_meta"]["verdicts"]["draft_math"]["ok"] is False)


async def test_a_final_answer_cut_off_at_max_tokens_is_never_a_label(tmp_path):
    long = "Let me think about this carefully, one step at a time, before I answer. " * 4 + "The answer is 7."

    def script(request):
        return long if "apples" in request.messages[-1]["content"] else "5 x 2 = 10. The answer is 10."

    model = ScriptedModel(script)
    result = await run_pipeline_async(reflection.build(reflection.Options(rounds=1, max_tokens=16)),
                                      RunOptions(out=tmp_path / "run", input_path=write_questions(tmp_path)),
                                      models={"generator": model, "critic": model})
    assert [r["answer"] for r in result.rows] == ["10"]
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert funnel["reflect"]["rejected"] == {"truncated": 1}
