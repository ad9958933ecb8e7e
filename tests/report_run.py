"""A small but complete run directory for the report and viewer tests.

The pipeline exercises everything the report shows: model steps (tokens, cache), a length filter
and exact dedup (reject reasons), decontamination against a local benchmark file (contamination
hits), and a verifier that records `_meta.verdicts` on kept and rejected rows. A scripted model
answers (the report reads run directories; which model wrote them does not matter here).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from synthloom.llm.cache import CachedModel, RequestCache
from synthloom.llm.scripted import ScriptedModel
from synthloom.pipeline.builtins import ExactDedup, LengthFilter
from synthloom.pipeline.model_step import ModelStep
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.run.runner import RunOptions, RunResult, run_pipeline_async
from synthloom.pipeline.step import Rejected, Step, StepContext
from synthloom.quality.steps import DecontaminateStep
from synthloom.records import add_verdict

LEAK = "the quick brown fox jumps over the lazy dog near the river bank today"
LEAKY_TOPIC = "topic 5"


class ParityCheck(Step):
    """Verifier stand-in: passes rows whose output length is not a multiple of 3."""


    def input_columns(self) -> set[str]:
        return {"output"}

    def process(self, rows: list[dict], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            ok = len(row["output"]) % 3 != 0
            row = ctx.derive(row, {})
            add_verdict(row, "parity", ok, "ok" if ok else f"length {len(row['output'])} divisible by 3")
            out.append(row if ok else Rejected("wrong_answer", row, "parity check failed"))
        return out


def _reply(request: Any) -> str:
    prompt = request.messages[-1]["content"]
    if LEAKY_TOPIC in prompt and "Ask" in prompt:
        return f"{LEAK} again"
    return f"reply to [{prompt}] s{request.seed % 1000}"


def make_run(out: Path, rows: int = 60, topics: int = 17, min_len: int = 25) -> RunResult:
    bench = out.parent / "leakbench.jsonl"
    items = [{"text": LEAK}, {"text": "an unrelated benchmark question about prime numbers"}]
    bench.write_text("".join(json.dumps(item) + "\n" for item in items))
    pipeline = Pipeline("demo", [
        ModelStep(name="question", prompt="Ask about {{ topic }}", output="instruction"),
        LengthFilter(name="length", column="instruction", min=min_len),
        ExactDedup(name="dedup", columns=["topic"]),
        ModelStep(name="answer", prompt="{{ instruction }}", output="output"),
        DecontaminateStep(name="decontam", columns=["instruction"], benchmarks=[f"{bench}:text"], ngram=8),
        ParityCheck(name="verify"),
    ], source=Source(rows=[{"topic": f"topic {i % topics}", "n": i} for i in range(rows)]), shard_size=16)
    model = CachedModel(ScriptedModel(_reply), RequestCache(out.parent / f"{out.name}.cache.sqlite"))
    return asyncio.run(run_pipeline_async(pipeline, RunOptions(out=out), models={"generator": model}))


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def assert_png(path: Path, min_bytes: int = 10_000) -> None:
    """A real, non-trivial screenshot: PNG signature, size, and not a single flat colour."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert len(data) > min_bytes, f"screenshot suspiciously small ({len(data)} bytes)"
