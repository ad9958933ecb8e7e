"""End-to-end runs of the pix2struct and llava recipes: funnels, cards, images in Parquet, LLaVA JSON."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest
from PIL import Image

from synthloom.llm.scripted import ScriptedModel
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.recipes import llava, pix2struct


@pytest.fixture(scope="module")
def embedded():
    from synthloom.llm.embedded import EmbeddedModel

    return EmbeddedModel()


def check_funnel(funnel: list[dict]) -> None:
    for before, after in pairwise(funnel):  # every row is passed on or rejected with a reason
        assert after["rows_in"] == before["rows_out"]


def load_with_datasets(path: Path, cache: Path):
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(cache))
    assert isinstance(ds.features["image"], datasets.Image)
    return ds


@pytest.mark.slow
async def test_llava_end_to_end_on_the_embedded_model(tmp_path, embedded):
    # tiny on purpose: two short requests (the shared CI CPU is slow); the scripted test covers the other types
    options = llava.Options(num_scenes=1, types=["detail", "qa"], max_tokens=24, questions_per_scene=1,
                            temperature=0.0)
    result = await run_pipeline_async(llava.build(options), RunOptions(out=tmp_path / "run", seed=1),
                                      models={"generator": embedded})
    run = result.run_dir
    funnel = result.stats["funnel"]
    assert [s["step"] for s in funnel] == ["source", "draw", "types", "format", "columns", "export", "verdict_gate"]
    check_funnel(funnel)
    types = funnel[2]
    # every rejection of the types step is a cut-off output, a parse error or a scene-graph contradiction
    assert all(k.split(":")[-1] in {"truncated", "parse_error", "wrong_answer", "invalid_request"}
               for k in types["rejected"])
    assert (run / "README.md").read_text().lower().count("synthetic") >= 1
    # rows reaching the output passed the scene graph: every answer checked and right
    for row in result.rows:
        verdict = row["_meta"]["verdicts"]["scene"]
        assert verdict["ok"] is True and verdict["method"] == "scene_graph:question_rules+mentions"
        assert all(c["status"] == "correct" for c in row["turn_checks"])
        if row["type"] == "qa":
            assert row["turn_checks"][0]["kind"] in {"count", "colour", "relation", "label"}
        assert (run / row["image"]).is_file()
    if result.rows:  # the 135M model rarely gets one right; the scripted test checks the export always
        check_llava_export(run, result.rows, options, tmp_path)


def check_llava_export(run: Path, rows: list[dict], options: llava.Options, tmp_path: Path) -> None:
    items = json.loads((run / "data" / "llava.json").read_text())
    assert len(items) == len(rows)
    for item in items:
        conv = item["conversations"]
        assert conv[0]["from"] == "human" and "<image>" in conv[0]["value"]
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
    ds = load_with_datasets(run / "data" / "llava.parquet", tmp_path / "hf")
    assert len(ds) == len(rows)
    assert ds[0]["image"].size == (options.width, options.height)


@pytest.mark.slow
@pytest.mark.browser
async def test_pix2struct_end_to_end_with_model_text(tmp_path, embedded):
    options = pix2struct.Options(num_pages=2, viewports="480x360,360x480", model_text=True, max_tokens=24,
                                 budget=600)
    result = await run_pipeline_async(pix2struct.build(options), RunOptions(out=tmp_path / "run", seed=0),
                                      models={"generator": embedded})
    run = result.run_dir
    funnel = result.stats["funnel"]
    assert [s["step"] for s in funnel] == ["source", "write_text", "build_page", "render", "mask", "columns", "export",
                                           "verdict_gate"]
    check_funnel(funnel)
    assert funnel[3]["rows_out"] + funnel[3]["rejected_total"] == 4  # 2 pages x 2 viewports
    assert (run / "README.md").is_file() and (run / "stats.json").is_file()
    rows = result.rows
    full = {(r["page_id"], tuple(r["viewport"])): r for r in rows if r["variant"] == "full"}
    masked = [r for r in rows if r["variant"] == "masked"]
    assert masked and len(masked) == len(full)
    for r in masked:
        twin = full[(r["page_id"], tuple(r["viewport"]))]
        assert r["target"] == twin["target"]  # masking changes pixels, never the target
        assert r["unmasked_image"] == twin["image"] != r["image"]
        assert r["masked_boxes"]
        size = Image.open(run / r["image"]).size
        assert size == tuple(r["viewport"])
        assert len(r["target"]) <= 600 and r["target"].startswith("<")
    ds = load_with_datasets(run / "data" / "pix2struct.parquet", tmp_path / "hf")
    assert len(ds) == len(rows)
    assert ds[0]["image"].size == tuple(ds[0]["viewport"])


def scripted_answers(request) -> str:
    prompt = request.messages[-1]["content"]
    if prompt.rstrip().endswith("Answer:"):  # qa: always claims seven, which is never a true count here
        return "There are seven."
    if prompt.rstrip().endswith("Question:"):
        return ("How many shapes are there?\n===\nAnswer:\nThere are 99 shapes.\n===\n"
                "Question:\nWhat feeling does it give?\n===\nAnswer:\nA calm one.\n===")
    if "Detailed description" in prompt:  # the captions are true to the graph: a grounded description
        return " ".join(prompt.split("Captions:", 1)[1].split("Objects:", 1)[0].split())
    if "Describe" in prompt or "describe" in prompt:
        return "The picture shows several flat shapes spread across a plain background."
    return "no structure here"


def inventing_answers(request) -> str:
    prompt = request.messages[-1]["content"]
    if "Detailed description" in prompt:
        return "A large yellow star shines above three purple hexagons."  # nothing of it is in the scene
    if prompt.rstrip().endswith("Question:"):  # a free-form turn that names nothing checkable
        return "What feeling does it give?\n===\nAnswer:\nA calm one.\n==="
    return "The picture shows several flat shapes spread across a plain background."


async def test_llava_rejects_answers_that_contradict_the_scene(tmp_path):
    options = llava.Options(num_scenes=3, max_objects=4)
    result = await run_pipeline_async(llava.build(options), RunOptions(out=tmp_path / "run"),
                                      models={"generator": ScriptedModel(scripted_answers)})
    rejected = result.stats["funnel"][2]["rejected"]
    assert rejected.get("conversation.verify:wrong_answer") == 3  # 99 shapes is always wrong
    assert rejected.get("qa.verify:wrong_answer", 0) >= 1
    assert rejected.get("reasoning.verify:wrong_answer") == 3  # same scripted block for reasoning
    kept_types = {r["type"] for r in result.rows}
    assert "conversation" not in kept_types and "detail" in kept_types
    for row in result.rows:
        assert row["_meta"]["verdicts"]["scene"]["ok"] is True
    check_llava_export(result.run_dir, result.rows, options, tmp_path)


async def test_llava_rejects_invented_and_unverifiable_descriptions(tmp_path):
    options = llava.Options(num_scenes=2, max_objects=4, types=["detail", "conversation"])
    result = await run_pipeline_async(llava.build(options), RunOptions(out=tmp_path / "run"),
                                      models={"generator": ScriptedModel(inventing_answers)})
    assert result.rows == []
    rejected = result.stats["funnel"][2]["rejected"]
    assert rejected.get("detail.verify:wrong_answer") == 2
    # the unverifiable conversations pass the verify step but neither the gate nor the LLaVA export
    gate = {f["step"]: f for f in result.stats["funnel"]}["verdict_gate"]
    assert gate["rows_in"] == 2 and gate["rows_out"] == 0
    assert json.loads((result.run_dir / "data" / "llava.json").read_text()) == []


def test_bad_options_are_one_line_errors():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="WIDTHxHEIGHT"):
        pix2struct.Options(viewports="1024 by 768")
    with pytest.raises(ValidationError):
        llava.Options(types=["poetry"])
