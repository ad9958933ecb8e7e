"""self_instruct: Self-Instruct (Wang et al. 2022) and Code Alpaca instruction bootstrapping.

Seeds: Self-Instruct starts from the bundled general pool (182 tasks written for this project,
classification and not, like the paper's 175); Code Alpaca from the 26 bundled code tasks; either
can take the other pool (`seed_pool`) or `--input` rows with an `instruction` column. The generation
loop is iterative and online: each round prompts with seed (+ machine) instructions, filters the
completions and admits an instruction only if its ROUGE-L against every seed and every accepted
instruction is <= 0.7. Self-Instruct then labels each task classification or not and generates
instances output-first (classification) or input-first; Code Alpaca gets instruction, input and
output in one completion. Preambles and labels around an instruction ("Task:", "Here is a new
task:") are stripped, and an instruction that is only such meta-text is rejected. The final step
drops rows overlapping HumanEval.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthloom.codegen.instructions import load_seed_tasks
from synthloom.pipeline.model_step import ModelStep
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.pipeline.step import Step
from synthloom.quality.steps import DecontaminateStep
from synthloom.recipes.code_steps import (
    ClassifyTask,
    SelfInstructGenerate,
    SelfInstructInstances,
)
from synthloom.recipes.registry import RecipeOptions

NAME = "self_instruct"
DESCRIPTION = ("Self-Instruct / Code Alpaca: bootstrap instructions from seed tasks (general or code) with an "
               "online ROUGE-L novelty pool, then classification-aware instance generation.")

# Decoding of the official scripts: Self-Instruct (davinci) and Code Alpaca (text-davinci-003).
_DECODING = {"self_instruct": (0.7, 0.5), "code_alpaca": (1.0, 1.0)}


class Options(RecipeOptions):
    variant: Literal["self_instruct", "code_alpaca"] = Field(
        "self_instruct", description="self_instruct: 8-instruction prompts (2 machine + 6 seed); "
                                     "code_alpaca: 3 seed tasks per prompt asking for 20 tasks")
    seed_pool: Literal["general", "code"] | None = Field(
        None, description="bundled seed tasks: general (182 tasks, the Self-Instruct default) or code "
                          "(26 tasks, the Code Alpaca default)")
    num_instructions: int = Field(20, ge=1, description="stop once this many new instructions are accepted")
    prompts_per_round: int = Field(5, ge=1, le=64, description="prompts sent concurrently per round")
    max_rounds: int = Field(10, ge=1, description="stop after this many rounds even below the target")
    rouge_threshold: float = Field(
        0.7, ge=0, le=1, description="reject an instruction whose ROUGE-L F with the pool is above this"
    )
    temperature: float | None = Field(None, ge=0, description="generation temperature (default 0.7, Code Alpaca 1.0)")
    top_p: float | None = Field(None, ge=0, le=1, description="generation top_p (default 0.5, Code Alpaca 1.0)")
    max_tokens: int = Field(512, ge=16, description="token budget of each instruction-generation completion")
    instances: bool = Field(True, description="self_instruct variant: classify tasks and generate instances")
    max_instances: int = Field(5, ge=1, description="instances kept per task")
    instance_max_tokens: int = Field(350, ge=16, description="token budget of each instance-generation completion")
    decontaminate: bool = Field(True, description="final step: drop rows overlapping HumanEval (13-gram)")


def build(options: Options) -> Pipeline:
    temperature, top_p = _DECODING[options.variant]
    steps: list[Step] = [SelfInstructGenerate(
        name="generate", variant=options.variant, target=options.num_instructions,
        prompts_per_round=options.prompts_per_round, max_rounds=options.max_rounds,
        rouge_threshold=options.rouge_threshold,
        temperature=temperature if options.temperature is None else options.temperature,
        top_p=top_p if options.top_p is None else options.top_p, max_tokens=options.max_tokens)]
    columns = ["instruction"]
    if options.variant == "code_alpaca":
        columns = ["instruction", "input", "output"]
    elif options.instances:
        steps += [
            # Self-Instruct's classification question: greedy, 3 tokens (Yes / No).
            # The answer is its first word, so stopping at the 3-token budget is harmless here.
            ModelStep(name="classify", prompt="self_instruct_classify.j2", output="classification_answer",
                      temperature=0.0, max_tokens=3, stop=["\n"], allow_truncated=True),
            ClassifyTask(name="is_classification"),
            SelfInstructInstances(name="instances", max_instances=options.max_instances,
                                  max_tokens=options.instance_max_tokens),
        ]
        columns = ["instruction", "input", "output"]
    if options.decontaminate:
        steps.append(DecontaminateStep(name="decontaminate", columns=columns, benchmarks=["humaneval"]))
    pool = options.seed_pool or ("code" if options.variant == "code_alpaca" else "general")
    return Pipeline(NAME, steps, source=Source(generator=lambda: load_seed_tasks(pool),
                                               description=f"bundled {pool} seed tasks"),
                    models={"generator": "embedded"}, description=DESCRIPTION)
