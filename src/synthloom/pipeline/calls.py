"""Calling a model from inside a step: one request, usage counted, provenance kept.

The one way every step talks to a model (the model step included): `ask` for text, `choose` for a
verdict (a constrained choice among labels, see llm/constrained.py), `score_each` for
teacher-forced log-probabilities.

Steps that make several dependent calls per row (critique then revision; candidates then their
scores) cannot be a single `ModelStep`; they use `ask` so every call is still cached by the
pipeline's model wrapper, counted in the run's token usage and summarised in the row's `_meta`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from synthloom.llm.base import ChatRequest, ChatResponse, InvalidRequestError, TextScore, Usage
from synthloom.llm.constrained import ChoiceReading, choice_request, read_choice, strict_label
from synthloom.pipeline.step import Outcome, Rejected, Step, StepContext
from synthloom.records import Row
from synthloom.verdicts import Verdict


@dataclass
class CallLog:
    """What a step's calls for one row cost and which model answered (merged into `_meta`)."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seeds: list[int] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)
    finish: dict[str, str] = field(default_factory=dict)  # label -> finish reason ("length" = cut off)

    def truncated(self, label: str) -> bool:
        """Whether the call recorded under `label` stopped at max_tokens (its text is unfinished)."""
        return self.finish.get(label) == "length"

    def meta(self, prompt_sha: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"model": self.model, "prompt_sha": prompt_sha, "params": params,
                "seed": self.seeds[0] if self.seeds else None, "synthetic": True, "raw": self.raw,
                "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}}


def user_request(prompt: str, seed: int, system: str | None = None, **params: Any) -> ChatRequest:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return ChatRequest(messages=messages, seed=seed, **params)


class PerRowModelStep(Step):
    """Base of steps that call models for each row on its own (one or several dependent calls).

    Subclasses implement `one(row, ctx)`; the rows run concurrently (the backend batches their
    requests) and a request the backend refuses for that row (prompt longer than the context, …)
    rejects the row as `invalid_request` instead of failing the shard.
    """

    async def one(self, row: Row, ctx: StepContext) -> Outcome:
        raise NotImplementedError(f"step type {type(self).__name__} must implement one()")

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Outcome]:
        return list(await asyncio.gather(*(self._guarded(row, ctx) for row in rows)))

    async def _guarded(self, row: Row, ctx: StepContext) -> Outcome:
        try:
            return await self.one(row, ctx)
        except InvalidRequestError as e:
            return Rejected("invalid_request", row, str(e))


async def ask(ctx: StepContext, role: str, request: ChatRequest, log: CallLog, label: str) -> ChatResponse:
    """Send one request to the model of `role`; record usage and the raw text under `label`.

    InvalidRequestError (e.g. prompt longer than the context) propagates so the caller can
    reject the row with a reason; transport errors fail the shard (resumable).
    """
    model = ctx.model(role)
    response: ChatResponse = (await model.chat([request]))[0]
    if ctx.usage is not None:
        ctx.usage.record(model.identity, response.usage, response.cached)
    log.model = log.model or model.identity
    log.prompt_tokens += response.usage.prompt_tokens
    log.completion_tokens += response.usage.completion_tokens
    if request.seed is not None:
        log.seeds.append(request.seed)
    for i, choice in enumerate(response.choices):
        key = label if len(response.choices) == 1 else f"{label}#{i}"
        log.raw[key] = choice.text
        log.finish[key] = choice.finish_reason
    return response


async def choose(ctx: StepContext, role: str, request: ChatRequest, log: CallLog, label: str) -> ChoiceReading:
    """Ask the model of `role` a constrained choice (`request.choice_labels`, built with
    `choice_request`) and read the label and its probabilities; an unreadable answer is unknown."""
    if not request.choice_labels:
        raise ValueError("choose() needs a request with choice_labels (use choice_request)")
    response = await ask(ctx, role, request, log, label)
    return read_choice(response, request.choice_labels)


def choice_verdict(reading: ChoiceReading, yes: str | tuple[str, ...], no: str | tuple[str, ...]) -> Verdict:
    """A verdict from a constrained choice: True for a `yes` label, False for a `no` label,
    unknown when the model gave no lone label (the method records how the answer was read)."""
    yes_set = {yes} if isinstance(yes, str) else set(yes)
    no_set = {no} if isinstance(no, str) else set(no)
    method = f"constrained_choice/{reading.preference_source}"
    evidence = f"label={reading.label!r}" + (f" probs={reading.probs}" if reading.probs else "") \
        + ("" if reading.label is not None else f" raw={reading.raw[:120]!r}")
    if reading.label in yes_set:
        return Verdict(True, method, evidence)
    if reading.label in no_set:
        return Verdict(False, method, evidence)
    return Verdict(None, method, evidence)


async def score_each(ctx: StepContext, role: str, texts: list[str]) -> list[TextScore | InvalidRequestError]:
    """Score each text with the model of `role` (cached; usage counted as prompt tokens). A text
    the model cannot score (empty, longer than its context) gets its InvalidRequestError instead,
    so the caller can reject that row alone. The engine batches the separate calls together."""
    model = ctx.model(role)

    async def one(text: str) -> TextScore | InvalidRequestError:
        try:
            scored: TextScore = (await model.score([text]))[0]
        except InvalidRequestError as e:
            return e
        if ctx.usage is not None:
            ctx.usage.record(model.identity, Usage(prompt_tokens=len(scored.tokens)), scored.cached)
        return scored

    return list(await asyncio.gather(*(one(t) for t in texts)))


__all__ = ["CallLog", "ChoiceReading", "InvalidRequestError", "PerRowModelStep", "ask", "choice_request",
           "choice_verdict", "choose", "read_choice", "score_each", "strict_label", "user_request"]
