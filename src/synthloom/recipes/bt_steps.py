"""Pipeline steps for back-translation with Gamma selection (Xu et al. 2022).

bt_candidates   K candidate sources per target sentence from the `backward` model: one greedy
                (beam-like) and K-1 sampled, each with its backward log-probability
bt_score        quality (round-trip chrF/BLEU through the `forward` model, or the backward
                log-prob) and importance ((log p_LM - log p_bt) / length, `lm` model), both
                z-normalised within the sentence's candidates, mixed into the Gamma score
gamma_select    the candidate to keep: argmax Gamma, or a seeded Gamma sample
bt_report       quality and diversity of the selected set (chrF to references, Self-BLEU)

Floors (absolute, before the per-sentence z-scores, which alone would always crown a winner):
a candidate is dropped when its round-trip chrF to the original is below `min_round_trip`
(garbage that happens to be the best of a bad lot) or when its own chrF to the original is above
`max_source_similarity` (the "translation" copies the input: it would win every round trip).
A sentence with no candidate left is rejected. The kept row records the `bt_floors` verdict.

LM log-probabilities: log p_LM(x) is the teacher-forced log-probability of the candidate as
plain text, from a backend that can score text: the embedded model, or a server whose
`/v1/completions` answers echo + logprobs (the openai backend with `?score=true`). Elsewhere the
step warns once and leaves the importance term out (gamma = z(quality)); rows say so in
`importance_source`. It never forces the text through constrained decoding: grammar-constrained
logprobs are not the model's probability of the text.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import regex
import sacrebleu
from pydantic import PrivateAttr

from synthloom.pipeline.calls import CallLog, ask, score_each, user_request
from synthloom.alignment.gamma import gamma_scores, importance, select, znorm
from synthloom.errors import ConfigError
from synthloom.io import write_text_atomic
from synthloom.llm.base import InvalidRequestError, ModelError, TokenLogprob
from synthloom.llm.openai_compat import EndpointError
from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.pipeline.templates import PromptTemplate
from synthloom.quality.diversity import self_bleu
from synthloom.records import Row
from synthloom.verdicts import Verdict

log_ = logging.getLogger("synthloom")

# Labels a model echoes before its translation: language names (English and their own), in any
# script, and "Translation"-like words, followed by an ASCII or full-width colon ("中文：").
_LABEL = regex.compile(r"^\s*[*_]*(?P<label>[\p{L}][\p{L}\p{M}'’ ()-]{0,40}?)[*_]*\s*[:：][*_]*\s*")
_LABEL_WORDS = frozenset("""
english french german spanish italian portuguese dutch russian chinese japanese korean arabic hindi
turkish polish swedish greek hebrew vietnamese thai indonesian czech romanian ukrainian mandarin
français francais française anglais allemand espagnol italien deutsch englisch französisch
spanisch español espanol inglés ingles francés frances alemán aleman italiano português portugues
nederlands русский английский французский 中文 汉语 漢語 英文 英语 法语 法文 日本語 英語 한국어 영어
العربية हिन्दी türkçe polski svenska ελληνικά עברית tiếng việt version
translation translated traduction traducción traduccion traduzione tradução übersetzung
翻译 翻譯 译文 source target answer réponse respuesta antwort output text sentence phrase in into
""".split())
_QUOTES = "\"“”«»„「」"


def _label_words(text: str) -> list[str]:
    return [w for w in regex.split(r"[\s()'’-]+", text.casefold()) if w]


def _is_label(label: str, langs: Sequence[str]) -> bool:
    words = _label_words(label)
    known = _LABEL_WORDS.union(*(_label_words(lang) for lang in langs))
    if words and all(w in known for w in words):
        return True
    # any other single capitalised word ("Svenska:", "Traduzido:") is taken as a label too
    return len(words) == 1 and label[:1].isupper() and len(label) <= 24


def strip_label(line: str, langs: Sequence[str] = ()) -> str:
    """`line` without leading echoed labels ("Français :", "中文：", "French translation:")."""
    line = line.strip()
    for _ in range(2):  # "Translation: French: ..." happens
        m = _LABEL.match(line)
        if m is None or not _is_label(m.group("label"), langs):
            break
        line = line[m.end():].strip()
    return line


def clean_translation(text: str, langs: Sequence[str] = ()) -> str:
    """First non-empty line without an echoed label or quotes; `langs` are extra label words."""
    for line in text.splitlines():
        line = strip_label(line, langs).strip(_QUOTES).strip()
        if line:
            return line
    return ""


def chrf(hypothesis: str, reference: str) -> float:
    """sacrebleu sentence chrF in [0, 1]."""
    return sacrebleu.sentence_chrf(hypothesis, [reference]).score / 100.0


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

    def model_post_init(self, context: Any) -> None:
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
                text = clean_translation(choice.text, list(self.langs().values()))
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
    """Floors, quality, importance and Gamma score for every candidate (z-scores within the sentence).

    floors: a candidate whose chrF to the original exceeds `max_source_similarity` (a copy) or whose
    round trip scores below `min_round_trip` chrF (garbage) is dropped and listed in `filtered`;
    a sentence with none left is rejected. Both are absolute: z-scores cannot see them.
    quality: "chrf" / "bleu" (the `forward` model translates the candidate back; sentence score
    against the original, in [0, 1]) or "backward_logprob" (log p_bt(x|y) / length, the paper's).
    importance: (log p_LM(x) - log p_bt(x|y)) / length with the `lm` model, teacher-forced; left
    out (with one warning) when the `lm` backend cannot score text; skipped when weight = 0.
    """

    column: str = "target"
    quality: Literal["chrf", "bleu", "backward_logprob"] = "chrf"
    weight: float = 0.2  # gamma: weight of importance
    min_round_trip: float = 0.4  # round-trip chrF floor, in [0, 1]; 0 = off
    # chrF(candidate, original) ceiling; 1 = off. Real cognate-rich translations reach ~0.65
    # ("Le restaurant a un menu international."), a copy with one word changed ~0.87.
    max_source_similarity: float = 0.8
    forward_model: str = "forward"
    lm_model: str = "lm"
    forward_template: str = "bt_forward.j2"
    max_tokens: int = 64

    _forward: PromptTemplate | None = PrivateAttr(default=None)
    _warned: bool = PrivateAttr(default=False)

    def model_post_init(self, context: Any) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError(f"step {self.name!r}: gamma weight must be in [0, 1], got {self.weight}")
        if not (0.0 <= self.min_round_trip <= 1.0 and 0.0 < self.max_source_similarity <= 1.0):
            raise ConfigError(f"step {self.name!r}: min_round_trip must be in [0, 1] and "
                              "max_source_similarity in (0, 1]")
        self._forward = PromptTemplate(self.forward_template)

    @property
    def round_trips(self) -> bool:
        return self.quality in ("chrf", "bleu") or self.min_round_trip > 0

    def input_columns(self) -> set[str]:
        return {self.column, "candidates"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"unscored", "filtered", "importance_source"}

    def model_roles(self) -> set[str]:
        roles = {self.forward_model} if self.round_trips else set()
        return roles | ({self.lm_model} if self.weight > 0 else set())

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return list(await asyncio.gather(*(self._one(r, ctx) for r in rows)))

    async def _round_trip(self, ctx: StepContext, row: Row, i: int, cand: dict, log: CallLog) -> None:
        assert self._forward is not None
        prompt = self._forward.render({**self.langs(), "source": cand["text"]})
        resp = await ask(ctx, self.forward_model, user_request(prompt, ctx.seed_for(row, 2 * i), temperature=0.0,
                                                               max_tokens=self.max_tokens), log,
                         f"{self.name}/forward#{i}")
        back = clean_translation(resp.text, list(self.langs().values()))
        original = str(row[self.column])
        cand["round_trip"] = back
        cand["round_trip_chrf"] = round(chrf(back, original), 6)
        if self.quality == "bleu":
            cand["round_trip_bleu"] = round(sacrebleu.sentence_bleu(back, [original]).score / 100.0, 6)

    def _warn_once(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            log_.warning("step %s: %s; the importance term is left out (gamma = quality only)", self.name, why)

    async def _lm_logprobs(self, ctx: StepContext, texts: list[str], log: CallLog) -> list[float | None] | None:
        """Teacher-forced log p_LM(text) of each text (None for one it cannot score); None when the
        `lm` backend cannot score text at all."""
        model = ctx.model(self.lm_model)
        if not getattr(model, "can_score", False):
            self._warn_once(f"the lm model {model.identity} cannot score text (the embedded model, or a "
                            "server with /v1/completions echo + logprobs via ?score=true, can)")
            return None
        try:
            scored = await score_each(ctx, self.lm_model, texts)
        except (ConfigError, ModelError) as e:
            if isinstance(e, EndpointError):
                raise  # an outage is not "cannot score": the run fails (and resumes) as for any call
            self._warn_once(f"{model.identity} cannot score text after all ({e})")
            return None
        log.model = log.model or model.identity
        return [None if isinstance(s, InvalidRequestError) else s.logprob for s in scored]

    def _floors(self, cand: dict[str, Any]) -> str:
        """"" when the candidate passes the floors (the round trip once it is known), else the reason."""
        if cand["source_similarity"] > self.max_source_similarity:
            return f"copies_source: chrF to the original {cand['source_similarity']:.3f} > {self.max_source_similarity}"
        if self.min_round_trip > 0 and cand.get("round_trip_chrf", 1.0) < self.min_round_trip:
            return f"round_trip_below_floor: chrF {cand['round_trip_chrf']:.3f} < {self.min_round_trip}"
        return ""

    async def _one(self, row: Row, ctx: StepContext) -> Any:
        original = str(row[self.column])
        cands = [dict(c) for c in row["candidates"]]
        filtered: list[dict[str, str]] = []
        log = CallLog()
        for c in cands:
            c["source_similarity"] = round(chrf(c["text"], original), 6)
        try:
            # copies first: they need no forward call
            cands = self._drop(cands, filtered)
            if self.round_trips and cands:
                await asyncio.gather(*(self._round_trip(ctx, row, i, c, log) for i, c in enumerate(cands)))
                cands = self._drop(cands, filtered)
            if not cands:
                reasons = sorted({f["reason"].split(":")[0] for f in filtered})
                return Rejected(reasons[0] if len(reasons) == 1 else "below_floors", row,
                                "; ".join(f"{f['text'][:40]!r}: {f['reason']}" for f in filtered)[:500])
            if self.quality == "backward_logprob":
                if any(c["bt_logprob"] is None for c in cands):
                    return Rejected("no_logprobs", row, "the backward model returned no logprobs")
                quality = [c["bt_logprob"] / c["length"] for c in cands]
            else:
                quality = [c["round_trip_chrf" if self.quality == "chrf" else "round_trip_bleu"] for c in cands]
            imp, weight, unscored, source = [0.0] * len(cands), self.weight, [], "off"
            if self.weight > 0:
                if any(c["bt_logprob"] is None for c in cands):
                    return Rejected("no_logprobs", row, "importance needs the backward model's logprobs")
                lms = await self._lm_logprobs(ctx, [c["text"] for c in cands], log)
                if lms is None:
                    weight, source = 0.0, "unavailable"
                else:
                    source = "teacher_forced"
                    # a candidate the lm cannot score is dropped (listed in `unscored`), not the sentence
                    unscored = [c["text"] for c, lp in zip(cands, lms) if lp is None]
                    kept = [(c, q, lp) for c, q, lp in zip(cands, quality, lms) if lp is not None]
                    if not kept:
                        return Rejected("lm_score_unavailable", row, "the lm model could score no candidate")
                    cands, quality = [c for c, _, _ in kept], [q for _, q, _ in kept]
                    for c, _, lp in kept:
                        c["lm_logprob"] = lp
                    imp = [importance(lp, c["bt_logprob"], c["length"]) for c, _, lp in kept]  # type: ignore[arg-type]
        except InvalidRequestError as e:
            return Rejected("invalid_request", row, str(e))
        gammas = gamma_scores(quality, imp, weight)
        for c, q, i_, zq, zi, g in zip(cands, quality, imp, znorm(quality), znorm(imp), gammas):
            c.update(quality=round(q, 6), importance=round(i_, 6), quality_z=round(zq, 6),
                     importance_z=round(zi, 6), gamma=round(g, 6))
        meta = log.meta(self._forward.sha if self._forward else "",
                        {"quality": self.quality, "weight": self.weight, "min_round_trip": self.min_round_trip,
                         "max_source_similarity": self.max_source_similarity})
        out = ctx.derive(row, {"candidates": cands, "unscored": unscored, "filtered": filtered,
                               "importance_source": source}, **meta)
        trips = [c["round_trip_chrf"] for c in cands if "round_trip_chrf" in c]
        floor = (f"round-trip chrF >= {self.min_round_trip} (kept min {min(trips):.3f})"
                 if trips and self.min_round_trip > 0 else "no round-trip floor")
        evidence = (f"{len(cands)} of {len(cands) + len(filtered)} candidates pass: {floor}; chrF to the original "
                    f"<= {self.max_source_similarity} (kept max {max(c['source_similarity'] for c in cands):.3f})")
        return Verdict.passed("bt_floors", evidence).record(out, "bt_floors")

    def _drop(self, cands: list[dict], filtered: list[dict[str, str]]) -> list[dict]:
        """The candidates that pass the floors so far; the others go to `filtered` with the reason."""
        kept = []
        for c in cands:
            reason = self._floors(c)
            if reason:
                filtered.append({"text": c["text"], "reason": reason})
            else:
                kept.append(c)
        return kept


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
        return available | {"source", "gamma", "quality", "importance", "decoding", "selection",
                             "round_trip_chrf", "source_similarity"}

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
                                        "decoding": c["decoding"], "selection": f"{variant}#{i}",
                                        "round_trip_chrf": c.get("round_trip_chrf"),
                                        "source_similarity": c.get("source_similarity")}))
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

    is_global: ClassVar[bool] = True
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
