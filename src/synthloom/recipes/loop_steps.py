"""Steps for grounded and multi-call labelling: RAG retrieval + citations + faithfulness judging,
multi-agent debate, and self-reflection (Lewis et al. 2020; Irving et al. 2018, Du et al. 2023;
Madaan et al. 2023, Shinn et al. 2023).

rag_retrieve      top-k passages for a row's query from a LocalSearch corpus (ids kept)
rag_cite          citations of a generated answer: the passage ids it names, else the best-overlap passage
rag_faithfulness  a judge role decides whether the answer is supported by the cited passages (a verdict)
debate            two debater roles argue for their answers over R rounds; a judge role picks the winner
reflect           draft -> critique -> revise, up to R rounds; stops when the critic (or a checker) is satisfied

Each multi-call step goes through `ask`, so every call is cached, counted and logged in `_meta.raw`,
and each keeps its whole transcript as a column.
"""

from __future__ import annotations

import asyncio
import re
from functools import lru_cache
from typing import Any

from pydantic import PrivateAttr

from synthloom.pipeline.calls import (
    CallLog,
    PerRowModelStep,
    ask,
    choice_request,
    choice_verdict,
    choose,
    user_request,
)
from synthloom.errors import BadInputError
from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.pipeline.templates import PromptTemplate
from synthloom.records import Row, add_verdict

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is", "it",
                   "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "which", "who", "with",
                   "what", "when", "where", "how", "did", "does", "do"])


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


@lru_cache(maxsize=8)
def search_backend(corpus: str | None) -> Any:
    """One LocalSearch per corpus path per process (None = the eval suite's bundled corpus)."""
    from synthloom.eval.search import LocalSearch

    return LocalSearch.from_file(corpus) if corpus else LocalSearch.bundled()


def render_context(passages: list[dict[str, str]]) -> str:
    return "\n".join(f"[{p['id']}] {p['title']}: {p['text']}" if p["title"] else f"[{p['id']}] {p['text']}"
                     for p in passages)


# ---------------------------------------------------------------- RAG

@register_step("rag_retrieve")
class Retrieve(Step):
    """Adds `passages` ([{id, title, text}]), `passage_ids` and `context` (the prompt block)."""

    query: str = "topic"
    corpus: str | None = None  # JSONL/text corpus path; None = bundled
    k: int = 3

    def input_columns(self) -> set[str]:
        return {self.query}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"passages", "passage_ids", "context"}

    def setup(self, ctx: StepContext) -> None:
        search_backend(self.corpus)  # a bad corpus fails before any model call

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        backend = search_backend(self.corpus)
        out: list[Any] = []
        for row in rows:
            hits = backend.search(str(row[self.query]), self.k)
            if not hits:
                out.append(Rejected("no_passages", row, f"nothing in the corpus matches {row[self.query]!r}"))
                continue
            passages = [{"id": h.source, "title": h.title, "text": h.text} for h in hits]
            out.append(ctx.derive(row, {"passages": passages, "passage_ids": [p["id"] for p in passages],
                                        "context": render_context(passages)}))
        return out


def strip_citations(text: str) -> str:
    return re.sub(r"\s*\[[^\[\]]{1,40}\]", "", text).strip()


