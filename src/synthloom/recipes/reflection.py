"""reflection: draft -> critique -> revise loops for higher-quality labels (Self-Refine, Reflexion).

The generator drafts an answer; a critic role (the generator itself by default) lists mistakes or
replies NO ISSUES; the generator revises; up to R rounds. With gold answers (symbolic seeds) the
checker's verdict is passed to the critic as feedback (Reflexion) and the loop stops once the answer
verifies; verdicts `draft_math` and `math` show whether reflection fixed the label.
"""

from __future__ import annotations

from pydantic import Field

from synthloom.pipeline.builtins import FormatAs, Select
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.recipes.debate import math_questions
from synthloom.recipes.loop_steps import Reflect
from synthloom.recipes.registry import RecipeOptions

NAME = "reflection"
DESCRIPTION = "Self-reflection: draft, critique, revise for up to R rounds; checker feedback when gold answers exist."


class Options(RecipeOptions):
    num_seeds: int = Field(10, ge=1, description="symbolic math questions when no --input is given")
    max_depth: int = Field(2, ge=1, le=6, description="symbolic seeds: deepest proof")
    rounds: int = Field(2, ge=1, le=8, description="most critique/revision rounds")
    use_gold: bool = Field(True, description="give the answer checker's verdict to the critic (needs an answer column)")
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(128, ge=16)


def build(options: Options) -> Pipeline:
    steps = [
        Reflect(name="reflect", gold="answer" if options.use_gold else None, rounds=options.rounds,
                temperature=options.temperature, max_tokens=options.max_tokens,
                critic="critic", answer_format="Solve step by step. End with: The answer is <answer>."),
        Select(name="keep_columns", columns=["question", "answer", "draft", "critiques", "revisions", "response",
                                             "rounds_used", "fixed_by_reflection"]),
        FormatAs(name="format", format="alpaca", fields={"instruction": "question", "output": "response"},
                 keep_columns=True),
    ]
    return Pipeline(NAME, steps,
                    source=Source(generator=lambda: math_questions(options.num_seeds, options.max_depth),
                                  description="symbolic math questions"),
                    models={"generator": "embedded", "critic": "embedded"}, description=DESCRIPTION,
                    # the final answer must check out; the draft's verdict only measures what reflection fixed
                    required_checks=["math"] if options.use_gold else [], advisory_checks=["draft_math"])
