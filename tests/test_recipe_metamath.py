"""MetaMath end to end: control flow with a scripted solver, and a real run on the embedded model."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from synthloom.llm.cache import CachedModel, RequestCache
from synthloom.llm.scripted import ScriptedModel
from synthloom.pipeline.checkpoint import Checkpoints
from synthloom.pipeline.runner import RunOptions, run_pipeline_async
from synthloom.recipes.registry import load_recipe
from synthloom.verify.math import verify_answer

SEEDS = [
    {"question": "Ann has 3 boxes with 4 pens in each box. How many pens does she have?", "answer": "12"},
    {"question": "A book costs $5 and a pen costs $2. How much do 2 books and 1 pen cost?", "answer": "12"},
]


def oracle(request) -> str:
    """Answers like a perfect solver for forward questions, and wrongly for backward ones."""
    prompt = request.messages[-1]["content"]
    if "Rephrased:" in prompt:
        q = prompt.rsplit("Question:", 1)[1].split("\nRephrased:")[0].strip()
        return "Please answer: " + q
    if "Statement:" in prompt:
        return "The total is 12."
    q = prompt.rsplit("Question:", 1)[1]
    if "unknown variable x" in q:
        return "The value of x is 999."
    return "Let's compute. The answer is 12."


def run(tmp_path: Path, model, **options) -> dict:
    pipeline = load_recipe("metamath", {"decontaminate": False, **options})
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    wrapped = CachedModel(model, RequestCache(tmp_path / "cache.sqlite"))
    return asyncio.run(run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run", input_path=seeds, report=False),
                                          models={"generator": wrapped}))


def test_streams_are_verified_against_the_right_gold(tmp_path: Path):
    res = run(tmp_path, ScriptedModel(oracle), samples=2)
    streams = {r["stream"] for r in res.rows}
    assert streams == {"ansaug", "rephrase"}  # backward answers (999) are all wrong and rejected
    funnel = {s["step"]: s for s in res.stats["funnel"]}["streams"]
    assert funnel["by_branch"] == {"ansaug": 4, "rephrase": 2}
    # every number in each question gives one FOBAR and one SV question; all were rejected with reasons
    n_numbers = sum(len(re.findall(r"\d", s["question"])) for s in SEEDS)
    assert funnel["rejected"]["fobar.verify:wrong_answer"] == n_numbers
    assert funnel["rejected"]["sv.verify:wrong_answer"] == n_numbers
    for row in res.rows:
        assert row["_meta"]["verdicts"]["math"]["ok"] is True
        assert row["instruction"] == row["query"] and row["output"] == row["response"]


@pytest.mark.slow
def test_metamath_on_the_embedded_model_keeps_only_verified_rows(tmp_path: Path):
    from synthloom.llm.embedded import EmbeddedModel

    model = EmbeddedModel(n_threads=1, n_slots=8, n_ctx=8192)
    try:
        res = run(tmp_path, model, samples=2, max_tokens=96)
    finally:
        model.close()
    funnel = {s["step"]: s for s in res.stats["funnel"]}["streams"]
    generated = funnel["rows_out"] + funnel["rejected_total"]
    assert generated >= 2 * 2 + 2  # at least AnsAug's and rephrasing's attempts were all accounted for
    assert all(reason.split(".")[0] in ("ansaug", "rephrase", "fobar", "sv") for reason in funnel["rejected"])
    for row in res.rows:  # whatever the small model got right is re-verified here independently
        gold = row["answer"] if row["stream"] in ("ansaug", "rephrase") else None
        assert row["_meta"]["verdicts"]["math"]["ok"] is True
        if gold is not None:
            assert verify_answer(row["response"], gold)["ok"]
    rejected = Checkpoints(res.run_dir).read_rejected(1, "streams")
    assert rejected and all(r["reason"] and r["detail"] for r in rejected)
