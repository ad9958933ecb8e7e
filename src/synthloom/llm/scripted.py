"""A deterministic fake model for unit-testing parsing and control flow elsewhere in the project.

Not a substitute for the real backends in feature tests: it exercises how code reacts to given
model text (malformed JSON, refusals, n samples), not whether a model produces it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from synthloom.llm.base import ChatRequest, ChatResponse, Choice, TokenLogprob, Usage

Script = list[str] | Callable[[ChatRequest], str | list[str]]


class ScriptedModel:
    """Answers from a list (taken in order, cycling) or a function of the request.

    A function may return one string or a list: the list is used as the n choices (cycled when
    shorter than n); a single string is repeated n times. `calls` counts requests answered and
    `requests` keeps them for assertions. With `request.logprobs` each whitespace-separated word
    gets a fake, deterministic log-probability (and `top_logprobs` alternatives). A text of more
    space-separated words than the request's `max_tokens` is cut there with finish reason "length".
    """

    def __init__(self, responses: Script, identity: str = "scripted", delay: float = 0.0) -> None:
        if isinstance(responses, list) and not responses:
            raise ValueError("ScriptedModel needs at least one response")
        self.responses = responses
        self.identity = identity
        self.delay = delay
        self.calls = 0
        self.requests: list[ChatRequest] = []
        self._next = 0

    def _texts_for(self, request: ChatRequest) -> list[str]:
        if callable(self.responses):
            out = self.responses(request)
            texts = [out] * request.n if isinstance(out, str) else list(out)
            if not texts:
                raise ValueError("ScriptedModel function returned no responses")
            return [texts[i % len(texts)] for i in range(request.n)]
        texts = []
        for _ in range(request.n):
            texts.append(self.responses[self._next % len(self.responses)])
            self._next += 1
        return texts

    async def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        out = []
        for request in requests:
            request.validate()
            self.calls += 1
            self.requests.append(request)
            if self.delay:
                await asyncio.sleep(self.delay)
            texts = self._texts_for(request)
            prompt_tokens = sum(len(m["content"].split()) for m in request.messages)
            # like a real backend, a text longer than max_tokens words is cut there (finish "length")
            texts, finishes = zip(*(_budget(t, request.max_tokens) for t in texts))
            choices = [Choice(t, f, _fake_logprobs(t, request.top_logprobs)
                              if request.logprobs else None) for t, f in zip(texts, finishes)]
            completion_tokens = sum(len(t.split()) for t in texts)
            out.append(ChatResponse(choices, Usage(prompt_tokens, completion_tokens), self.identity))
        return out

    async def aclose(self) -> None:
        return None


def _budget(text: str, max_tokens: int) -> tuple[str, str]:
    words = text.split(" ")
    if len(words) <= max_tokens:
        return text, "stop"
    return " ".join(words[:max_tokens]), "length"


def _fake_logprobs(text: str, top: int) -> list[TokenLogprob]:
    result = []
    for i, word in enumerate(text.split()):
        lp = -0.1 * (1 + i % 5)
        alternatives = [(word, lp)] + [(f"{word}~{k}", lp - k) for k in range(1, top)]
        result.append(TokenLogprob(word, lp, alternatives[:top] if top else []))
    return result
