"""code_exec: code data filtered by execution feedback (CodeT dual agreement / Code Llama first-passing).

For each problem the model samples k solutions and m test completions; asserts that call the entry
point and compile are extracted (first 5 per sample), every solution runs against every test in
the sandbox, and the kept solution is the top CodeT consensus set's (score = |solutions| x |tests
passed|) or the first that passes every test. It is then re-run alone on the tests it is kept with
and must verify; code with no asserts never counts. Problems: bundled seed tasks, HumanEval prompts
(demo), or `--input` rows with an `instruction` (e.g. a self_instruct run's output).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthloom.codegen.instructions import load_seed_tasks
from synthloom.pipeline.model_step import ModelStep
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.pipeline.step import Step
from synthloom.quality.steps import DecontaminateStep
from synthloom.recipes.code_steps import CodeProblem, ExecuteCode
from synthloom.recipes.registry import RecipeOptions

NAME = "code_exec"
DESCRIPTION = ("Execution feedback: sample solutions and unit tests, run them all in the sandbox, keep the "
               "CodeT dual-agreement (or first passing) solution, verified.")


class Options(RecipeOptions):
    problems: Literal["seed", "humaneval"] = Field("seed", description="problems when no --input is given: "
                                                                       "bundled seed tasks or HumanEval prompts (demo)")
    num_problems: int = Field(26, ge=1, description="use the first N problems of the bundled source")
    num_solutions: int = Field(5, ge=1, le=16, description="solutions sampled per problem (k)")
    num_test_samples: int = Field(2, ge=1, le=16, description="test completions sampled per problem (m)")
    tests_per_sample: int = Field(5, ge=1, description="asserts kept per test completion (CodeT: 5)")
    selection: Literal["dual_agreement", "first_passing"] = Field(
        "dual_agreement", description="dual_agreement (CodeT) or first_passing (Code Llama)")
    temperature: float = Field(0.8, ge=0, description="sampling temperature (CodeT: 0.8)")
    top_p: float = Field(0.95, ge=0, le=1, description="top_p (CodeT: 0.95)")
    max_tokens: int = Field(300, ge=16, description="token budget of each solution / test completion")
    test_timeout_s: float = Field(1.0, gt=0, description="time limit of each assert (CodeT: 0.1 s)")
    sandbox_workers: int = Field(2, ge=1, description="sandbox worker processes")
    isolation: Literal["bwrap", "none"] = Field("bwrap", description="sandbox isolation; 'none' is unsafe")
    decontaminate: bool = Field(True, description="final step: drop rows overlapping HumanEval "
                                                  "(skipped for problems=humaneval, where every row matches)")


def humaneval_problems(n: int) -> list[dict]:
    from synthloom.verify.code.humaneval import load_humaneval

    return [{"task_id": p.task_id, "instruction": p.prompt, "input": "", "entry_point": p.entry_point}
            for p in load_humaneval()[:n]]


def seed_problems(n: int) -> list[dict]:
    keep = ("instruction", "input", "entry_point")
    return [{k: t.get(k, "") for k in keep} for t in load_seed_tasks()[:n]]


def build(options: Options) -> Pipeline:
    sample = {"temperature": options.temperature, "top_p": options.top_p, "max_tokens": options.max_tokens,
              "samples": "list"}
    steps: list[Step] = [
        CodeProblem(name="problem"),
        ModelStep(name="solutions", prompt="code_solution.j2", output="solutions", n=options.num_solutions, **sample),
        ModelStep(name="tests", prompt="code_tests.j2", output="test_samples", n=options.num_test_samples, **sample),
        ExecuteCode(name="execute", selection=options.selection, tests_per_sample=options.tests_per_sample,
                    workers=options.sandbox_workers, isolation=options.isolation,
                    test_timeout_s=options.test_timeout_s),
    ]
    if options.decontaminate and options.problems != "humaneval":
        steps.append(DecontaminateStep(name="decontaminate", columns=["instruction", "solution"],
                                       benchmarks=["humaneval"]))
    if options.problems == "humaneval":
        source = Source(generator=lambda: humaneval_problems(options.num_problems), description="HumanEval prompts")
    else:
        source = Source(generator=lambda: seed_problems(options.num_problems), description="bundled code seed tasks")
    return Pipeline(NAME, steps, source=source, models={"generator": "embedded"}, description=DESCRIPTION,
                    required_checks=["code_exec"])  # every kept solution re-ran alone and passed
