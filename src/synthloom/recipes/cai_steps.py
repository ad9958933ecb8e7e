"""Pipeline steps for Constitutional AI (Bai et al. 2022).

cai_redteam_prompts   red-team prompts: kept from the input, or generated from topics
cai_mix_helpful       adds helpfulness prompts (ratio of the red-team rows) so SL data is not evasive
cai_critique_revise   one SL-CAI round: critique under a freshly sampled principle, then revision
cai_compare           RL-CAI feedback: two responses as "(A)"/"(B)" under a sampled principle,
                      soft preference from logprobs (votes as fallback), CoT clamping, DPO columns
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import PrivateAttr

from synthloom.alignment.constitution import Constitution, load_constitution
from synthloom.alignment.soft_labels import (
    LABELS,
    SoftLabel,
    soft_label_from_choice,
    soft_label_from_logprobs,
    soft_label_from_votes,
)
from synthloom.pipeline.calls import CallLog, ask, choice_request, read_choice, user_request
from synthloom.errors import BadInputError
from synthloom.llm.base import InvalidRequestError
from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.pipeline.templates import PromptTemplate
from synthloom.quality.meta_text import strip_meta_text
from synthloom.records import META, Row, source_meta

# Labels a small model echoes from the prompt; the reply is cut where the transcript format resumes.
_LEADING_LABEL = re.compile(r"^\s*(?:\*\*)?(?:revision|critique|assistant|answer|question|reply)\s*:?(?:\*\*)?\s*",
                            re.IGNORECASE)
_TRANSCRIPT_MARKERS = ("\nHuman:", "Human:", "CritiqueRequest", "RevisionRequest", "\nCritique:", "\nRevision:",
                       "\nAssistant:")
_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")


def clean_reply(text: str) -> str:
    """The model's reply without echoed labels or a continued transcript; '' when nothing is left."""
    out = text.strip()
    for _ in range(2):  # "Revision: Assistant: ..." happens
        out = _LEADING_LABEL.sub("", out, count=1).strip()
    cut = min((i for i in (out.find(m) for m in _TRANSCRIPT_MARKERS) if i >= 0), default=len(out))
    return out[:cut].strip().strip('"').strip()


def clean_prompt(text: str) -> str:
    """One generated red-team question: first non-empty line, without numbering, labels, quotes or
    meta-text ("A user might ask:", "Sure! Here is a question:"); '' when only meta-text is left."""
    stripped = strip_meta_text(text)
    if not stripped.ok:
        return ""
    for line in stripped.text.splitlines():
        line = _NUMBERING.sub("", _LEADING_LABEL.sub("", line.strip())).strip().strip('"').strip()
        alone = strip_meta_text(line)  # "However, consider this one:" announces the next line
        if line and alone.ok:
            return alone.text
    return ""


def bundled_lines(name: str) -> list[str]:
    text = resources.files("synthloom.recipes").joinpath(f"data/{name}").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def read_lines(path: str | None, bundled: str) -> list[str]:
    """Non-empty lines of a user text file, or of the bundled data file when `path` is empty."""
    if not path:
        return bundled_lines(bundled)
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"file {p} does not exist")
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise BadInputError(f"file {p} has no non-empty lines")
    return lines


class _ConstitutionStep(Step):
    """A step that samples principles from a constitution (the bundled one by default)."""

    constitution: str | None = None  # path to a YAML constitution; None = bundled default

    _constitution: Constitution | None = PrivateAttr(default=None)

    def principles(self) -> Constitution:
        if self._constitution is None:
            self._constitution = load_constitution(self.constitution or None)
        return self._constitution

    def setup(self, ctx: StepContext) -> None:
        self.principles()  # a bad constitution file fails before any model call