@register_step("rag_cite")
class Cite(Step):
    """`citations`: passage ids the answer names in [brackets] (only retrieved ones count); with none
    named, the retrieved passage sharing most content words with the answer (`citation_source`)."""

    column: str = "answer"

    def input_columns(self) -> set[str]:
        return {self.column, "passages"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"citations", "citation_source", "cited_context"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            text = str(row[self.column])
            by_id = {p["id"]: p for p in row["passages"]}
            named = [i for i in dict.fromkeys(re.findall(r"\[([^\[\]]{1,40})\]", text)) if i in by_id]
            source = "model"
            if not named:
                words = content_words(strip_citations(text))
                overlap = {pid: len(words & content_words(p["title"] + " " + p["text"])) for pid, p in by_id.items()}
                best = max(overlap, key=lambda pid: overlap[pid])
                if overlap[best] == 0:
                    out.append(Rejected("uncited", row, "the answer names no passage and shares no words with any"))
                    continue
                named, source = [best], "overlap"
            clean = strip_citations(text)
            out.append(ctx.derive(row, {self.column: clean, "citations": named, "citation_source": source,
                                        "cited_context": render_context([by_id[i] for i in named])}))
        return out


def grounding_support(answer: str, passages_text: str) -> float:
    """Share of the answer's content words found in the cited passages (a model-free check)."""
    words = content_words(answer)
    return len(words & content_words(passages_text)) / len(words) if words else 0.0


@register_step("rag_faithfulness")
class Faithfulness(PerRowModelStep):
    """Judge role: is the answer supported by the cited passages? Records verdict `faithfulness`
    (and model-free `grounding` support); unfaithful rows are rejected unless `keep_unfaithful`."""

    template: str = "rag_faithfulness.j2"
    model: str = "judge"
    max_tokens: int = 16  # room for a server's JSON-wrapped label ({"label": "Yes"})
    min_support: float = 0.5
    keep_unfaithful: bool = False

    _prompt: PromptTemplate | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        self._prompt = PromptTemplate(self.template)

    def input_columns(self) -> set[str]:
        assert self._prompt is not None
        return set(self._prompt.variables)

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"faithful", "judge_reply", "support"}

    def model_roles(self) -> set[str]:
        return {self.model}

    async def one(self, row: Row, ctx: StepContext) -> Any:
        assert self._prompt is not None
        log = CallLog()
        request = choice_request([{"role": "user", "content": self._prompt.render(row)}], FAITHFUL_LABELS,
                                 seed=ctx.seed_for(row), max_tokens=self.max_tokens)
        reading = await choose(ctx, self.model, request, log, self.name)
        verdict = choice_verdict(reading, "Yes", "No")
        support = round(grounding_support(str(row.get("answer", "")), str(row.get("cited_context", ""))), 3)
        new = ctx.derive(row, {"faithful": verdict.ok, "judge_reply": reading.raw.strip(), "support": support},
                         **log.meta(self._prompt.sha, {"temperature": 0.0, "max_tokens": self.max_tokens}))
        verdict.record(new, "faithfulness")
        add_verdict(new, "grounding", support >= self.min_support,
                    f"{support:.0%} of answer content words appear in the cited passages", method="content_word_overlap")
        if verdict.ok is not True and not self.keep_unfaithful:
            return Rejected("unfaithful" if verdict.ok is False else "judge_unknown", new, reading.raw.strip()[:120])
        return new


FAITHFUL_LABELS = ("Yes", "No")


# ---------------------------------------------------------------- debate

def _final_answer(text: str) -> str | None:
    from synthloom.verify.math import extract_answer

    return extract_answer(text)


