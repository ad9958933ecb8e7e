"""Small helpers shared by the evaluators: prompt rendering, seeded requests, settled batches."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from synthloom.llm.base import ChatRequest, ChatResponse, Model, chat_settled
from synthloom.pipeline.templates import PromptTemplate


@lru_cache(maxsize=64)
def template(name: str) -> PromptTemplate:
    """A compiled package template (`eval_*.j2`) or inline template text."""
    return PromptTemplate(name)


def render(name: str, variables: Mapping[str, Any]) -> str:
    return template(name).render(dict(variables))


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed from any values (stable across processes, unlike hash())."""
    blob = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


def user_request(prompt: str, *, system: str | None = None, **params: Any) -> ChatRequest:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return ChatRequest(messages=messages, **params)


async def ask_all(model: Model, requests: list[ChatRequest]) -> list[ChatResponse | BaseException]:
    """All requests at once (the backend batches them); a failed request is returned, not raised."""
    if not requests:
        return []
    return await chat_settled(model, requests)
