"""debate: multi-agent debate for higher-quality labels (Irving et al. 2018; Khan et al. 2024).

Two debater roles (`debater_a`, `debater_b`; the same embedded model by default, or two different
models via --model debater_b=SPEC) each open with a solution; when their answers differ they argue
for R rounds over a shared transcript, and a `judge` role picks the winner. The winning answer is the
row's label and the whole transcript is kept. With symbolic seeds (gold answers), verdict
`debate_judge` measures how often the judge picked a correct answer.
"""

from __future__ import annotations

from pydantic import Field

from synthloom.pipeline.builtins import FormatAs, Select
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.recipes.loop_steps import Debate
from synthloom.recipes.registry import RecipeOptions

NAME = "debate"
DESCRIPTION = "Multi-agent debate: two debaters argue over R rounds, a judge picks the label; transcripts kept."


class Options(RecipeOptions):
    num_seeds: int = Field(10, ge=1, description="symbolic math questions when no --input is given")
    max_depth: int = Field(2, ge=1, le=6, description="symbolic seeds: deepest proof")
    rounds: int = Field(2, ge=0, le=8, description="argument rounds after the openings")
    temperature: float = Field(0.8, ge=0, description="debaters' sampling temperature (the judge is greedy)")
    max_tokens: int = Field(96, ge=16, description="token budget of an opening solution")
    argue_tokens: int = Field(64, ge=8, description="token budget of one argument")


def math_questions(n: int, max_depth: int) -> list[dict]:
    from synthloom.mathgen import WORD_FAMILIES, generate_problems

    return [{"question": p["question"], "answer": str(p["answer"])}
            for p in generate_problems(n, seed=0, families=list(WORD_FAMILIES), max_depth=max_depth)]


def build(options: Options) -> Pipeline:
    steps = [
        Debate(name="debate", rounds=options.rounds, temperature=options.temperature,
               max_tokens=options.max_tokens, argue_tokens=options.argue_tokens),
        Select(name="keep_columns", columns=["question", "answer", "answer_a", "answer_b", "winner", "label",
                                             "response", "transcript", "judge_swapped"]),
        FormatAs(name="format", format="alpaca", fields={"instruction": "question", "output": "response"},
                 keep_columns=True),
    ]
    return Pipeline(NAME, steps,
                    source=Source(generator=lambda: math_questions(options.num_seeds, options.max_depth),
                                  description="symbolic math questions"),
                    models={"debater_a": "embedded", "debater_b": "embedded", "judge": "embedded"},
                    description=DESCRIPTION, required_checks=["debate_judge"])  # the label matches the gold answer