@register_step("debate")
class Debate(PerRowModelStep):
    """Two debater roles each open with a solution, then argue for their own answer for `rounds`
    rounds (seeing the transcript); the judge role reads the transcript and picks A or B.

    Columns: answer_a/answer_b, transcript [{round, speaker, text}], winner, label, response
    (the winner's opening solution). With a gold column, verdict `debate_judge` says whether the
    judge chose a correct answer. Rows whose debaters agree skip the argument (winner "agree")."""

    question: str = "question"
    gold: str | None = "answer"
    rounds: int = 2
    debaters: tuple[str, str] = ("debater_a", "debater_b")
    judge: str = "judge"
    temperature: float = 0.8
    max_tokens: int = 96
    argue_tokens: int = 64
    open_template: str = "debate_open.j2"
    argue_template: str = "debate_argue.j2"
    judge_template: str = "debate_judge.j2"

    _t: dict[str, PromptTemplate] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        if self.rounds < 0:
            raise BadInputError(f"debate step {self.name!r}: rounds must be >= 0")
        self._t = {"open": PromptTemplate(self.open_template), "argue": PromptTemplate(self.argue_template),
                   "judge": PromptTemplate(self.judge_template)}

    def input_columns(self) -> set[str]:
        return {self.question} | ({self.gold} if self.gold else set())

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"answer_a", "answer_b", "transcript", "winner", "label", "response", "judge_reply",
                             "judge_swapped"}

    def model_roles(self) -> set[str]:
        return {*self.debaters, self.judge}

    async def one(self, row: Row, ctx: StepContext) -> Any:
        log = CallLog()
        question = str(row[self.question])
        openings = await asyncio.gather(*(
            ask(ctx, role, user_request(self._t["open"].render({"question": question}), ctx.seed_for(row, i),
                                        temperature=self.temperature, max_tokens=self.max_tokens),
                log, f"{self.name}/open_{'ab'[i]}")
            for i, role in enumerate(self.debaters)))
        solutions = [o.choices[0].text.strip() for o in openings]
        extracted = [_final_answer(s) for s in solutions]
        if extracted[0] is None or extracted[1] is None:
            return Rejected("no_answer", row, f"a debater gave no final answer: {extracted}")
        answers = [extracted[0], extracted[1]]
        transcript = [{"round": 0, "speaker": side, "text": sol} for side, sol in zip("AB", solutions)]
        winner, reply, swapped = await self._argue_and_judge(row, ctx, log, question, answers, transcript)
        if winner is None:
            return Rejected("judge_unknown", row, f"the judge gave no lone A or B: {reply[:120]!r}")
        pick = 0 if winner in ("A", "agree") else 1
        if log.truncated(f"{self.name}/open_{'ab'[pick]}"):  # the label's solution was cut off
            return Rejected("truncated", row, f"the winning opening hit max_tokens={self.max_tokens}")
        new = ctx.derive(row, {"answer_a": answers[0], "answer_b": answers[1], "transcript": transcript,
                               "winner": winner, "label": answers[pick], "response": solutions[pick],
                               "judge_reply": reply, "judge_swapped": swapped},
                         **log.meta(self._t["argue"].sha, {"rounds": self.rounds, "temperature": self.temperature}))
        if self.gold and row.get(self.gold) not in (None, ""):
            from synthloom.verify.math import answers_equal

            ok = bool(answers_equal(answers[pick], str(row[self.gold])))
            add_verdict(new, "debate_judge", ok, f"judge chose {answers[pick]!r}; gold {row[self.gold]!r}",
                        method="answer_match_vs_gold")
            if not ok:  # a wrong label is never training data, however the debate went
                return Rejected("wrong_label", new, f"debate label {answers[pick]!r} != gold {row[self.gold]!r}")
        return new

    async def _argue_and_judge(self, row: Row, ctx: StepContext, log: CallLog, question: str,
                               answers: list[str], transcript: list[dict[str, Any]]) -> tuple[str | None, str, bool]:
        from synthloom.verify.math import answers_equal

        if answers_equal(answers[0], answers[1]):
            return "agree", "debaters agree", False
        for r in range(1, self.rounds + 1):
            for i, side in enumerate("AB"):  # sequential: B answers A's argument of the same round
                prompt = self._t["argue"].render({"question": question, "side": side, "own_answer": answers[i],
                                                  "other_answer": answers[1 - i], "transcript": transcript})
                resp = await ask(ctx, self.debaters[i], user_request(
                    prompt, ctx.seed_for(row, 10 * r + i), temperature=self.temperature,
                    max_tokens=self.argue_tokens), log, f"{self.name}/r{r}_{side}")
                transcript.append({"round": r, "speaker": side, "text": resp.choices[0].text.strip()})
        # small judges favour a position: show the debaters in a seeded random order, map the pick back
        swapped = ctx.seed_for(row, 998) % 2 == 1
        relabel = {"A": "B", "B": "A"} if swapped else {"A": "A", "B": "B"}
        shown = [{**turn, "speaker": relabel[turn["speaker"]]} for turn in transcript[2:]]
        shown.sort(key=lambda turn: (turn["round"], turn["speaker"]))
        first, second = (answers[1], answers[0]) if swapped else (answers[0], answers[1])
        prompt = self._t["judge"].render({"question": question, "answer_a": first, "answer_b": second,
                                          "transcript": shown})
        request = choice_request([{"role": "user", "content": prompt}], ("A", "B"), seed=ctx.seed_for(row, 999))
        reading = await choose(ctx, self.judge, request, log, f"{self.name}/judge")
        return (relabel[reading.label] if reading.label else None), reading.raw.strip(), swapped


# ---------------------------------------------------------------- reflection

NO_ISSUES = re.compile(r"\bno issues\b", re.IGNORECASE)


