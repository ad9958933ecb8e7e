"""The evaluation steps inside a real pipeline run (scripted judge: parsing and control flow)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from synthloom.eval.steps import JudgePairwise, JudgeRubric
from synthloom.llm.cache import CachedModel, RequestCache
from synthloom.llm.scripted import ScriptedModel
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.run.runner import RunOptions, run_pipeline_async

ROWS = [{"instruction": f"Task {i}", "output": f"model answer {i}", "baseline": f"baseline answer {i}"}
        for i in range(6)]


def run(pipeline: Pipeline, model, out: Path):
    wrapped = CachedModel(model, RequestCache(out.with_suffix(".sqlite")))
    return asyncio.run(run_pipeline_async(pipeline, RunOptions(out=out, report=False), models={"judge": wrapped}))


def test_pairwise_step_maps_labels_back_through_the_recorded_swap(tmp_path: Path):
    # the judge always prefers whatever text contains "model answer" and never answers for Task 5
    def judge(req):
        prompt = req.messages[-1]["content"]
        if "Task 5" in prompt:
            return "I cannot decide."
        first = prompt.index("model answer") < prompt.index("baseline answer")
        return "A" if first else "B"

    res = run(Pipeline("pw", [JudgePairwise(name="judge")], source=Source(rows=ROWS)), ScriptedModel(judge),
              tmp_path / "pw")
    assert len(res.rows) == 5
    assert {r["swapped"] for r in res.rows} == {True, False}  # order randomised per instruction...
    assert all(r["preference"] == 2.0 for r in res.rows)  # ...and mapped back: the model output always wins
    funnel = {s["step"]: s for s in res.stats["funnel"]}
    assert funnel["judge"]["rejected"] == {"judge_unknown": 1}
    meta = res.rows[0]["_meta"]  # judged rows say who judged, with which prompt, at what cost
    assert meta["model"] == "scripted" and meta["prompt_sha"] and meta["usage"]["prompt_tokens"] > 0
    assert res.stats["usage"]["scripted"]["requests"] == 6


def test_rubric_step_scores_and_rejects_unparseable_ratings(tmp_path: Path):
    # a lone integer is a rating; prose around it ("Rating: 7") or no number is unknown, never guessed
    replies = {f"Task {i}": (f"{i + 3}" if i < 4 else "Rating: 7" if i == 4 else "no idea") for i in range(6)}

    def judge(req):
        prompt = req.messages[-1]["content"]
        return next(v for k, v in replies.items() if k in prompt)

    res = run(Pipeline("rb", [JudgeRubric(name="grade")], source=Source(rows=ROWS)), ScriptedModel(judge),
              tmp_path / "rb")
    assert sorted(r["score"] for r in res.rows) == [3, 4, 5, 6]
    assert {s["step"]: s for s in res.stats["funnel"]}["grade"]["rejected"] == {"judge_unknown": 2}
    assert all(r["_meta"]["raw"]["grade"] == str(r["score"]) for r in res.rows)
