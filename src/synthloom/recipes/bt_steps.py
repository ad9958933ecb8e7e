"""Pipeline steps for back-translation with Gamma selection (Xu et al. 2022; TECHNIQUES §7).

bt_candidates   K candidate sources per target sentence from the `backward` model: one greedy
                (beam-like) and K-1 sampled, each with its backward log-probability
bt_score        quality (round-trip chrF/BLEU through the `forward` model, or the backward
                log-prob) and importance ((log p_LM - log p_bt) / length, `lm` model), both
                z-normalised within the sentence's candidates, mixed into the Gamma score
gamma_select    the candidate to keep: argmax Gamma, or a seeded Gamma sample
bt_report       quality and diversity of the selected set (chrF to references, Self-BLEU)

LM log-probabilities: when the `lm` model can score text (the embedded backend), log p_LM(x) is
its teacher-forced log-probability of the candidate as plain text. Other backends have no "score
this text" call, so the candidate is scored by forced decoding: a JSON-schema `enum` of exactly
that string makes the backend emit it, and the logprobs it reports are the model's (pre-grammar)
log-probabilities of those tokens. On backends that report post-constraint logprobs or ignore
the schema this is wrong or fails; the step checks the forced text and rejects the row with
`lm_score_unavailable` when it differs.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import sacrebleu
from pydantic import PrivateAttr

from synthloom.pipeline.calls import CallLog, ask, score_each, user_request
from synthloom.alignment.gamma import gamma_scores, importance, select, znorm
from synthloom.errors import ConfigError
from synthloom.io import write_text_atomic
from synthloom.llm.base import InvalidRequestError, TokenLogprob
from synthloom.pipeline.step import Rejected, Step, StepContext, StepKind, register_step
from synthloom.pipeline.templates import PromptTemplate
from synthloom.quality.diversity import self_bleu
from synthloom.records import Row

_LABEL = re.compile(r"^\s*(?:[A-Z][a-z]+(?: translation)?|Translation|Source|Answer)\s*:\s*")


def clean_translation(text: str) -> str:
    """First non-empty line without an echoed 'French:' / 'Translation:' label or quotes."""
    for line in text.splitlines():
        line = _LABEL.sub("", line.strip(), count=1).strip().strip('"“”«»').strip()
        if line:
            return line
    return ""


def span_logprob(tokens: Sequence[TokenLogprob], start: int, end: int) -> tuple[float, int]:
    """Sum of the logprobs of the tokens overlapping text[start:end] (and how many there were)."""
    total, count, offset = 0.0, 0, 0
    for t in tokens:
        lo, hi = offset, offset + len(t.token)
        if hi > start and lo < end:
            total += t.logprob
            count += 1
        offset = hi
    return total, count


def text_logprob(tokens: Sequence[TokenLogprob] | None, raw: str, part: str) -> float | None:
    """log-probability of `part`, a cleaned piece of the generated `raw` text; None without logprobs."""
    if not tokens:
        return None
    joined = "".join(t.token for t in tokens)
    start = joined.find(part)
    if start < 0:  # detokenisation differs from the text (rare): fall back to the whole completion
        return sum(t.logprob for t in tokens)
    return span_logprob(tokens, start, start + len(part))[0]


def length_of(text: str) -> int:
    """Length used for normalisation: whitespace words (the same for both log-probs, any tokenizer)."""
    return max(1, len(text.split()))


class _LanguageStep(Step):
    source_lang: str = "French"
    target_lang: str = "English"

    def langs(self) -> dict[str, str]:
        return {"source_lang": self.source_lang, "target_lang": self.target_lang}


@register_step("bt_candidates")
class BackTranslateCandidates(_LanguageStep):
    """`candidates`: up to k distinct back-translations of `column` with their backward log-probs.

    One greedy candidate (temperature 0, beam-like) when `greedy`, the rest sampled at
    `temperature`/`top_p`. Each candidate: {text, bt_logprob, length, decoding}.
    """

    column: str = "target"
    k: int = 4
    greedy: bool = True
    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 64
    model: str = "backward"
    template: str = "bt_backward.j2"

    _prompt: PromptTemplate | None = PrivateAttr(default=None)

    def __init__(self, **data: Any):
        super().__init__(**data)
        if self.k < 1:
            raise ConfigError(f"step {self.name!r}: k must be >= 1")
        self._prompt = PromptTemplate(self.template)

    def input_columns(self) -> set[str]:
        return {self.column}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"candidates"}

    def model_roles(self) -> set[str]:
        return {self.model}

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return list(await asyncio.gather(*(self._one(r, ctx) for r in rows)))

    async def _one(self, row: Row, ctx: StepContext) -> Any:
        assert self._prompt is not None
        prompt = self._prompt.render({**row, **self.langs(), "target": row[self.column]})
        log = CallLog()
        plans = [("greedy", 0.0, 1.0, 1)] if self.greedy else []
        if self.k - len(plans) > 0:
            plans.append(("sample", self.temperature, self.top_p, self.k - len(plans)))
        try:
            responses = await asyncio.gather(*(
                ask(ctx, self.model, user_request(prompt, ctx.seed_for(row, i), temperature=t, top_p=p, n=n,
                                                  max_tokens=self.max_tokens, logprobs=True), log,
                    f"{self.name}/{kind}")
                for i, (kind, t, p, n) in enumerate(plans)))
        except InvalidRequestError as e:
            return Rejected("invalid_request", row, str(e))
        candidates: list[dict[str, Any]] = []
        seen: set[str] = set()
        for (kind, *_), response in zip(plans, responses):
            for choice in response.choices:
                text = clean_translation(choice.text)
                if not text or text in seen or choice.finish_reason == "length":
                    continue  # duplicates are removed (as in the paper); truncated ones are unusable
                seen.add(text)
                candidates.append({"text": text, "bt_logprob": text_logprob(choice.logprobs, choice.text, text),
                                   "length": length_of(text), "decoding": kind})
        if not candidates:
            return Rejected("no_candidates", row, f"no usable translation in {sum(p[3] for p in plans)} samples")
        meta = log.meta(self._prompt.sha, {"k": self.k, "temperature": self.temperature, "top_p": self.top_p,
                                           "max_tokens": self.max_tokens})
        return ctx.derive(row, {"candidates": candidates}, **meta)


@register_step("bt_score")
class ScoreCandidates(_LanguageStep):
    """Quality, importance and Gamma score for every candidate (z-scores within the sentence).

    quality: "chrf" / "bleu" (the `forward` model translates the candidate back; sentence score
    against the original, in [0, 1]) or "backward_logprob" (log p_bt(x|y) / length, the paper's).
    importance: (log p_LM(x) - log p_bt(x|y)) / length with the `lm` model; skipped when weight = 0.
    """

    column: str = "target"
    quality: Literal["chrf", "bleu", "backward_logprob"] = "chrf"
    weight: float = 0.2  # gamma: weight of importance
    forward_model: str = "forward"
    lm_model: str = "lm"
    forward_template: str = "bt_forward.j2"
    lm_template: str = "bt_lm.j2"
    max_tokens: int = 64

    _forward: PromptTemplate | None = PrivateAttr(default=None)
    _lm: PromptTemplate | None = PrivateAttr(default=None)

    def __init__(self, **data: Any):
        super().__init__(**data)
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError(f"step {self.name!r}: gamma weight must be in [0, 1], got {self.weight}")
        self._forward = PromptTemplate(self.forward_template)
        self._lm = PromptTemplate(self.lm_template)

    def input_columns(self) -> set[str]:
        return {self.column, "candidates"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"unscored"}

    def model_roles(self) -> set[str]:
        roles = {self.forward_model} if self.quality in ("chrf", "bleu") else set()
        return roles | ({self.lm_model} if self.weight > 0 else set())

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return list(await asyncio.gather(*(self._one(r, ctx) for r in rows)))

    async def _round_trip(self, ctx: StepContext, row: Row, i: int, cand: dict, log: CallLog) -> float:
        assert self._forward is not None
        prompt = self._forward.render({**self.langs(), "source": cand["text"]})
        resp = await ask(ctx, self.forward_model, user_request(prompt, ctx.seed_for(row, 2 * i), temperature=0.0,
                                                               max_tokens=self.max_tokens), log,
                         f"{self.name}/forward#{i}")
        back = clean_translation(resp.text)
        cand["round_trip"] = back
        reference = [str(row[self.column])]
        score = sacrebleu.sentence_chrf(back, reference) if self.quality == "chrf" else \
            sacrebleu.sentence_bleu(back, reference)
        return score.score / 100.0

    async def _lm_logprob(self, ctx: StepContext, row: Row, i: int, text: str, log: CallLog) -> float | None:
        """log p_LM(text) (see module docstring); None when the backend cannot give it."""
        assert self._lm is not None
        if getattr(ctx.model(self.lm_model), "can_score", False):
            [scored] = await score_each(ctx, self.lm_model, [text])
            if isinstance(scored, InvalidRequestError):
                raise scored
            log.model = log.model or ctx.model(self.lm_model).identity
            log.prompt_tokens += len(scored.tokens)
            return scored.logprob
        forced = json.dumps(text, ensure_ascii=False)
        request = user_request(self._lm.render(self.langs()), ctx.seed_for(row, 2 * i + 1), temperature=0.0,
                               max_tokens=len(forced) + 8, logprobs=True, json_schema={"enum": [text]})
        resp = await ask(ctx, self.lm_model, request, log, f"{self.name}/lm#{i}")
        choice = resp.choices[0]
        if not choice.logprobs:
            return None
        try:  # compare values, not spellings: the grammar may escape characters differently
            if json.loads(choice.text) != text:
                return None
        except ValueError:
            return None
        joined = "".join(t.token for t in choice.logprobs)
        start, end = joined.find('"'), joined.rfind('"')
        if start < 0 or end <= start:
            return None
        return span_logprob(choice.logprobs, start + 1, end)[0]  # the string's tokens, not its quotes

    async def _one(self, row: Row, ctx: StepContext) -> Any:
        cands = [dict(c) for c in row["candidates"]]
        unscored: list[str] = []
        log = CallLog()
        try:
            if self.quality == "backward_logprob":
                if any(c["bt_logprob"] is None for c in cands):
                    return Rejected("no_logprobs", row, "the backward model returned no logprobs")
                quality = [c["bt_logprob"] / c["length"] for c in cands]
            else:
                quality = list(await asyncio.gather(*(self._round_trip(ctx, row, i, c, log)
                                                      for i, c in enumerate(cands))))
            imp = [0.0] * len(cands)
            if self.weight > 0:
                if any(c["bt_logprob"] is None for c in cands):
                    return Rejected("no_logprobs", row, "importance needs the backward model's logprobs")
                lms = await asyncio.gather(*(self._lm_logprob(ctx, row, i, c["text"], log)
                                             for i, c in enumerate(cands)))
                # a candidate the lm cannot score is dropped (listed in `unscored`), not the sentence
                unscored = [c["text"] for c, lp in zip(cands, lms) if lp is None]
                kept = [(c, q, lp) for c, q, lp in zip(cands, quality, lms) if lp is not None]
                if not kept:
                    return Rejected("lm_score_unavailable", row,
                                    "the lm model did not reproduce any forced candidate with logprobs")
                cands, quality = [c for c, _, _ in kept], [q for _, q, _ in kept]
                for c, _, lp in kept:
                    c["lm_logprob"] = lp
                imp = [importance(lp, c["bt_logprob"], c["length"]) for c, _, lp in kept]  # type: ignore[arg-type]
        except InvalidRequestError as e:
            return Rejected("invalid_request", row, str(e))
        gammas = gamma_scores(quality, imp, self.weight)
        for c, q, i_, zq, zi, g in zip(cands, quality, imp, znorm(quality), znorm(imp), gammas):
            c.update(quality=round(q, 6), importance=round(i_, 6), quality_z=round(zq, 6),
                     importance_z=round(zi, 6), gamma=round(g, 6))
        meta = log.meta(self._forward.sha if self._forward else "", {"quality": self.quality, "weight": self.weight})
        return ctx.derive(row, {"candidates": cands, "unscored": unscored}, **meta)


@register_step("gamma_select")
class GammaSelect(Step):
    """Keep one candidate per sentence as `source`: "top1" (Gamma selection) or "sample" (Gamma
    sampling from softmax(gamma / temperature); `double_exp` uses the official code's
    softmax(exp(gamma)) instead). `tag` prefixes "<BT> " (tagged back-translation)."""

    method: Literal["top1", "sample"] = "top1"
    temperature: float = 1.0
    double_exp: bool = False
    tag: bool = False

    def input_columns(self) -> set[str]:
        return {"candidates"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"source", "gamma", "quality", "importance", "decoding", "selection"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            cands = row["candidates"]
            i = select([c["gamma"] for c in cands], self.method, ctx.seed_for(row), self.temperature, self.double_exp)
            c = cands[i]
            variant = self.method if self.method == "top1" else ("sample:double_exp" if self.double_exp
                                                                  else f"sample:tau={self.temperature}")
            out.append(ctx.derive(row, {"source": ("<BT> " if self.tag else "") + c["text"], "gamma": c["gamma"],
                                        "quality": c["quality"], "importance": c["importance"],
                                        "decoding": c["decoding"], "selection": f"{variant}#{i}"}))
        return out


def selected_set_report(rows: Sequence[Row], column: str = "target", reference: str = "reference") -> dict[str, Any]:
    """Quality and diversity of the selected sources next to the greedy (beam-like) baseline."""
    selected = [str(r["source"]).removeprefix("<BT> ") for r in rows]
    greedy = [next((c["text"] for c in r["candidates"] if c["decoding"] == "greedy"), None) for r in rows]
    report: dict[str, Any] = {
        "rows": len(rows),
        "self_bleu_selected": round(self_bleu(selected), 4) if len(selected) > 1 else None,
        "mean_quality": round(sum(r["quality"] for r in rows) / len(rows), 4) if rows else None,
        "mean_candidates": round(sum(len(r["candidates"]) for r in rows) / len(rows), 3) if rows else None,
        "share_greedy_selected": round(sum(r["decoding"] == "greedy" for r in rows) / len(rows), 4) if rows else None,
    }
    if all(g is not None for g in greedy) and len(greedy) > 1:
        report["self_bleu_greedy"] = round(self_bleu([str(g) for g in greedy]), 4)
    with_ref = [i for i, r in enumerate(rows) if r.get(reference)]
    if with_ref:
        refs = [[str(rows[i][reference]) for i in with_ref]]
        report["chrf_selected_vs_reference"] = round(sacrebleu.corpus_chrf([selected[i] for i in with_ref], refs).score, 3)
        if all(greedy[i] is not None for i in with_ref):
            report["chrf_greedy_vs_reference"] = round(
                sacrebleu.corpus_chrf([str(greedy[i]) for i in with_ref], refs).score, 3)
        report["rows_with_reference"] = len(with_ref)
    return report


@register_step("bt_report")
class BTReport(Step):
    """A barrier that measures the selected set and writes `bt_report.json` to the run directory.

    Rows pass through unchanged. Self-BLEU: higher = less diverse (see quality.diversity)."""

    kind: ClassVar[StepKind] = "global"
    column: str = "target"
    reference: str = "reference"

    def input_columns(self) -> set[str]:
        return {"source", "candidates", "quality", "decoding"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        report = selected_set_report(rows, self.column, self.reference)
        report["selection"] = sorted({str(r.get("selection", "")).split("#")[0] for r in rows})
        if ctx.run_dir is not None:
            write_text_atomic(Path(ctx.run_dir) / "bt_report.json", json.dumps(report, indent=2))
        return list(rows)
