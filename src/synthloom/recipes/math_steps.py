"""Pipeline steps for math recipes: answer verification and MetaMath's backward questions."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.recipes.metamath_masking import backward_questions, fobar_question, sv_question, sv_rewrite_input, sv_split
from synthloom.records import Row, add_verdict
from synthloom.verify.math import verify_answer


@register_step("verify_math")
class VerifyMath(Step):
    """Keep rows whose `column` (a model's solution) reaches the gold answer in `gold`.

    The verdict (ok, detail with the extracted answer) is recorded in `_meta.verdicts[verifier]`
    on kept and rejected rows alike.
    """

    kind: ClassVar[str] = "filter"
    column: str
    gold: str = "answer"
    verifier: str = "math"

    def input_columns(self) -> set[str]:
        return {self.column, self.gold}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            verdict = verify_answer(str(row[self.column]), str(row[self.gold]))
            add_verdict(row, self.verifier, verdict["ok"], verdict["detail"])
            if verdict["ok"]:
                out.append(row)
            else:
                reason = "no_answer" if verdict["extracted"] is None else "wrong_answer"
                out.append(Rejected(reason, row, verdict["detail"]))
        return out


@register_step("backward_questions")
class BackwardQuestions(Step):
    """MetaMath's deterministic masking: one backward question per number in `question`.

    fobar: `query` = masked question + "If we know the answer ... is {answer}, what is x?".
    sv: `sv_context` and `sv_rewrite_input` for the declarative rewrite (see `sv_compose`).
    The masked number goes to `masked_value`; it is the gold answer of the backward question.
    """

    kind: ClassVar[str] = "expand"
    mode: Literal["fobar", "sv"]
    question: str = "question"
    answer: str = "answer"
    dataset: Literal["gsm8k", "math"] = "gsm8k"

    def input_columns(self) -> set[str]:
        return {self.question, self.answer}

    def output_columns(self, available: set[str]) -> set[str]:
        made = {"masked_question", "masked_value"}
        made |= {"query"} if self.mode == "fobar" else {"sv_context", "sv_rewrite_input"}
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
                cols: dict[str, Any] = {"masked_question": bq.question, "masked_value": bq.masked_value}
                if self.mode == "fobar":
                    cols["query"] = fobar_question(bq.question, str(row[self.answer]), self.dataset)
                else:
                    context, sentence = sv_split(bq.question)
                    cols["sv_context"] = context
                    cols["sv_rewrite_input"] = sv_rewrite_input(sentence, str(row[self.answer]))
                made.append(ctx.derive(row, cols))
            out.append(made)
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
