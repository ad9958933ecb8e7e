"""evol_instruct: Evol-Instruct (WizardLM) and Code Evol-Instruct (WizardCoder) for code instructions.

Each round evolves every instruction of the pool with one uniformly chosen operation (in-depth
methods capped at +10-20 words, in-breadth, or WizardCoder's five code heuristics), answers the
evolved instruction with the same model, and eliminates failures (no information gain judged by
the model, "sorry" + < 80 words, only stop words, prompt words copied); a failed evolution leaves
the original in the pool. Seeds: bundled code tasks or `--input` rows with an `instruction`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthloom.codegen.instructions import load_seed_tasks
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.pipeline.step import Step
from synthloom.quality.steps import DecontaminateStep
from synthloom.recipes.code_steps import EvolveInstructions
from synthloom.recipes.registry import RecipeOptions

NAME = "evol_instruct"
DESCRIPTION = ("Evol-Instruct / Code Evol-Instruct: evolve instructions for M rounds (in-depth, in-breadth or "
               "WizardCoder heuristics) with the four elimination rules; originals return to the pool on failure.")


class Options(RecipeOptions):
    mode: Literal["code", "general"] = Field(
        "code", description="code: WizardCoder template + 5 code heuristics; general: 5 in-depth ops + in-breadth")
    rounds: int = Field(4, ge=1, le=16, description="evolution rounds M (WizardLM: 4)")
    operations: list[str] = Field([], description="restrict to these operation names (default: all of the mode)")
    temperature: float = Field(1.0, ge=0, description="sampling temperature of rewrites and responses")
    top_p: float = Field(0.95, ge=0, le=1, description="top_p of rewrites and responses")
    evolve_max_tokens: int = Field(192, ge=8, description="token budget of each rewritten instruction")
    response_max_tokens: int = Field(384, ge=8, description="token budget of each response")
    judge: bool = Field(True, description="rule 1: ask the model whether the evolution is Equal to the original")
    unreadable_judge: Literal["reject", "keep"] = Field(
        "reject", description="what to do with an evolution when the judge answers neither Equal nor Not Equal")
    decontaminate: bool = Field(True, description="final step: drop rows overlapping HumanEval (13-gram)")


def build(options: Options) -> Pipeline:
    steps: list[Step] = [EvolveInstructions(
        name="evolve", mode=options.mode, rounds=options.rounds, operations=options.operations,
        temperature=options.temperature, top_p=options.top_p, evolve_max_tokens=options.evolve_max_tokens,
        response_max_tokens=options.response_max_tokens, judge=options.judge,
        unreadable_judge=options.unreadable_judge)]
    if options.decontaminate:
        steps.append(DecontaminateStep(name="decontaminate", columns=["instruction", "output"],
                                       benchmarks=["humaneval"]))
    return Pipeline(NAME, steps, source=Source(generator=load_seed_tasks, description="bundled code seed tasks"),
                    models={"generator": "embedded"}, description=DESCRIPTION)
