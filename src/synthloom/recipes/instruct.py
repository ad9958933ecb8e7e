"""instruct: topic-seeded instruction generation with answers (a small Self-Instruct-style recipe).

Generated instructions lose preambles, labels, wrapping quotes and sign-offs ("Sure! Here is a
task:", "Task:", "Let me know if..."); one that is only such meta-text is rejected (`only_meta_text`).
"""

from __future__ import annotations

from importlib import resources
from typing import Literal

from pydantic import Field

from synthloom.pipeline.builtins import ExactDedup, FormatAs, LengthFilter, RegexFilter
from synthloom.pipeline.model_step import ModelStep
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.quality.meta_text import StripMetaText
from synthloom.quality.steps import DecontaminateStep, QualityFiltersStep
from synthloom.recipes.registry import RecipeOptions

NAME = "instruct"
DESCRIPTION = "Instruction-response pairs seeded by topics: generate tasks, answer them, filter, dedup."


class Options(RecipeOptions):
    per_topic: int = Field(2, ge=1, le=64, description="instructions sampled per topic")
    format: Literal["alpaca", "sft", "sharegpt"] = Field("alpaca", description="output format: alpaca, sft or sharegpt")
    max_response_tokens: int = Field(160, ge=8, description="token budget of each response")
    decontaminate: bool = Field(True, description="drop rows overlapping bundled benchmarks (HumanEval, CHAMP)")


def bundled_topics() -> list[dict]:
    text = resources.files("synthloom.recipes").joinpath("data/topics.txt").read_text(encoding="utf-8")
    return [{"topic": line.strip()} for line in text.splitlines() if line.strip()]


def build(options: Options) -> Pipeline:
    fields = {"prompt": "instruction", "response": "output"}
    steps = [
        ModelStep(name="instruction", prompt="instruct_generate.j2", output="instruction", n=options.per_topic,
                  temperature=0.9, max_tokens=48, stop=["\n"]),
        # "Here's a possible task within this text:" / "Task: ..." -> the task alone, or rejected
        StripMetaText(name="meta_text", column="instruction"),
        # the prompt asks for a task "a user could ask an AI assistant": a task about that is an echo
        RegexFilter(name="prompt_echo", column="instruction", pattern=r"\bAI(?:[- ]powered)?\s+assistant",
                    reason="prompt_echo"),
        LengthFilter(name="instruction_length", column="instruction", min=15, max=400),
        ExactDedup(name="dedup", columns=["instruction"]),
        ModelStep(name="response", prompt="instruct_respond.j2", output="output", temperature=0.3,
                  max_tokens=options.max_response_tokens),
        LengthFilter(name="response_length", column="output", min=2, unit="words"),
        QualityFiltersStep(name="quality", column="output", filters=["repetition", "refusal", "leaked_template"]),
    ]
    if options.decontaminate:
        steps.append(DecontaminateStep(name="decontaminate", columns=["instruction", "output"],
                                       benchmarks=["humaneval", "champ"]))
    steps += [
        FormatAs(name="format", format=options.format,
                 fields=fields if options.format != "alpaca" else {}, keep_columns=False),
    ]
    return Pipeline(NAME, steps, source=Source(generator=bundled_topics, description="bundled topics"),
                    models={"generator": "embedded"}, description=DESCRIPTION)
