"""The model step: render a prompt per row, call a named model, parse, record provenance."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import PrivateAttr, model_validator

from synthloom.errors import ConfigError
from synthloom.llm.base import ChatRequest, ChatResponse
from synthloom.pipeline.calls import CallLog, PerRowModelStep, ask
from synthloom.pipeline.step import Rejected, StepContext, register_step
from synthloom.pipeline.templates import PromptTemplate
from synthloom.records import Row, sha256_hex


class ParseError(ValueError):
    """Model output that could not be turned into the declared columns."""


@register_step("model")
class ModelStep(PerRowModelStep):
    """Ask a model once per row (or `n` times) and put the parsed answer in `output`.

    parse: "text" (stripped text), "json" (parsed object; with `schema` the backend constrains
    generation and the result is validated; `spread: true` puts each key in its own column) or
    "regex" (`pattern`; named groups become columns, otherwise group 1 goes to `output`).
    With n > 1, `samples: expand` makes one row per completion, `samples: list` one list column.
    """


    prompt: str
    system: str | None = None
    examples: list[dict[str, str]] = []  # few-shot turns ({role, content}) sent before the prompt
    output: str = "text"
    model: str = "generator"
    parse: Literal["text", "json", "regex"] = "text"
    pattern: str | None = None
    schema_: dict[str, Any] | None = None
    spread: bool = False
    n: int = 1
    samples: Literal["expand", "list"] = "expand"
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    stop: list[str] = []
    logprobs: bool = False
    top_logprobs: int = 0
    allow_truncated: bool = False  # keep outputs that stopped at max_tokens (finish reason "length")
    template_dirs: list[str] = []

    _prompt: PromptTemplate | None = PrivateAttr(default=None)
    _system: PromptTemplate | None = PrivateAttr(default=None)
    _regex: re.Pattern | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _schema_key(cls, data: Any) -> Any:
        # YAML says `schema:`; the field cannot be called that (pydantic's BaseModel.schema)
        if isinstance(data, dict) and "schema" in data:
            data = {**data, "schema_": data["schema"]}
            del data["schema"]
        return data

    def model_post_init(self, context: Any) -> None:
        dirs = tuple(self.template_dirs)
        self._prompt = PromptTemplate(self.prompt, dirs)
        self._system = PromptTemplate(self.system, dirs) if self.system else None
        if self.parse == "regex":
            if not self.pattern:
                raise ConfigError(f"step {self.name!r}: parse: regex needs a 'pattern'")
            try:
                self._regex = re.compile(self.pattern, re.DOTALL)
            except re.error as e:
                raise ConfigError(f"step {self.name!r}: invalid regex {self.pattern!r}: {e}") from None
        if self.n < 1:
            raise ConfigError(f"step {self.name!r}: n must be >= 1")
        for m in self.examples:
            if set(m) != {"role", "content"} or m["role"] not in ("user", "assistant"):
                raise ConfigError(f"step {self.name!r}: each example needs role user|assistant and content")

    # --- columns ----------------------------------------------------------------------
    def input_columns(self) -> set[str]:
        cols = set(self._prompt.variables)
        if self._system:
            cols |= self._system.variables
        return cols

    def model_roles(self) -> set[str]:
        return {self.model}

    def produced_columns(self) -> set[str]:
        if self.parse == "json" and self.spread and self.schema_:
            return set(self.schema_.get("properties", {}))
        if self.parse == "regex" and self._regex is not None and self._regex.groupindex:
            return set(self._regex.groupindex)
        return {self.output}

    def output_columns(self, available: set[str]) -> set[str]:
        extra = set()
        if self.n > 1 and self.samples == "expand":
            extra.add("sample_index")
        if self.logprobs:
            extra.add(f"{self.output}_logprobs")
        return available | self.produced_columns() | extra

    @property
    def prompt_sha(self) -> str:
        src = self._prompt.source + "\x1f" + (self._system.source if self._system else "")
        src += "\x1f" + "".join(f"{m['role']}:{m['content']}" for m in self.examples)
        return sha256_hex(src)[:16]

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg["schema"] = cfg.pop("schema_", None)
        return cfg

    # --- work -------------------------------------------------------------------------
    def build_request(self, row: Row, ctx: StepContext) -> ChatRequest:
        messages = []
        if self._system:
            messages.append({"role": "system", "content": self._system.render(row)})
        messages.extend({"role": m["role"], "content": m["content"]} for m in self.examples)
        messages.append({"role": "user", "content": self._prompt.render(row)})
        return ChatRequest(
            messages=messages, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens, stop=list(self.stop), seed=ctx.seed_for(row), n=self.n,
            logprobs=self.logprobs, top_logprobs=self.top_logprobs,
            json_schema=self.schema_ if self.parse == "json" else None,
        )

    def parse_text(self, text: str) -> Row:
        if self.parse == "text":
            out = text.strip()
            if not out:
                raise ParseError("empty output")
            return {self.output: out}
        if self.parse == "regex":
            assert self._regex is not None
            m = self._regex.search(text)
            if not m:
                raise ParseError(f"no match for pattern {self.pattern!r}")
            if self._regex.groupindex:
                return {k: (v.strip() if isinstance(v, str) else v) for k, v in m.groupdict().items()}
            return {self.output: (m.group(1) if m.groups() else m.group(0)).strip()}
        from synthloom.llm.structured import StructuredOutputError, parse_json_output

        try:
            obj = parse_json_output(text, self.schema_)
        except StructuredOutputError as e:
            raise ParseError(str(e)) from None
        if self.spread and isinstance(obj, dict):
            return dict(obj)
        return {self.output: obj}

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        ctx.model(self.model)  # a missing role is a config error before any request
        return await super().process(rows, ctx)

    async def one(self, row: Row, ctx: StepContext) -> Any:
        request = self.build_request(row, ctx)
        log = CallLog()
        response: ChatResponse = await ask(ctx, self.model, request, log, self.name)
        params = {"temperature": self.temperature, "top_p": self.top_p,
                  "max_tokens": self.max_tokens, "n": self.n}
        meta = log.meta(self.prompt_sha, params)  # model, prompt hash, params, seed, usage, synthetic
        raw_by_sample = meta.pop("raw")
        outcomes: list[Row | Rejected] = []
        parsed_list: list[Any] = []
        for i, choice in enumerate(response.choices):
            # an output cut off at max_tokens is unfinished (a half solution, a clipped answer):
            # never data unless the step says truncation is harmless for it
            if choice.finish_reason == "length" and not self.allow_truncated:
                outcomes.append(Rejected("truncated", row, f"hit max_tokens={self.max_tokens}; "
                                                          f"output ends {choice.text[-80:]!r}"))
                continue
            try:
                parsed = self.parse_text(choice.text)
            except ParseError as e:
                outcomes.append(Rejected("parse_error", row, f"{e}; output: {choice.text[:200]!r}"))
                continue
            if choice.logprobs is not None:
                parsed.setdefault(f"{self.output}_logprobs",
                                  [[t.token, t.logprob, [list(x) for x in t.top]] for t in choice.logprobs])
            if self.samples == "list" and self.n > 1:
                parsed_list.append(parsed.get(self.output, parsed))
                continue
            key = self.name if self.n == 1 else f"{self.name}#{i}"
            raw = {key: raw_by_sample[key]}
            outcomes.append(ctx.derive(row, {**parsed, "sample_index": i} if self.n > 1 else parsed,
                                       raw=raw, **meta))
        if self.samples == "list" and self.n > 1:
            # one row in, one outcome out: the usable samples as a list, the others counted in _meta
            if not parsed_list:
                reasons = sorted({r.reason for r in outcomes})
                return Rejected("+".join(reasons), row, "; ".join(r.detail for r in outcomes)[:500])
            dropped: dict[str, int] = {}
            for r in outcomes:
                dropped[r.reason] = dropped.get(r.reason, 0) + 1
            return ctx.derive(row, {self.output: parsed_list}, raw=raw_by_sample,
                              **({"dropped_samples": dropped} if dropped else {}), **meta)
        return outcomes