@register_step("reflect")
class Reflect(PerRowModelStep):
    """Self-Refine / Reflexion: draft, then up to `rounds` of critique -> revision by the same role.

    Stops when the critique says "NO ISSUES". With `gold` set, the answer checker's verdict is given
    to the critic as feedback (Reflexion's environment signal) and the loop stops once it passes.
    Columns: draft, critiques, revisions, response (final), rounds_used; verdicts `draft_math` and
    `math` when gold is known."""

    question: str = "question"
    gold: str | None = None
    rounds: int = 2
    model: str = "generator"
    critic: str | None = None  # another role may critique; default: the generator critiques itself
    temperature: float = 0.7
    max_tokens: int = 128
    answer_format: str = ""
    draft_template: str = "reflect_draft.j2"
    critique_template: str = "reflect_critique.j2"
    revise_template: str = "reflect_revise.j2"

    _t: dict[str, PromptTemplate] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        self._t = {"draft": PromptTemplate(self.draft_template), "critique": PromptTemplate(self.critique_template),
                   "revise": PromptTemplate(self.revise_template)}

    def input_columns(self) -> set[str]:
        return {self.question} | ({self.gold} if self.gold else set())

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"draft", "critiques", "revisions", "response", "rounds_used", "fixed_by_reflection"}

    def model_roles(self) -> set[str]:
        return {self.model} | ({self.critic} if self.critic else set())

    def _check(self, row: Row, text: str) -> tuple[bool, str] | None:
        if not self.gold or row.get(self.gold) in (None, ""):
            return None
        from synthloom.verify.math import verify_answer

        v = verify_answer(text, str(row[self.gold]))
        return bool(v["ok"]), ("the final answer is correct" if v["ok"] else "the final answer is wrong")

    async def _call(self, ctx: StepContext, role: str, template: str, values: dict[str, Any], seed: int,
                    log: CallLog, label: str, temperature: float) -> str:
        request = user_request(self._t[template].render(values), seed, temperature=temperature,
                               max_tokens=self.max_tokens)
        return (await ask(ctx, role, request, log, label)).choices[0].text.strip()

    async def one(self, row: Row, ctx: StepContext) -> Any:
        log = CallLog()
        base = {"question": str(row[self.question]), "answer_format": self.answer_format}
        critic = self.critic or self.model
        response = await self._call(ctx, self.model, "draft", base, ctx.seed_for(row, 0), log,
                                    f"{self.name}/draft", self.temperature)
        draft, critiques, revisions = response, [], []
        for r in range(1, self.rounds + 1):
            check = self._check(row, response)
            if check and check[0]:
                break  # the checker is satisfied: nothing to fix
            critique = await self._call(ctx, critic, "critique",
                                        {**base, "response": response, "feedback": check[1] if check else ""},
                                        ctx.seed_for(row, 2 * r - 1), log, f"{self.name}/critique{r}", 0.0)
            critiques.append(critique)
            if NO_ISSUES.search(critique) and not check:
                break
            response = await self._call(ctx, self.model, "revise", {**base, "response": response,
                                                                     "critique": critique},
                                        ctx.seed_for(row, 2 * r), log, f"{self.name}/revise{r}", self.temperature)
            revisions.append(response)
        if not response:
            return Rejected("empty_response", row, "the final revision is empty")
        final = f"{self.name}/revise{len(revisions)}" if revisions else f"{self.name}/draft"
        if log.truncated(final):  # an answer cut off at max_tokens is no label, whatever it says
            return Rejected("truncated", row, f"the final response hit max_tokens={self.max_tokens}")
        draft_check, final_check = self._check(row, draft), self._check(row, response)
        fixed = bool(draft_check and final_check and not draft_check[0] and final_check[0])
        new = ctx.derive(row, {"draft": draft, "critiques": critiques, "revisions": revisions,
                               "response": response, "rounds_used": len(critiques), "fixed_by_reflection": fixed},
                         **log.meta(self._t["revise"].sha, {"rounds": self.rounds, "temperature": self.temperature}))
        for name, check in (("draft_math", draft_check), ("math", final_check)):
            if check:
                add_verdict(new, name, check[0], check[1], method="math_answer_vs_gold")
        if final_check and not final_check[0]:  # reflection did not reach a right answer: not a label
            return Rejected("wrong_answer", new, "the final revision's answer does not match the gold answer")
        return new
