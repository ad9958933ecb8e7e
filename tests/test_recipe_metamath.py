"""MetaMath end to end: control flow with a scripted solver, and a real run on the embedded model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from synthloom.llm.cache import CachedModel, RequestCache
from synthloom.llm.scripted import ScriptedModel
from synthloom.pipeline.checkpoint import Checkpoints
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.recipes.metamath_masking import backward_questions, declarative_statement, sv_split
from synthloom.recipes.registry import load_recipe
from synthloom.verify.math import verify_answer

SEEDS = [
    {"question": "Ann has 3 boxes with 4 pens in each box. How many pens does she have?", "answer": "12"},
    {"question": "A book costs $5 and a pen costs $2. How much do 2 books and 1 pen cost?", "answer": "12"},
]


def _backward_values() -> dict[str, str]:
    """Masked question (FOBAR) or SV context -> the masked value, for an oracle that solves them."""
    values = {}
    for seed in SEEDS:
        for bq in backward_questions(seed["question"]):
            values[bq.question] = bq.masked_value
            values[sv_split(bq.question)[0]] = bq.masked_value
    return values


BACKWARD = _backward_values()


def oracle(request) -> str:
    """A perfect solver; its SV statement is a faithful rewrite for the first seed only."""
    prompt = request.messages[-1]["content"]
    if "Rephrased:" in prompt:
        q = prompt.rsplit("Question:", 1)[1].split("\nRephrased:")[0].strip()
        return "Please answer: " + q
    if "Statement:" in prompt:
        sentence = prompt.rsplit("Input:", 1)[1].split(" The answer is")[0].strip()
        return declarative_statement(sentence, "12") or "The answer for all the questions is 15."
    q = prompt.rsplit("Question:", 1)[1].split("\nA:")[0].strip()
    if "unknown variable x" in q:
        key = max((k for k in BACKWARD if k and q.startswith(k)), key=len)
        return f"We solve for x. The value of x is {BACKWARD[key]}."
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
    funnel = {s["step"]: s for s in res.stats["funnel"]}["streams"]
    first, second = (len(backward_questions(s["question"])) for s in SEEDS)
    assert funnel["by_branch"] == {"ansaug": 4, "rephrase": 2, "fobar": first + second, "sv": first}
    # SV statements that talk about "the answer" instead of the quantity are rejected before solving
    assert funnel["rejected"] == {"sv.check_declarative:bad_declarative": second}
    for row in res.rows:
        assert row["_meta"]["verdicts"]["math"]["ok"] is True
        assert row["instruction"] == row["query"] and row["output"] == row["response"]
        if row["stream"] in ("fobar", "sv"):  # the row's answer is x, the masked value
            assert row["answer"] == row["response"].rsplit(" ", 1)[1].rstrip(".") and row["answer"] != "12"
        if row["stream"] == "sv":
            assert row["_meta"]["verdicts"]["declarative"]["ok"] is True


def test_wrong_backward_answers_and_rambling_are_rejected(tmp_path: Path):
    def sloppy(request) -> str:
        prompt = request.messages[-1]["content"]
        if "Statement:" in prompt:
            return "The answer for all the questions is 15."
        if "unknown variable x" in prompt.rsplit("Question:", 1)[1]:
            return "The value of x is 999."  # wrong
        return "I don't know. There are 12 pens"  # right only by its last number

    res = run(tmp_path, ScriptedModel(sloppy), samples=1, streams=["ansaug", "fobar", "sv"])
    assert res.rows == []
    funnel = {s["step"]: s for s in res.stats["funnel"]}["streams"]
    n_numbers = sum(len(backward_questions(s["question"])) for s in SEEDS)
    assert funnel["rejected"] == {"ansaug.verify:no_answer": 2, "fobar.verify:wrong_answer": n_numbers,
                                  "sv.check_declarative:bad_declarative": n_numbers}


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
        assert row["_meta"]["verdicts"]["math"]["ok"] is True
        assert verify_answer(row["response"], row["answer"])["ok"]
    rejected = Checkpoints(res.run_dir).read_rejected(1, "streams")
    assert rejected and all(r["reason"] and r["detail"] for r in rejected)
