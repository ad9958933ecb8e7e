"""Built-in steps every recipe can use: filters, reshaping, sampling, exact dedup, export formats."""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any, ClassVar, Literal

from pydantic import PrivateAttr

from synthloom.errors import ConfigError
from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.pipeline.templates import PromptTemplate
from synthloom.records import META, Row


@register_step("filter_length")
class LengthFilter(Step):
    """Keep rows whose `column` has between `min` and `max` characters (or words)."""

    column: str
    min: int = 0
    max: int | None = None
    unit: Literal["chars", "words"] = "chars"

    def input_columns(self) -> set[str]:
        return {self.column}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            text = str(row.get(self.column) or "")
            size = len(text.split()) if self.unit == "words" else len(text)
            if size < self.min:
                out.append(Rejected("too_short", row, f"{size} {self.unit} < {self.min}"))
            elif self.max is not None and size > self.max:
                out.append(Rejected("too_long", row, f"{size} {self.unit} > {self.max}"))
            else:
                out.append(row)
        return out


@register_step("filter_regex")
class RegexFilter(Step):
    """Drop (or keep only) rows whose `column` matches `pattern`."""

    column: str
    pattern: str
    action: Literal["drop", "keep"] = "drop"
    reason: str = "regex"
    _re: re.Pattern | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        try:
            self._re = re.compile(self.pattern, re.IGNORECASE | re.DOTALL)
        except re.error as e:
            raise ConfigError(f"step {self.name!r}: invalid regex {self.pattern!r}: {e}") from None

    def input_columns(self) -> set[str]:
        return {self.column}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            hit = bool(self._re.search(str(row.get(self.column) or "")))
            drop = hit if self.action == "drop" else not hit
            out.append(Rejected(self.reason, row, f"pattern {self.pattern!r}") if drop else row)
        return out


@register_step("rename")
class Rename(Step):
    columns: dict[str, str]

    def input_columns(self) -> set[str]:
        return set(self.columns)

    def output_columns(self, available: set[str]) -> set[str]:
        return (available - set(self.columns)) | set(self.columns.values())

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return [{self.columns.get(k, k): v for k, v in row.items()} for row in rows]


@register_step("select")
class Select(Step):
    columns: list[str]

    def input_columns(self) -> set[str]:
        return set(self.columns)

    def output_columns(self, available: set[str]) -> set[str]:
        return set(self.columns)

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        keep = [*self.columns, META]
        return [{k: row[k] for k in keep if k in row} for row in rows]


@register_step("template")
class TemplateColumn(Step):
    """Render a Jinja2 template into a new column (glue without a model call)."""

    output: str
    template: str
    _tpl: PromptTemplate | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        self._tpl = PromptTemplate(self.template)

    def input_columns(self) -> set[str]:
        return set(self._tpl.variables)

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {self.output}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return [{**row, self.output: self._tpl.render(row)} for row in rows]


def _normalise(text: str) -> str:
    from synthloom.text import normalize

    return normalize(text)


@register_step("dedup_exact")
class ExactDedup(Step):
    """Keep the first row of each group with the same normalised `columns` content."""

    is_global: ClassVar[bool] = True
    columns: list[str]

    def input_columns(self) -> set[str]:
        return set(self.columns)

    def row_key(self, row: Row) -> str:
        """The grouping key (also used by the Ray executor's hash-shuffle version of this step)."""
        return hashlib.sha256("\x1f".join(_normalise(str(row.get(c, ""))) for c in self.columns).encode()).hexdigest()

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        seen: dict[str, str] = {}
        out: list[Any] = []
        for row in rows:
            key = self.row_key(row)
            first = seen.get(key)
            if first is None:
                seen[key] = row.get(META, {}).get("id", "")
                out.append(row)
            else:
                out.append(Rejected("duplicate", row, f"same normalised text as {first}"))
        return out


@register_step("limit")
class Limit(Step):
    """Keep the first `n` rows (in input order)."""

    is_global: ClassVar[bool] = True
    n: int

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return rows[: self.n] + [Rejected("over_limit", r, f"limit {self.n}") for r in rows[self.n:]]


@register_step("sample")
class Sample(Step):
    """Keep a seeded random sample of `n` rows, in their original order."""

    is_global: ClassVar[bool] = True
    n: int

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        rng = random.Random(f"{ctx.run_seed}:{ctx.step_name}")
        chosen = set(rng.sample(range(len(rows)), min(self.n, len(rows))))
        return [r if i in chosen else Rejected("not_sampled", r) for i, r in enumerate(rows)]


@register_step("format_as")
class FormatAs(Step):
    """Reshape rows into a training format.

    sft: {"messages": [system?, user, assistant]}; alpaca: {instruction, input, output};
    sharegpt: {"conversations": [{"from": "human"|"gpt", "value"}]};
    dpo: {prompt, chosen, rejected}. `fields` maps the format's roles to this dataset's columns.
    """

    format: Literal["sft", "alpaca", "sharegpt", "dpo"]
    fields: dict[str, str] = {}
    keep_columns: bool = False

    _DEFAULTS: ClassVar[dict[str, dict[str, str]]] = {
        "sft": {"prompt": "instruction", "response": "output"},
        "alpaca": {"instruction": "instruction", "input": "input", "output": "output"},
        "sharegpt": {"prompt": "instruction", "response": "output"},
        "dpo": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
    }
    _OPTIONAL: ClassVar[set[str]] = {"input", "system"}

    def mapping(self) -> dict[str, str]:
        return {**self._DEFAULTS[self.format], **self.fields}

    def input_columns(self) -> set[str]:
        return {c for role, c in self.mapping().items() if role not in self._OPTIONAL}

    def output_columns(self, available: set[str]) -> set[str]:
        made = {"sft": {"messages"}, "alpaca": {"instruction", "input", "output"},
                "sharegpt": {"conversations"}, "dpo": {"prompt", "chosen", "rejected"}}[self.format]
        return (available | made) if self.keep_columns else made

    def _one(self, row: Row) -> Row:
        m = self.mapping()
        get = lambda role: row.get(m.get(role, ""), "") or ""  # noqa: E731
        if self.format == "sft":
            msgs = [{"role": "system", "content": get("system")}] if get("system") else []
            prompt = get("prompt") + (("\n\n" + get("input")) if get("input") else "")
            out = {"messages": msgs + [{"role": "user", "content": prompt},
                                       {"role": "assistant", "content": get("response")}]}
        elif self.format == "alpaca":
            out = {"instruction": get("instruction"), "input": get("input"), "output": get("output")}
        elif self.format == "sharegpt":
            out = {"conversations": [{"from": "human", "value": get("prompt")},
                                     {"from": "gpt", "value": get("response")}]}
        else:
            out = {"prompt": get("prompt"), "chosen": get("chosen"), "rejected": get("rejected")}
        base = {k: v for k, v in row.items() if self.keep_columns or k == META}
        return {**base, **out}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return [self._one(r) for r in rows]
