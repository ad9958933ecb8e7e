"""RAG-grounded generation: retrieval, citations, faithfulness verdicts (scripted + embedded model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthloom.llm.scripted import ScriptedModel
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.recipes import rag
from synthloom.llm.constrained import strict_label
from synthloom.recipes.loop_steps import (
    FAITHFUL_LABELS,
    grounding_support,
    strip_citations,
)

CORPUS = [
    {"id": "c1", "title": "Lake Baikal",
     "text": "Lake Baikal in Siberia is the deepest lake in the world, about 1,642 metres deep."},
    {"id": "c2", "title": "Mount Kosciuszko",
     "text": "Mount Kosciuszko is the highest mountain in mainland Australia, 2,228 metres tall."},
    {"id": "c3", "title": "Angel Falls", "text": "Angel Falls in Venezuela is the highest uninterrupted waterfall in the world."},
]


def write_corpus(tmp_path: Path) -> str:
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in CORPUS))
    return str(path)


def script(request):
    text = request.messages[-1]["content"]
    if text.endswith("Reply with Yes or No."):
        # the judge: the Angel Falls answer below invents a height the passage does not give
        return "No" if "979" in text else "Yes"
    if text.endswith("Reply with the question only."):
        topic = text.split('about "')[1].split('"')[0]
        return {"Lake Baikal": "Question: How deep is Lake Baikal?\nIt is deep.",
                "Mount Kosciuszko": "What is the highest mountain in mainland Australia?",
                "Angel Falls": "**Question:** How tall is Angel Falls?"}[topic]
    question = text.rsplit("\n", 1)[1]
    if "Baikal" in question:
        return "It is about 1,642 metres deep [c1] [c9]."  # c9 was not retrieved: not a citation
    if "Australia" in question:
        return "Mount Kosciuszko, 2,228 metres tall."
    return "Angel Falls is 979 metres tall [c3]."


async def test_rows_cite_retrieved_passages_and_carry_a_faithfulness_verdict(tmp_path):
    model = ScriptedModel(script)
    pipeline = rag.build(rag.Options(corpus=write_corpus(tmp_path), num_topics=3, k=1))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run"),
                                      models={"generator": model, "judge": model})
    by_topic = {r["topic"]: r for r in result.rows}
    assert set(by_topic) == {"Lake Baikal", "Mount Kosciuszko"}
    baikal = by_topic["Lake Baikal"]
    assert baikal["question"] == "How deep is Lake Baikal?"  # label stripped, first line only
    assert baikal["citations"] == ["c1"] and baikal["citation_source"] == "model"
    assert baikal["answer"] == "It is about 1,642 metres deep."  # citation markers removed from the text
    assert baikal["_meta"]["verdicts"]["faithfulness"]["ok"] is True
    # no bracket citation: attributed to the retrieved passage sharing the most words
    assert by_topic["Mount Kosciuszko"]["citations"] == ["c2"]
    assert by_topic["Mount Kosciuszko"]["citation_source"] == "overlap"
    # the unfaithful answer is kept in rejected/ with its verdict, never silently dropped
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert funnel["faithfulness"]["rejected"] == {"unfaithful": 1}
    judge_prompts = [r.messages[-1]["content"] for r in model.requests if "Reply with Yes or No" in r.messages[-1]["content"]]
    assert any("[c3] Angel Falls" in p and "979 metres" in p for p in judge_prompts)  # judge sees cited passages


async def test_keep_unverified_writes_unfaithful_rows_to_their_own_split_never_train(tmp_path):
    model = ScriptedModel(script)
    pipeline = rag.build(rag.Options(corpus=write_corpus(tmp_path), num_topics=3, k=1, keep_unverified=True))
    pipeline.keep_unverified = True  # what `-o keep_unverified=true` sets
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run"),
                                      models={"generator": model, "judge": model})
    assert all(r["topic"] != "Angel Falls" for r in result.rows)
    unverified = [json.loads(line) for line in (result.run_dir / "data" / "unverified.jsonl").read_text().splitlines()]
    falls = next(r for r in unverified if r["topic"] == "Angel Falls")
    assert falls["faithful"] is False and falls["_meta"]["verdicts"]["faithfulness"]["ok"] is False
    assert falls["_meta"]["unverified_reason"] == "check_failed:faithfulness"
    assert result.stats["unverified_rows"] == len(unverified) >= 1


def test_helpers():
    assert strict_label("Yes", FAITHFUL_LABELS) == "Yes" and strict_label("no.", FAITHFUL_LABELS) == "No"
    # a verdict inside prose, a hedge or an echo is unknown, never a yes
    for text in ("Yes, it is.", "maybe", "Not yes", "Reply with Yes or No.", ""):
        assert strict_label(text, FAITHFUL_LABELS) is None
    assert strip_citations("Paris [wiki-000] is big [x].") == "Paris is big."
    assert grounding_support("Baikal deepest lake", "Lake Baikal is the deepest lake") == 1.0
    assert grounding_support("Baikal is purple", "Lake Baikal is deep") == 0.5


def test_default_topics_come_from_the_bundled_corpus():
    topics = rag.corpus_topics(None, 5)
    assert len(topics) == 5 and topics[0]["topic"] == "Paris"


@pytest.mark.slow
async def test_rag_end_to_end_on_the_embedded_model(tmp_path, embedded_seed, embedded_threads):
    """Properties that hold for any text the model writes (its text differs across CPUs, seeds and
    thread counts: see tests/conftest.py for running this under several)."""
    from synthloom.llm.embedded import EmbeddedModel

    model = EmbeddedModel(n_slots=4, n_ctx=4096, n_threads=embedded_threads)
    pipeline = rag.build(rag.Options(num_topics=4, k=2, max_tokens=48, keep_unverified=True))
    pipeline.keep_unverified = True
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run", seed=embedded_seed),
                                      models={"generator": model, "judge": model})
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert funnel["retrieve"]["rows_out"] == 4
    steps = result.stats["funnel"]
    for before, after in zip(steps, steps[1:]):  # counts add up: each row kept or rejected with a reason
        assert after["rows_in"] == before["rows_out"], (before, after)
        assert after["rows_out"] + after["rejected_total"] == after["rows_in"], after
        assert all(isinstance(reason, str) and reason for reason in after["rejected"]), after
    unverified = [json.loads(line) for line in (result.run_dir / "data" / "unverified.jsonl").read_text().splitlines()]
    # whatever the small model wrote: every row that reached the gate is in train or in unverified
    assert len(result.rows) + len(unverified) == funnel["format"]["rows_out"]
    for row in result.rows + unverified:  # each cites retrieved passages and carries both verdicts
        assert row["citations"] and all(c.startswith("wiki-") for c in row["citations"])
        assert row["_meta"]["verdicts"]["faithfulness"]["ok"] in (True, False, None)
        assert "grounding" in row["_meta"]["verdicts"]
    for row in result.rows:  # train holds only rows both checks passed
        assert row["_meta"]["verdicts"]["faithfulness"]["ok"] is True and row["_meta"]["verdicts"]["grounding"]["ok"]
