"""Structured (JSON) output: pull JSON out of model text, validate it, and repair it by asking again.

Models wrap JSON in prose and code fences, leave trailing commas, use single quotes, or stop
mid-object at max_tokens. `parse_json_output` accepts the first four (the lenient parse is the
`json5` library, run only on a bracket-balanced candidate) and rejects truncation with a reason,
because "completing" cut-off JSON invents data.

For backends without server-side schema support, `complete_structured` / `generate_json` put the
schema in the prompt, parse, and feed the parse or validation error back for a bounded number of
repair rounds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

import json5
import jsonschema
from jsonschema.exceptions import best_match

from synthloom.errors import ConfigError
from synthloom.llm.base import ChatRequest, ChatResponse, Choice, Model, ModelError, Usage

MAX_REASON_CHARS = 200
_MAX_CANDIDATE_STARTS = 16  # how many '{' / '[' positions to try before giving up
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


class StructuredOutputError(ModelError):
    """The model's output is not valid JSON for the schema; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- schema handling


@lru_cache(maxsize=256)
def _validator_for_text(schema_text: str) -> Any:
    schema = json.loads(schema_text)
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise ConfigError(f"invalid JSON schema at {where}: {_one_line(e.message)}") from None
    return cls(schema)


def schema_validator(schema: dict[str, Any]) -> Any:
    """A cached jsonschema validator; an invalid schema raises ConfigError with one line."""
    if not isinstance(schema, dict):
        raise ConfigError(f"JSON schema must be an object, got {type(schema).__name__}")
    try:
        text = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"JSON schema is not JSON-serialisable: {e}") from None
    return _validator_for_text(text)


def check_schema(schema: dict[str, Any]) -> None:
    schema_validator(schema)


def validation_error(value: Any, schema: dict[str, Any]) -> str | None:
    """None when `value` conforms, else a one-line reason naming the failing path."""
    err = best_match(schema_validator(schema).iter_errors(value))
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path) or "(root)"
    return _one_line(f"schema violation at {where}: {err.message}")


