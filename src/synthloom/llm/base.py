"""The model contract every backend implements: requests, responses, usage, and the Model protocol.

Requests and responses are plain dataclasses (cheap to build by the tens of thousands) and are
JSON-round-trippable so the request cache can store them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from synthloom.errors import SynthloomError

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}


@dataclass(slots=True)
class ChatRequest:
    """One chat request with every sampling parameter that changes the answer.

    `n` asks for n completions of the same prompt. `seed` makes sampling reproducible on
    backends that honour it; synthloom derives it per (run seed, record, step, sample).
    `json_schema` constrains the output (server-side grammar where the backend can,
    parse-and-repair otherwise). `choice_labels` asks for exactly one of a few labels (a verdict):
    the backend constrains generation so the label is the whole answer (see llm/constrained.py).
    """

    messages: list[Message]
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    json_schema: dict[str, Any] | None = None
    choice_labels: list[str] | None = None

    def canonical(self) -> dict[str, Any]:
        """Every field that can change the output, in a stable form (used for cache keys)."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        if self.choice_labels is None:  # keeps the keys of requests cached before labels existed
            del d["choice_labels"]
        return d

    def validate(self) -> None:
        if not self.messages:
            raise InvalidRequestError("request has no messages")
        for m in self.messages:
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise InvalidRequestError(f"malformed message {m!r}: need 'role' and 'content'")
        if self.n < 1:
            raise InvalidRequestError(f"n must be >= 1, got {self.n}")
        if self.max_tokens < 1:
            raise InvalidRequestError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0.0 <= self.top_p <= 1.0:
            raise InvalidRequestError(f"top_p must be in [0, 1], got {self.top_p}")
        if self.temperature < 0:
            raise InvalidRequestError(f"temperature must be >= 0, got {self.temperature}")
        if self.choice_labels is not None:
            labels = [str(x).strip() for x in self.choice_labels]
            if len(labels) < 2 or not all(labels) or len(set(labels)) != len(labels):
                raise InvalidRequestError("choice_labels needs two or more distinct non-empty labels, "
                                          f"got {self.choice_labels!r}")
            if self.json_schema is not None:
                raise InvalidRequestError("a request takes json_schema or choice_labels, not both")


@dataclass(slots=True)
class TokenLogprob:
    """Log-probability of one generated token, with the top alternatives when asked for."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass(slots=True)
class Choice:
    text: str
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True)
class TextDelta:
    """A streamed piece of one completion's text (`index` = sample index within the request)."""

    index: int
    text: str


@dataclass(slots=True)
class TextScore:
    """A text's tokens with their log-probabilities under a model, each given all before it."""

    tokens: list[TokenLogprob]
    cached: bool = False  # True when answered by the request cache (cost nothing)

    @property
    def logprob(self) -> float:
        return sum(t.logprob for t in self.tokens)

    @property
    def perplexity(self) -> float:
        """exp(-mean token log-probability); lower = more expected by the model."""
        return math.exp(-self.logprob / len(self.tokens)) if self.tokens else float("nan")


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: "Usage") -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@dataclass(slots=True)
class ChatResponse:
    choices: list[Choice]
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    cached: bool = False  # True when answered by the request cache (cost nothing)

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ChatResponse":
        choices = []
        for c in d["choices"]:
            lps = c.get("logprobs")
            if lps is not None:
                lps = [
                    TokenLogprob(t["token"], t["logprob"], [tuple(x) for x in t.get("top", [])])
                    for t in lps
                ]
            choices.append(Choice(c["text"], c.get("finish_reason", "stop"), lps))
        return cls(choices, Usage(**d.get("usage", {})), d.get("model", ""), d.get("cached", False))


class ModelError(SynthloomError):
    """A model call failed for good (after the retry policy was exhausted)."""


class InvalidRequestError(ModelError):
    """The request itself is wrong (bad schema, prompt longer than the context, ...): fix input."""

    exit_code = 2


@runtime_checkable
class Model(Protocol):
    """What every backend provides.

    `identity` names the exact model that answers (GGUF file hash, or server URL-independent
    model name) and is part of every cache key. `chat` takes many requests at once and returns
    one response per request, in order; a request that fails for good raises ModelError (use
    `chat_settled` to get per-request exceptions instead).
    """

    identity: str

    async def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ScoringModel(Model, Protocol):
    """A model that can also score text by teacher forcing: each token's log-probability given all
    before it (perplexity filters, back-translation's LM term). `can_score` is False on a backend
    configured without it (an OpenAI-compatible server lacking /completions echo)."""

    can_score: bool

    async def score(self, texts: Sequence[str], prefixes: Sequence[str] | None = None) -> list[TextScore]: ...


def can_score(model: Any) -> bool:
    """Whether `model` scores text (a ScoringModel whose backend has it switched on)."""
    return isinstance(model, ScoringModel) and bool(getattr(model, "can_score", False))


async def chat_settled(model: Model, requests: list[ChatRequest]) -> list[ChatResponse | BaseException]:
    """Run each request independently so one failure does not discard the others' answers."""

    async def one(r: ChatRequest) -> ChatResponse | BaseException:
        try:
            return (await model.chat([r]))[0]
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - reported per request
            return e

    return list(await asyncio.gather(*(one(r) for r in requests)))


def chat_sync(model: Model, requests: list[ChatRequest] | ChatRequest) -> list[ChatResponse]:
    """Convenience for scripts and notebooks without an event loop."""
    reqs = [requests] if isinstance(requests, ChatRequest) else requests
    return asyncio.run(model.chat(reqs))


def request_key(identity: str, request: ChatRequest, sample_index: int = 0) -> str:
    """sha256 of the canonical request: model identity, messages, all sampling params, schema."""
    payload = {"model": identity, "request": request.canonical(), "sample": sample_index}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
