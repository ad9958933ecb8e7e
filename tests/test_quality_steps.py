import asyncio

from synthloom.llm.scripted import ScriptedModel
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.pipeline.step import build_step
from synthloom.quality import steps as _steps  # noqa: F401  (registers the quality step types)
from synthloom.quality.benchmarks_data import load_humaneval

LONG = ("the quick brown fox jumps over the lazy dog while the farmer watches from the old barn door "
        "and the children play in the field near the river until the sun sets behind the hills")


def test_quality_steps_in_a_pipeline(tmp_path):
    he = load_humaneval()
    texts = [
        "Write a haiku about the first snow of winter in the mountains.",
        "Write a haiku about the first snow of winter in the mountains!",  # exact dup (normalised)
        LONG,
        LONG.replace("hills", "mountains"),  # near dup
        "Write a short haiku about the first snow of winter in the mountains.",  # ROUGE-L > 0.7, Jaccard low
        he[4].text,  # contaminated (HumanEval/4)
        "I'm sorry, but as an AI language model I cannot write that story for you.",  # refusal
        "Explain in simple words why the sky looks blue during the day.",
    ]
    steps = [
        build_step({"type": "quality_filters", "name": "filters", "column": "text"}),
        build_step({"type": "dedup_minhash", "name": "near_dedup", "column": "text"}),
        build_step({"type": "rouge_novelty", "name": "novelty", "column": "text", "threshold": 0.7}),
        build_step({"type": "decontaminate", "name": "decontam", "columns": ["text"], "benchmarks": ["humaneval"]}),
    ]
    p = Pipeline("quality", steps, source=Source(rows=[{"text": t} for t in texts]), models={})
    result = asyncio.run(run_pipeline_async(p, RunOptions(out=tmp_path / "run"), models={"generator": ScriptedModel(["x"])}))
    kept = [r["text"] for r in result.rows]
    assert kept == [texts[0], texts[2], texts[7]]
    assert result.rows[1]["dedup_cluster"] and 0 <= result.rows[0]["rouge_max"] <= 0.7
    funnel = str(result.stats["funnel"])
    for reason in ("refusal", "duplicate", "near_duplicate", "not_novel", "contaminated"):
        assert reason in funnel, reason