# --------------------------------------------------------------------------- extraction


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket matching text[start], or None when the text ends first."""
    closing = {"{": "}", "[": "]"}
    stack = [closing[text[start]]]
    quote = ""
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in "{[":
            stack.append(closing[c])
        elif c in "}]":
            if c != stack[-1]:
                return i + 1  # mismatched: hand the span to the parser, which names the error
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    return None


def _loads_lenient(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except ValueError:
        pass
    # JSON5 covers trailing commas, single-quoted strings, comments and unquoted keys, and
    # nothing that would change what a correctly quoted JSON document means.
    return json5.loads(candidate)


def _candidates(text: str) -> list[str]:
    """Texts to try, most specific first: fenced blocks, then the whole text."""
    out = []
    for match in _FENCE.finditer(text):
        lang, body = match.group(1).lower(), match.group(2).strip()
        if body and lang in ("", "json", "json5", "javascript", "js"):
            out.append(body)
    out.append(text)
    return out


def extract_json(text: str) -> Any:
    """The JSON value in model text; raises StructuredOutputError with a short reason."""
    if text is None or not text.strip():
        raise StructuredOutputError("empty output: the model returned no text")
    truncated = False
    first_error = ""
    for candidate in _candidates(text.strip()):
        try:
            return json.loads(candidate)
        except ValueError:
            pass
        starts = [m.start() for m in re.finditer(r"[{\[]", candidate)][:_MAX_CANDIDATE_STARTS]
        for start in starts:
            end = _balanced_end(candidate, start)
            if end is None:
                truncated = True
                continue
            try:
                return _loads_lenient(candidate[start:end])
            except ValueError as e:
                first_error = first_error or _one_line(str(e))
    if truncated and not first_error:
        raise StructuredOutputError(
            "truncated JSON: output ends before its brackets close (raise max_tokens)"
        )
    if first_error:
        raise StructuredOutputError(f"invalid JSON: {first_error}")
    raise StructuredOutputError("no JSON object or array found in the output")


def parse_json_output(text: str, schema: dict[str, Any] | None = None) -> Any:
    """Extract the JSON value from model text and, when a schema is given, validate it."""
    value = extract_json(text)
    if schema is not None:
        reason = validation_error(value, schema)
        if reason is not None:
            raise StructuredOutputError(reason)
    return value


# --------------------------------------------------------------------------- prompt + repair


def schema_instruction(schema: dict[str, Any]) -> str:
    return (
        "Respond with only a JSON value that conforms to this JSON schema, with no prose "
        "and no code fences:\n" + json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    )


def with_schema_instruction(request: ChatRequest, schema: dict[str, Any]) -> ChatRequest:
    """The request without server-side schema, the schema spelled out in the last user turn."""
    messages = [dict(m) for m in request.messages]
    instruction = schema_instruction(schema)
    for m in reversed(messages):
        if m.get("role") == "user":
            m["content"] = f"{m['content']}\n\n{instruction}"
            break
    else:
        messages.append({"role": "user", "content": instruction})
    return dataclasses.replace(request, messages=messages, json_schema=None)


def repair_request(request: ChatRequest, bad_text: str, reason: str,
                   schema: dict[str, Any] | None = None) -> ChatRequest:
    """One more turn: show the model its invalid answer and why, ask for corrected JSON.

    `schema` is spelled out again when the conversation does not contain it yet (server-side
    schema requests whose output still failed, e.g. a server that ignores response_format).
    """
    ask = f"That output is invalid ({reason}). Reply with only the corrected JSON."
    if schema is not None:
        ask += " " + schema_instruction(schema)
    messages = [
        *request.messages,
        {"role": "assistant", "content": bad_text},
        {"role": "user", "content": ask},
    ]
    return dataclasses.replace(request, messages=messages, n=1)


Send = Callable[[ChatRequest], Awaitable[ChatResponse]]


async def _settle_choice(send: Send, sent: ChatRequest, choice: Choice, schema: dict[str, Any],
                         repair_rounds: int, usage: Usage, native: bool,
                         ) -> tuple[Choice, str | None]:
    """Parse one choice, repairing up to `repair_rounds` times; returns (choice, failure reason)."""
    text, finish = choice.text, choice.finish_reason
    for round_no in range(repair_rounds + 1):
        if finish == "length":
            return Choice(text, "error", choice.logprobs), (
                "truncated JSON: output hit max_tokens (finish_reason=length); raise max_tokens")
        try:
            value = parse_json_output(text, schema)
        except StructuredOutputError as e:
            reason = e.reason
        else:
            return Choice(json.dumps(value, ensure_ascii=False), finish, choice.logprobs), None
        if round_no == repair_rounds:
            return Choice(text, "error", choice.logprobs), reason
        resp = await send(repair_request(sent, text, reason, schema if native else None))
        usage.add(resp.usage)
        repaired = resp.choices[0]
        text, finish, choice = repaired.text, repaired.finish_reason, repaired
    raise AssertionError("unreachable")


async def complete_structured(send: Send, request: ChatRequest, schema: dict[str, Any],
                              repair_rounds: int = 2, native: bool = False,
                              ) -> tuple[ChatResponse, list[str | None]]:
    """Answer `request` with JSON valid for `schema`, repairing invalid samples.

    `native=True` keeps `json_schema` on the request (the backend constrains decoding) and only
    repairs what still fails; otherwise the schema goes into the prompt. Returns a response with
    the request's n choices (valid ones as compact JSON text; those still invalid after the
    repair rounds keep their raw text with finish_reason "error") and one failure reason per
    choice (None = valid). Usage includes the repair rounds.
    """
    check_schema(schema)
    sent = request if native else with_schema_instruction(request, schema)
    first = await send(sent)
    usage = Usage(first.usage.prompt_tokens, first.usage.completion_tokens)
    settled = await asyncio.gather(*(
        _settle_choice(send, sent, c, schema, repair_rounds, usage, native) for c in first.choices
    ))
    choices = [c for c, _ in settled]
    reasons = [r for _, r in settled]
    return ChatResponse(choices, usage, first.model, first.cached), reasons


async def generate_json(model: Model, request: ChatRequest, schema: dict[str, Any] | None = None,
                        repair_rounds: int = 2, native: bool = False) -> Any:
    """Prompt + parse + repair for one sample; returns the parsed value.

    Raises StructuredOutputError(reason) when the output is still invalid after the repair rounds
    (the pipeline records that as a rejected row), ConfigError for an invalid schema.
    """
    schema = schema if schema is not None else request.json_schema
    if schema is None:
        raise ConfigError("generate_json needs a JSON schema (argument or request.json_schema)")
    check_schema(schema)

    async def send(r: ChatRequest) -> ChatResponse:
        return (await model.chat([r]))[0]

    single = dataclasses.replace(request, n=1, json_schema=schema if native else None)
    response, reasons = await complete_structured(send, single, schema, repair_rounds, native)
    if reasons[0] is not None:
        raise StructuredOutputError(reasons[0])
    return json.loads(response.choices[0].text)
