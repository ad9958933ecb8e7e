"""Pipeline steps for the evaluators, so recipes can judge and fact-check rows they generate.

judge_pairwise: instruction + baseline output + model output -> swapped, p_model, preference.
judge_rubric:   instruction + output -> score (1-10).
safe_factuality: prompt + response -> SAFE label counts, precision, F1@K (local FTS5 corpus).
Unparseable judgments become Rejected rows with a reason (kept in rejected/, counted in the funnel).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import PrivateAttr

from synthloom.eval.factuality import SafeConfig, safe_rate_response
from synthloom.eval.judge import (
    PairwiseConfig,
    RubricConfig,
    pairwise_request,
    pairwise_verdict,
    rubric_request,
    rubric_score,
)
from synthloom.eval.search import LocalSearch
from synthloom.llm.base import Usage
from synthloom.pipeline.calls import CallLog, PerRowModelStep, ask
from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.records import Row


def template_sha(name: str) -> str:
    from synthloom.eval.calls import template

    return template(name).sha


def _record(ctx: StepContext, identity: str, usage: Usage, cached: bool = False) -> None:
    if ctx.usage is not None:
        ctx.usage.record(identity, usage, cached)


@register_step("judge_pairwise")
class JudgePairwise(PerRowModelStep):
    """Compare `output` (the model) with `baseline` per `instruction`; order randomised and recorded."""

    model: str = "judge"
    instruction: str = "instruction"
    output: str = "output"
    baseline: str = "baseline"
    labels: tuple[str, str] = ("A", "B")
    top_logprobs: int = 10

    def input_columns(self) -> set[str]:
        return {self.instruction, self.output, self.baseline}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"swapped", "p_model", "preference", "preference_source"}

    def model_roles(self) -> set[str]:
        return {self.model}

    async def one(self, row: Row, ctx: StepContext) -> Any:
        cfg = PairwiseConfig(labels=self.labels, top_logprobs=self.top_logprobs, seed=ctx.run_seed)
        item = {"instruction": row[self.instruction], "output_1": row[self.baseline], "output_2": row[self.output]}
        request, swapped = pairwise_request(item, cfg)
        log = CallLog()
        response = await ask(ctx, self.model, request, log, self.name)
        verdict = pairwise_verdict(response, swapped, cfg.labels)
        if verdict["preference"] is None:
            return Rejected("judge_unknown", row, repr(response.text[:200]))
        return ctx.derive(row, {"swapped": swapped, "p_model": verdict["p_model"], "preference": verdict["preference"],
                                "preference_source": verdict["preference_source"]},
                          **log.meta(template_sha(cfg.template), {"temperature": 0.0, "labels": list(cfg.labels)}))


@register_step("judge_rubric")
class JudgeRubric(PerRowModelStep):
    """Grade `output` for `instruction` from 1 to 10 into `score`."""

    model: str = "judge"
    instruction: str = "instruction"
    output: str = "output"
    score: str = "score"

    def input_columns(self) -> set[str]:
        return {self.instruction, self.output}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {self.score}

    def model_roles(self) -> set[str]:
        return {self.model}

    async def one(self, row: Row, ctx: StepContext) -> Any:
        cfg = RubricConfig(seed=ctx.run_seed)
        request = rubric_request({"instruction": row[self.instruction], "output": row[self.output]}, cfg)
        log = CallLog()
        response = await ask(ctx, self.model, request, log, self.name)
        score = rubric_score(response)
        if score is None:
            return Rejected("judge_unknown", row, repr(response.text[:200]))
        return ctx.derive(row, {self.score: score}, **log.meta(template_sha(cfg.template), {"temperature": 0.0}))


@register_step("safe_factuality")
class SafeFactuality(Step):
    """SAFE-rate `response` to `prompt` against a local corpus (JSONL/text path; bundled if unset)."""

    model: str = "judge"
    prompt: str = "prompt"
    response: str = "response"
    corpus: str | None = None
    max_steps: int = 5
    num_results: int = 3
    max_facts: int = 64
    max_tokens: int = 512
    ks: tuple[int, ...] = (64, 178)
    _search: LocalSearch | None = PrivateAttr(default=None)

    def input_columns(self) -> set[str]:
        return {self.prompt, self.response}

    def output_columns(self, available: set[str]) -> set[str]:
        cols = {"num_supported", "num_not_supported", "num_irrelevant", "num_unrated", "num_dropped", "precision",
                "safe_facts"}
        return available | cols | {f"f1@{k}" for k in self.ks}

    def model_roles(self) -> set[str]:
        return {self.model}

    def setup(self, ctx: StepContext) -> None:
        self._search = LocalSearch.from_file(self.corpus) if self.corpus else LocalSearch.bundled()

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        if self._search is None:
            self.setup(ctx)
        model = ctx.model(self.model)
        cfg = SafeConfig(max_steps=self.max_steps, num_results=self.num_results, max_facts=self.max_facts,
                         max_tokens=self.max_tokens, ks=self.ks, seed=ctx.run_seed)

        async def one(row: Row) -> Any:
            text = str(row[self.response])
            if not text.strip():
                return Rejected("empty_response", row, "nothing to fact-check")
            result = await safe_rate_response(model, self._search, str(row[self.prompt]), text, cfg)
            _record(ctx, model.identity, Usage(result["prompt_tokens"], result["completion_tokens"]))
            keep = ["num_supported", "num_not_supported", "num_irrelevant", "num_unrated", "num_dropped", "precision",
                    *[f"f1@{k}" for k in self.ks]]
            updates = {k: result[k] for k in keep} | {"safe_facts": result["facts"]}
            return ctx.derive(row, updates, usage={"prompt_tokens": result["prompt_tokens"],
                                                   "completion_tokens": result["completion_tokens"]})

        return list(await asyncio.gather(*(one(r) for r in rows)))