@register_step("cai_redteam_prompts")
class RedTeamPrompts(Step):
    """Rows with a `prompt` pass through; rows with a `topic` get `per_topic` generated red-team prompts.

    Every output row gets `kind` = "redteam" (unless the input says otherwise).
    """

    per_topic: int = 2
    template: str = "cai_redteam_generate.j2"
    model: str = "generator"
    temperature: float = 1.0
    max_tokens: int = 48
    min_words: int = 3

    _prompt: PromptTemplate | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        self._prompt = PromptTemplate(self.template)

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"prompt", "kind"}

    def model_roles(self) -> set[str]:
        return {self.model}

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return list(await asyncio.gather(*(self._one(r, ctx) for r in rows)))

    async def _one(self, row: Row, ctx: StepContext) -> Any:
        if isinstance(row.get("prompt"), str) and row["prompt"].strip():
            return ctx.derive(row, {"prompt": row["prompt"].strip(), "kind": row.get("kind") or "redteam"})
        if not isinstance(row.get("topic"), str) or not row["topic"].strip():
            return Rejected("no_prompt_or_topic", row, "input rows need a 'prompt' or a 'topic' column")
        assert self._prompt is not None
        log = CallLog()
        request = user_request(self._prompt.render(row), ctx.seed_for(row), n=self.per_topic,
                               temperature=self.temperature, max_tokens=self.max_tokens)
        try:
            response = await ask(ctx, self.model, request, log, self.name)
        except InvalidRequestError as e:
            return Rejected("invalid_request", row, str(e))
        meta = log.meta(self._prompt.sha, {"temperature": self.temperature, "max_tokens": self.max_tokens,
                                           "n": self.per_topic})
        out: list[Any] = []
        for i, choice in enumerate(response.choices):
            prompt = clean_prompt(choice.text)
            if not prompt and choice.text.strip():
                out.append(Rejected("only_meta_text", row, f"no question, only meta-text: {choice.text[:120]!r}"))
                continue
            if len(prompt.split()) < self.min_words:
                out.append(Rejected("bad_prompt", row, f"fewer than {self.min_words} words: {choice.text[:120]!r}"))
                continue
            out.append(ctx.derive(row, {"prompt": prompt, "kind": "redteam", "sample_index": i}, **meta))
        return out


