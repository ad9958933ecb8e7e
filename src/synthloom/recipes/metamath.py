"""metamath: MetaMath augmentation (AnsAug, Rephrasing, FOBAR, SV), every row verified by answer match.

Yu et al. 2023, "MetaMath: Bootstrap Your Own Mathematical Questions for Large Language Models"
(arXiv 2309.12284). Seeds are (question, answer) pairs: the symbolic generator's problems by
default (verified answers, works offline), CHAMP problems, or a user JSONL via --input.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthloom.pipeline.builtins import ExactDedup, FormatAs, Rename, Select
from synthloom.pipeline.model_step import ModelStep
from synthloom.pipeline.pipeline import Branch, Pipeline, Source
from synthloom.recipes.math_steps import BackwardQuestions, CheckDeclarative, SVCompose, VerifyMath
from synthloom.recipes.registry import RecipeOptions

NAME = "metamath"
DESCRIPTION = "MetaMath: AnsAug, rephrasing, FOBAR and SV backward questions, kept only if the answer verifies."

STREAMS = ("ansaug", "rephrase", "fobar", "sv")


class Options(RecipeOptions):
    seeds: Literal["symbolic", "champ"] = Field("symbolic", description="seed problems when no --input is given")
    num_seeds: int = Field(20, ge=1, description="seed problems drawn from the symbolic generator or CHAMP")
    max_depth: int = Field(2, ge=1, le=6, description="symbolic seeds: deepest proof (difficulty)")
    samples: int = Field(2, ge=1, le=16, description="AnsAug solutions sampled per question")
    streams: list[Literal["ansaug", "rephrase", "fobar", "sv"]] = Field(
        list(STREAMS), description="which MetaMath streams to run")
    temperature: float = Field(0.7, ge=0, description="sampling temperature of every stage (MetaMath: 0.7)")
    max_tokens: int = Field(160, ge=16, description="token budget of each solution")
    decontaminate: bool = Field(True, description="drop rows overlapping the bundled math benchmark (CHAMP)")


def symbolic_seeds(n: int, seed: int, max_depth: int) -> list[dict]:
    from synthloom.mathgen import WORD_FAMILIES, generate_problems

    # word families only: algebra seeds already use x, which FOBAR/SV need as the unknown
    problems = generate_problems(n, seed=seed, families=list(WORD_FAMILIES), max_depth=max_depth)
    return [{"question": p["question"], "answer": str(p["answer"]), "solution": p["solution"],
             "depth": p["depth"], "family": p["family"]} for p in problems]


def champ_seeds(n: int) -> list[dict]:
    import champ_dataset

    problems = list(champ_dataset.load("v0").problems.values())[:n]
    return [{"question": p.text, "answer": str(p.answer), "solution": "", "depth": None,
             "family": f"champ/{p.category}"} for p in problems]


def solver(name: str, options: Options, template: str, n: int = 1) -> ModelStep:
    return ModelStep(name=name, prompt=template, output="response", n=n, temperature=options.temperature,
                     max_tokens=options.max_tokens, stop=["\nQuestion:", "\n\nQuestion"])


def stream_steps(stream: str, options: Options) -> list:
    if stream == "ansaug":
        return [Rename(name="as_query", columns={"question": "query"}),
                solver("solve", options, "metamath_solve.j2", n=options.samples),
                VerifyMath(name="verify", column="response", gold="answer")]
    if stream == "rephrase":
        return [ModelStep(name="rephrase", prompt="metamath_rephrase.j2", output="query",
                          temperature=options.temperature, max_tokens=96, stop=["\n"]),
                solver("solve", options, "metamath_solve.j2"),
                # verified against the ORIGINAL gold answer: this is also the rephrasing's quality check
                VerifyMath(name="verify", column="response", gold="answer")]
    if stream == "fobar":
        return [BackwardQuestions(name="mask", mode="fobar"),
                solver("solve", options, "metamath_backward.j2"),
                VerifyMath(name="verify", column="response", gold="answer")]
    return [BackwardQuestions(name="mask", mode="sv"),
            ModelStep(name="declarative", prompt="metamath_declarative.j2", output="declarative",
                      temperature=options.temperature, max_tokens=64, stop=["\n"]),
            CheckDeclarative(name="check_declarative"),
            SVCompose(name="compose"),
            solver("solve", options, "metamath_backward.j2"),
            VerifyMath(name="verify", column="response", gold="answer")]


def build(options: Options) -> Pipeline:
    streams = {s: stream_steps(s, options) for s in options.streams}
    steps = [
        Branch(name="streams", branches=streams, branch_column="stream"),
        Select(name="keep_columns", columns=["query", "response", "answer", "stream"]),
        ExactDedup(name="dedup", columns=["query", "response"]),
    ]
    if options.decontaminate:
        steps.append(_decontam_step())
    steps.append(FormatAs(name="format", format="alpaca", fields={"instruction": "query", "output": "response"},
                          keep_columns=True))

    def seeds() -> list[dict]:
        if options.seeds == "champ":
            return champ_seeds(options.num_seeds)
        return symbolic_seeds(options.num_seeds, seed=0, max_depth=options.max_depth)

    return Pipeline(NAME, steps, source=Source(generator=seeds, description=f"{options.seeds} seed problems"),
                    models={"generator": "embedded"}, description=DESCRIPTION,
                    # every row: its final answer verified; SV rows also their declarative statement
                    required_checks=["math"])


def _decontam_step():
    from synthloom.quality.steps import DecontaminateStep

    return DecontaminateStep(name="decontaminate", columns=["query", "response"], benchmarks=["champ"])
