"""Pipeline steps for math recipes: answer verification and MetaMath's backward questions."""

from __future__ import annotations

from typing import Any, Literal

from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.recipes.metamath_masking import (
    backward_questions,
    check_declarative,
    fobar_question,
    sv_question,
    sv_rewrite_input,
    sv_split,
)
from synthloom.records import Row
from synthloom.verify.math import final_answer, math_verdict


@register_step("verify_math")
class VerifyMath(Step):
    """Keep rows whose `column` (a model's solution) states the gold answer in `gold` explicitly.

    Only an explicit final answer counts ("The answer is N", \\boxed{N}, "#### N", "The value of x
    is N"); hedged, negated, competing or cut-off answers fail (`verify.math.final_answer`). There is
    no last-number fallback here: this step makes training data. The verdict (method
    ``final_answer_marker+sympy``) is recorded in `_meta.verdicts[verifier]` on kept and rejected
    rows alike.
    """

    column: str
    gold: str = "answer"
    verifier: str = "math"

    def input_columns(self) -> set[str]:
        return {self.column, self.gold}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            text = str(row[self.column])
            verdict = math_verdict(text, str(row[self.gold]))
            verdict.record(row, self.verifier)
            if verdict.ok:
                out.append(row)
            else:
                reason = "no_answer" if final_answer(text).answer is None else "wrong_answer"
                out.append(Rejected(reason, row, verdict.evidence))
        return out


@register_step("backward_questions")
class BackwardQuestions(Step):
    """MetaMath's deterministic masking: one backward question per number in `question`.

    fobar: `query` = masked question + "If we know the answer ... is {answer}, what is x?".
    sv: `sv_context`, `sv_sentence` and `sv_rewrite_input` for the declarative rewrite.
    The masked number is the gold answer of the backward question: it goes to `masked_value` and
    replaces `answer` (the forward answer moves to `forward_answer`), so the row's answer is x.
    """

    mode: Literal["fobar", "sv"]
    question: str = "question"
    answer: str = "answer"
    dataset: Literal["gsm8k", "math"] = "gsm8k"

    def input_columns(self) -> set[str]:
        return {self.question, self.answer}

    def output_columns(self, available: set[str]) -> set[str]:
        made = {"masked_question", "masked_value", "forward_answer", self.answer}
        made |= {"query"} if self.mode == "fobar" else {"sv_context", "sv_sentence", "sv_rewrite_input"}
        return available | made

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            items = backward_questions(str(row[self.question]), self.dataset)
            if not items:
                out.append(Rejected("no_number_to_mask", row))
                continue
            made = []
            for bq in items:
                forward = str(row[self.answer])
                cols: dict[str, Any] = {"masked_question": bq.question, "masked_value": bq.masked_value,
                                        "forward_answer": forward, self.answer: bq.masked_value}
                if self.mode == "fobar":
                    cols["query"] = fobar_question(bq.question, forward, self.dataset)
                else:
                    context, sentence = sv_split(bq.question)
                    cols |= {"sv_context": context, "sv_sentence": sentence,
                             "sv_rewrite_input": sv_rewrite_input(sentence, forward)}
                made.append(ctx.derive(row, cols))
            out.append(made)
        return out


@register_step("check_declarative")
class CheckDeclarative(Step):
    """SV: keep rows whose model-written statement restates the question sentence with the forward
    answer (`metamath_masking.check_declarative`); the verdict goes to `_meta.verdicts[verifier]`."""

    declarative: str = "declarative"
    dataset: Literal["gsm8k", "math"] = "gsm8k"
    verifier: str = "declarative"

    def input_columns(self) -> set[str]:
        return {"sv_sentence", "forward_answer", self.declarative}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            verdict = check_declarative(str(row["sv_sentence"]), str(row["forward_answer"]),
                                        str(row[self.declarative]), self.dataset)
            verdict.record(row, self.verifier)
            out.append(row if verdict.ok else Rejected("bad_declarative", row, verdict.evidence))
        return out


@register_step("sv_compose")
class SVCompose(Step):
    """Self-Verification question: context + the model's declarative statement + 'what is x?'."""

    declarative: str = "declarative"
    dataset: Literal["gsm8k", "math"] = "gsm8k"

    def input_columns(self) -> set[str]:
        return {"sv_context", self.declarative}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"query"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return [ctx.derive(r, {"query": sv_question(str(r["sv_context"]), str(r[self.declarative]), self.dataset)})
                for r in rows]