@register_step("cai_mix_helpful")
class MixHelpful(Step):
    """Add ratio x (number of red-team rows) helpfulness prompts, kind = "helpful" (seeded choice).

    SL-CAI data without helpful samples teaches evasiveness (Bai et al. 2022 mix helpfulness data in). The added
    rows are new source rows (bundled or user-written prompts, not synthetic).
    """

    is_global: ClassVar[bool] = True
    ratio: float = 0.5
    file: str | None = None  # one prompt per line; None = bundled helpful_prompts.txt

    def input_columns(self) -> set[str]:
        return {"prompt"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"kind"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        if self.ratio < 0:
            raise BadInputError(f"helpful ratio must be >= 0, got {self.ratio}")
        prompts = read_lines(self.file, "helpful_prompts.txt")
        k = min(len(prompts), round(self.ratio * len(rows)))
        chosen = random.Random(f"{ctx.run_seed}:{ctx.step_name}").sample(prompts, k)
        columns = [c for c in (rows[0] if rows else {}) if c != META]
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        added = []
        for p in chosen:
            row: Row = {c: None for c in columns} | {"prompt": p, "kind": "helpful"}
            row[META] = source_meta(row, ctx.recipe, now) | {"step": ctx.step_name}
            added.append(row)
        return list(rows) + added


@register_step("cai_critique_revise")
class CritiqueRevise(_ConstitutionStep):
    """One SL-CAI round on `response`: critique under a principle sampled for this row and round,
    then a revision that becomes the new `response`.

    Each round is its own step, so its seed (and therefore its principle) differs from every other
    round's. History goes to list columns `principles`, `critiques`, `revisions`; `initial_response`
    keeps the helpful model's first answer. Rows of kind "helpful" pass through unrevised.
    """

    model: str = "generator"
    temperature: float = 1.0
    critique_tokens: int = 96
    revision_tokens: int = 160
    critique_template: str = "cai_critique.j2"
    revision_template: str = "cai_revision.j2"

    _critique: PromptTemplate | None = PrivateAttr(default=None)
    _revision: PromptTemplate | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        self._critique = PromptTemplate(self.critique_template)
        self._revision = PromptTemplate(self.revision_template)

    def input_columns(self) -> set[str]:
        return {"prompt", "response"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"initial_response", "principles", "critiques", "revisions"}

    def model_roles(self) -> set[str]:
        return {self.model}

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return list(await asyncio.gather(*(self._one(r, ctx) for r in rows)))

    def history(self, row: Row) -> dict[str, Any]:
        return {"initial_response": row.get("initial_response") or row["response"],
                "principles": list(row.get("principles") or []), "critiques": list(row.get("critiques") or []),
                "revisions": list(row.get("revisions") or [])}

    async def _one(self, row: Row, ctx: StepContext) -> Any:
        hist = self.history(row)
        if row.get("kind") == "helpful":
            return ctx.derive(row, hist)
        assert self._critique is not None and self._revision is not None
        principle = self.principles().sample(ctx.seed_for(row, 0))
        log = CallLog()
        values = {**row, "critique_request": principle.critique}
        try:
            crit = await ask(ctx, self.model, user_request(self._critique.render(values), ctx.seed_for(row, 1),
                                                           temperature=self.temperature,
                                                           max_tokens=self.critique_tokens),
                             log, f"{self.name}/critique")
            critique = clean_reply(crit.text)
            if not critique:
                return Rejected("empty_critique", row, f"principle {principle.name}: {crit.text[:160]!r}")
            values |= {"critique": critique, "revision_request": principle.revision}
            rev = await ask(ctx, self.model, user_request(self._revision.render(values), ctx.seed_for(row, 2),
                                                          temperature=self.temperature,
                                                          max_tokens=self.revision_tokens),
                            log, f"{self.name}/revision")
        except InvalidRequestError as e:
            return Rejected("invalid_request", row, str(e))
        revision = clean_reply(rev.text)
        if not revision:
            return Rejected("empty_revision", row, f"principle {principle.name}: {rev.text[:160]!r}")
        if log.truncated(f"{self.name}/revision"):  # a cut-off revision is no SFT target
            return Rejected("truncated", row, f"revision hit max_tokens={self.revision_tokens}: ...{rev.text[-80:]!r}")
        hist["principles"].append(principle.name)
        hist["critiques"].append(critique)
        hist["revisions"].append(revision)
        meta = log.meta(self._critique.sha + self._revision.sha[:8],
                        {"temperature": self.temperature, "critique_tokens": self.critique_tokens,
                         "revision_tokens": self.revision_tokens})
        return ctx.derive(row, {**hist, "response": revision}, **meta)


@register_step("cai_compare")
class ComparePair(_ConstitutionStep):
    """RL-CAI AI feedback: which of two responses is better under a sampled principle.

    Reads the first two distinct entries of `responses`; the order shown is randomised per row
    (cancels position bias); `principles_per_comparison` > 1 averages the soft label over several
    sampled principles (ensembling). Outputs DPO columns `chosen`, `rejected`, `preference`
    (P(chosen is better), in (0.5, 1]), plus `p_first` (P(responses[0] is better)), `principle`
    (names joined by "+"), `swapped` (one bool per comparison) and `label_source`.
    """

    responses: str = "responses"
    model: str = "feedback"
    cot: bool = False
    label_source: Literal["auto", "logprobs", "votes"] = "auto"
    votes: int = 8  # samples for the vote fallback
    top_logprobs: int = 10
    principles_per_comparison: int = 1
    max_tokens: int = 16  # a constrained label (a server wraps it in JSON); chain of thought uses cot_tokens
    cot_tokens: int = 160

    _prompt: PromptTemplate | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        self._prompt = PromptTemplate("cai_compare_cot.j2" if self.cot else "cai_compare.j2")
        if self.votes < 1 or self.principles_per_comparison < 1:
            raise BadInputError(f"step {self.name!r}: votes and principles_per_comparison must be >= 1")

    def input_columns(self) -> set[str]:
        return {"prompt", self.responses}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"chosen", "rejected", "preference", "p_first", "principle", "swapped", "label_source"}

    def model_roles(self) -> set[str]:
        return {self.model}

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return list(await asyncio.gather(*(self._one(r, ctx) for r in rows)))

    async def _label(self, ctx: StepContext, prompt: str, seed: int, log: CallLog, tag: str) -> SoftLabel | None:
        """P(A) for one rendered comparison: logprobs first, then votes (as configured)."""
        if self.cot:  # the reasoning is free text; the label is read after its final "The answer is"
            request = user_request(prompt, seed, temperature=0.0, max_tokens=self.cot_tokens, logprobs=True,
                                   top_logprobs=self.top_logprobs)
            votes = user_request(prompt, seed + 1, temperature=1.0, max_tokens=self.cot_tokens, n=self.votes)
        else:  # a constrained choice: the answer is the label itself, read at its position
            request = choice_request([{"role": "user", "content": prompt}], LABELS, seed=seed,
                                     top_logprobs=self.top_logprobs, max_tokens=self.max_tokens)
            votes = dataclasses.replace(request, seed=seed + 1, temperature=1.0, n=self.votes, logprobs=False,
                                        top_logprobs=0)
        if self.label_source in ("auto", "logprobs"):
            response = await ask(ctx, self.model, request, log, tag)
            label = (soft_label_from_logprobs(response.choices[0].logprobs, cot=True) if self.cot
                     else soft_label_from_choice(read_choice(response, LABELS)))
            if label is not None or self.label_source == "logprobs":
                return label
        response = await ask(ctx, self.model, votes, log, f"{tag}/votes")
        return soft_label_from_votes([c.text for c in response.choices], self.cot)

    async def _one(self, row: Row, ctx: StepContext) -> Any:
        assert self._prompt is not None
        given = [clean_reply(str(r)) for r in row.get(self.responses) or [] if r is not None]
        candidates = list(dict.fromkeys(t for t in given if t))
        if len(candidates) < 2:
            reason = "identical_responses" if len([t for t in given if t]) >= 2 else "too_few_responses"
            return Rejected(reason, row, f"need two different non-empty responses, got {len(candidates)}")
        first, second = candidates[:2]
        log = CallLog()
        p_firsts, names, swaps, sources = [], [], [], []
        for j in range(self.principles_per_comparison):
            principle = self.principles().sample(ctx.seed_for(row, 3 * j))
            swapped = random.Random(ctx.seed_for(row, 3 * j + 1)).random() < 0.5
            a, b = (second, first) if swapped else (first, second)
            prompt = self._prompt.render({**row, "question": principle.preference, "option_a": a, "option_b": b})
            try:
                label = await self._label(ctx, prompt, ctx.seed_for(row, 3 * j + 2), log, f"{self.name}#{j}")
            except InvalidRequestError as e:
                return Rejected("invalid_request", row, str(e))
            if label is None:
                return Rejected("unparseable_feedback", row, f"no (A)/(B) answer under {principle.name}: "
                                f"{list(log.raw.values())[-1][:160]!r}")
            p_firsts.append(1.0 - label.p_a if swapped else label.p_a)
            names.append(principle.name)
            swaps.append(swapped)
            sources.append(label.source)
        p_first = sum(p_firsts) / len(p_firsts)
        if abs(p_first - 0.5) < 1e-9:
            return Rejected("no_preference", row, f"P(first) = 0.5 under {', '.join(names)}")
        chosen, rejected = (first, second) if p_first > 0.5 else (second, first)
        meta = log.meta(self._prompt.sha, {"cot": self.cot, "label_source": self.label_source,
                                           "top_logprobs": self.top_logprobs, "votes": self.votes})
        # fixed column types whatever the ensemble size (Parquet needs one type per column)
        updates = {"chosen": chosen, "rejected": rejected, "preference": round(max(p_first, 1 - p_first), 6),
                   "p_first": round(p_first, 6), "principle": "+".join(names), "swapped": swaps,
                   "label_source": sources[0] if len(set(sources)) == 1 else "mixed"}
        return ctx.derive(row, updates, **meta)
