"""ReST-EM / STaR self-improvement on verifiable math (TECHNIQUES §14).

Each iteration:
  E-step   sample K solutions per training problem from the current policy, verify each answer;
           keep the correct ones, de-duplicated, at most `cap_per_problem` per problem (so easy
           problems do not dominate the data).
  STaR     for problems with no correct sample, sample again with the answer as a hint; keep
           rationales that reach the answer and do not mention the hint, and train on them with the
           hint REMOVED from the prompt.
  M-step   fine-tune from the BASE model (init_from="base") on the kept data; STaR grows the step
           budget by `step_growth` per iteration.
  Eval     greedy pass@1 and sampled pass@k on the held-out set, diversity of kept solutions.
Stops early when held-out pass@1 has not improved for `patience` iterations.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from synthloom.selfimprove.data import Example, Problem, user_prompt
from synthloom.selfimprove.evaluate import diversity, evaluate, is_correct
from synthloom.selfimprove.policy import Policy


class LoopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iterations: int = Field(2, ge=1)
    samples_per_problem: int = Field(4, ge=1, description="K solutions sampled per problem (E-step)")
    temperature: float = Field(0.8, gt=0)
    max_new_tokens: int = Field(48, ge=4)
    cap_per_problem: int = Field(2, ge=1, description="most correct solutions kept per problem")
    rationalize: bool = Field(True, description="STaR: retry failed problems with the answer as a hint")
    strict_answers: bool = Field(True, description="ignored, always on: training samples must state the answer with "
                                 "an explicit marker (only evaluation allows the last-number fallback)")
    init_from: Literal["base", "previous"] = Field("base", description="base = STaR/ReST-EM; previous = ReST")
    step_growth: float = Field(1.2, ge=1.0, description="training steps multiplier per iteration (STaR)")
    fresh_problems: bool = Field(False, description="split the training pool into one disjoint slice per iteration, "
                                 "so the E-step never samples problems the policy was trained on")
    eval_k: int = Field(4, ge=0, description="samples per held-out problem for pass@k (0 = greedy only)")
    patience: int = Field(1, ge=1, description="stop after this many iterations without a pass@1 gain")
    seed: int = 0


class Trainer(Protocol):
    """Fine-tunes and returns the new policy. `init` is None for "start from the base model"."""

    def train(self, examples: list[Example], iteration: int, init: Any, step_scale: float) -> Policy: ...


@dataclass
class Collected:
    examples: list[Example]
    stats: dict[str, Any] = field(default_factory=dict)


def _keep_capped(problem: Problem, texts: list[str], cap: int, rng: random.Random, strict: bool = True) -> list[str]:
    """Distinct correct solutions, at most `cap`, chosen at random (not the first ones).

    Training data: only an explicit final answer counts, never the last-number fallback (`strict`
    is kept for old callers and ignored)."""
    correct = list(dict.fromkeys(t for t in texts if t.strip() and is_correct(t, problem.answer, strict=True)))
    rng.shuffle(correct)
    return correct[:cap]


def _mentions_hint(text: str) -> bool:
    # a rationale that cites or echoes the hint ("as the hint says", "the correct answer is 7")
    # would teach stating an answer with no reason
    lowered = text.lower()
    return "hint" in lowered or "correct answer" in lowered


def collect(policy: Policy, problems: list[Problem], config: LoopConfig, iteration: int) -> Collected:
    """E-step (+ STaR rationalisation): the verified training set for this iteration."""
    rng = random.Random(config.seed * 1000 + iteration)
    seed = config.seed * 1000 + iteration
    samples = policy.generate([user_prompt(p.question) for p in problems], n=config.samples_per_problem,
                              temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=seed)
    examples: list[Example] = []
    failed: list[Problem] = []
    solved_samples = 0
    for problem, texts in zip(problems, samples):
        solved_samples += sum(is_correct(t, problem.answer) for t in texts)
        kept = _keep_capped(problem, texts, config.cap_per_problem, rng, config.strict_answers)
        if not kept:
            failed.append(problem)
        examples += [Example(user_prompt(problem.question), t, problem.id, "sample") for t in kept]
    rationalised = 0
    if config.rationalize and failed:
        hinted = policy.generate([user_prompt(p.question, hint=p.answer) for p in failed],
                                 n=config.samples_per_problem, temperature=config.temperature,
                                 max_new_tokens=config.max_new_tokens, seed=seed + 1)
        for problem, texts in zip(failed, hinted):
            usable = [t for t in texts if not _mentions_hint(t)]
            # one rationale per problem: hinted data is lower quality than unaided samples
            for text in _keep_capped(problem, usable, 1, rng, config.strict_answers):
                # the training prompt is the plain question: the hint is removed
                examples.append(Example(user_prompt(problem.question), text, problem.id, "rationalised"))
                rationalised += 1
    per_problem = len({e.problem_id for e in examples})
    stats = {"problems": len(problems), "samples": len(problems) * config.samples_per_problem,
             "correct_samples": solved_samples, "problems_solved": len(problems) - len(failed),
             "rationalised": rationalised, "kept": len(examples), "problems_covered": per_problem,
             "train_diversity": diversity([e.completion for e in examples])}
    return Collected(examples, stats)


def _pool(problems: list[Problem], config: LoopConfig, iteration: int) -> list[Problem]:
    if not config.fresh_problems:
        return problems
    size = len(problems) // config.iterations
    if size == 0:
        raise ValueError(f"fresh_problems needs at least {config.iterations} training problems")
    return problems[(iteration - 1) * size:iteration * size]


@dataclass
class IterationReport:
    iteration: int
    collect: dict[str, Any]
    heldout: dict[str, Any]
    policy: str
    init: str

    def to_json(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "collect": self.collect, "heldout": self.heldout,
                "policy": self.policy, "init": self.init}


def run_loop(base: Policy, trainer: Trainer, train_problems: list[Problem], heldout: list[Problem],
             config: LoopConfig, out_dir: Path | None = None,
             log: Callable[[str], None] = lambda _msg: None) -> list[IterationReport]:
    """Iteration 0 evaluates the base policy; iterations 1..N run E-step, M-step and evaluation."""
    summary, rows = evaluate(base, heldout, k=config.eval_k, temperature=config.temperature,
                             max_new_tokens=config.max_new_tokens, seed=config.seed)
    reports = [IterationReport(0, {}, summary, "base", "-")]
    _write(out_dir, 0, reports[-1], rows, [])
    log(f"iteration 0 (base): held-out pass@1 {summary['pass@1']:.3f}")
    policy, best, stale = base, summary["pass@1"], 0
    for iteration in range(1, config.iterations + 1):
        collected = collect(policy, _pool(train_problems, config, iteration), config, iteration)
        log(f"iteration {iteration}: kept {collected.stats['kept']} solutions "
            f"({collected.stats['rationalised']} rationalised) from {len(train_problems)} problems")
        if not collected.examples:
            log(f"iteration {iteration}: no verified solutions; stopping")
            break
        init = None if config.init_from == "base" else policy
        policy = trainer.train(collected.examples, iteration, init, config.step_growth ** (iteration - 1))
        summary, rows = evaluate(policy, heldout, k=config.eval_k, temperature=config.temperature,
                                 max_new_tokens=config.max_new_tokens, seed=config.seed)
        reports.append(IterationReport(iteration, collected.stats, summary, getattr(policy, "name", "policy"),
                                       config.init_from))
        _write(out_dir, iteration, reports[-1], rows, collected.examples)
        log(f"iteration {iteration}: held-out pass@1 {summary['pass@1']:.3f}")
        if summary["pass@1"] > best:
            best, stale = summary["pass@1"], 0
        else:
            stale += 1
            if stale >= config.patience:
                log(f"no held-out gain for {stale} iteration(s); stopping")
                break
    if out_dir:
        (out_dir / "report.json").write_text(json.dumps([r.to_json() for r in reports], indent=1))
    return reports


def _write(out_dir: Path | None, iteration: int, report: IterationReport, rows: list[dict[str, Any]],
           examples: list[Example]) -> None:
    if out_dir is None:
        return
    folder = out_dir / f"iter-{iteration}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(report.to_json(), indent=1))
    with open(folder / "heldout.jsonl", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    with open(folder / "train.jsonl", "w") as f:
        f.writelines(json.dumps({"problem_id": e.problem_id, "source": e.source, "prompt": e.prompt,
                                "completion": e.completion}) + "\n" for e in examples)
