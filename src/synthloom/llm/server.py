"""OpenAI-compatible HTTP server over any synthloom Model (`synthloom serve`).

    POST /v1/chat/completions   messages, temperature, top_p, max_tokens, stop, seed, n, logprobs,
                                top_logprobs, response_format {type: json_schema | json_object},
                                stream (server-sent events), stream_options {include_usage}
    POST /v1/completions        prompt scoring only: echo=true, logprobs, max_tokens 0 or 1 (the
                                legacy shape; nothing is generated), for models that can score
    GET  /v1/models             the one model this server exposes
    GET  /v1/stats              request counters (tests count model calls with it)
    GET  /health

Run as `python -m synthloom.llm.server --model embedded --port 8000`. Binds to loopback unless
told otherwise: the server has no authentication.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from synthloom.errors import SynthloomError
from synthloom.llm.base import (
    ChatRequest,
    ChatResponse,
    InvalidRequestError,
    Model,
    TextDelta,
    TextScore,
)

log = logging.getLogger("synthloom.llm.server")

_MAX_TOP_LOGPROBS = 20


@dataclass
class ServerStats:
    chat_requests: int = 0  # every POST to /v1/chat/completions, answered or not
    chat_completed: int = 0
    chat_failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    score_requests: int = 0  # POSTs to /v1/completions


def _error(status: int, message: str, err_type: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": err_type, "param": param, "code": None}}, status_code=status)


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _typed(body: dict[str, Any], key: str, kinds: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(key)
    if value is None:
        return default
    # bool is an int subclass; never accept true as a number or 1 as a bool
    if isinstance(value, bool) != (kinds is bool) or not isinstance(value, kinds):
        names = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
        raise _BadRequest(f"'{key}' must be {names}, got {type(value).__name__}", key)
    return value


def _message_content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": "..."}]
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _BadRequest("only text content parts are supported", "messages")
            parts.append(part["text"])
        return "".join(parts)
    raise _BadRequest("message content must be a string or a list of text parts", "messages")


def _schema_of(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise _BadRequest("'response_format' must be an object", "response_format")
    kind = response_format.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _BadRequest("response_format json_schema needs {'json_schema': {'schema': {...}}}", "response_format")
        return schema
    raise _BadRequest(f"unsupported response_format type {kind!r}; use text, json_object or json_schema", "response_format")


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise _BadRequest("request body is not valid JSON") from None


def _error_for(e: Exception) -> JSONResponse:
    """The OpenAI-style answer to a request that failed before anything was sent back."""
    if isinstance(e, _BadRequest):
        return _error(400, str(e), param=e.param)
    if isinstance(e, InvalidRequestError):
        return _error(400, str(e))
    return _error(500, str(e), err_type="server_error")


def parse_chat_body(body: Any) -> ChatRequest:
    """An OpenAI chat-completions body as a ChatRequest, or _BadRequest naming the field."""
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    if _typed(body, "stream", bool, False) and (body.get("logprobs") or body.get("top_logprobs")):
        raise _BadRequest("logprobs are not streamed by this server; send stream=false to get them", "logprobs")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _BadRequest("'messages' must be a non-empty list", "messages")
    messages = []
    for m in raw_messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _BadRequest("each message needs a 'role' string and 'content'", "messages")
        messages.append({"role": m["role"], "content": _message_content(m.get("content", ""))})
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    elif stop is None:
        stop = []
    elif not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise _BadRequest("'stop' must be a string or a list of strings", "stop")
    max_tokens = _typed(body, "max_completion_tokens", int, None)
    if max_tokens is None:
        max_tokens = _typed(body, "max_tokens", int, ChatRequest.__dataclass_fields__["max_tokens"].default)
    top_logprobs = _typed(body, "top_logprobs", int, 0)
    if not 0 <= top_logprobs <= _MAX_TOP_LOGPROBS:
        raise _BadRequest(f"'top_logprobs' must be between 0 and {_MAX_TOP_LOGPROBS}", "top_logprobs")
    request = ChatRequest(
        messages=messages,
        temperature=float(_typed(body, "temperature", (int, float), 1.0)),
        top_p=float(_typed(body, "top_p", (int, float), 1.0)),
        max_tokens=max_tokens,
        stop=stop,
        seed=_typed(body, "seed", int, None),
        n=_typed(body, "n", int, 1),
        logprobs=_typed(body, "logprobs", bool, False),
        top_logprobs=top_logprobs,
        json_schema=_schema_of(body.get("response_format")),
    )
    try:
        request.validate()
    except InvalidRequestError as e:
        raise _BadRequest(str(e)) from None
    return request


def parse_scoring_body(body: Any) -> str:
    """The prompt of a legacy completions body that asks only for its log-probabilities."""
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise _BadRequest("'prompt' must be one non-empty string", "prompt")
    if body.get("echo") is not True or not isinstance(body.get("logprobs"), int):
        raise _BadRequest("this server's /v1/completions only scores prompts: send echo=true and logprobs=0", "echo")
    if _typed(body, "max_tokens", int, 16) not in (0, 1):
        raise _BadRequest("this server's /v1/completions generates nothing: send max_tokens 0 or 1", "max_tokens")
    return prompt


def render_scoring(prompt: str, scored: TextScore, model_name: str) -> dict[str, Any]:
    """The legacy `text_completion` shape with the prompt's tokens, log-probabilities and offsets."""
    tokens = [t.token for t in scored.tokens]
    values: list[float | None] = [t.logprob for t in scored.tokens]
    unscored = prompt[: max(0, len(prompt) - len("".join(tokens)))]  # a first token with no context
    if unscored:
        tokens, values = [unscored, *tokens], [None, *values]
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    n = len(scored.tokens)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "text": prompt, "finish_reason": "length",
                     "logprobs": {"tokens": tokens, "token_logprobs": values, "top_logprobs": None,
                                  "text_offset": offsets}}],
        "usage": {"prompt_tokens": n, "completion_tokens": 0, "total_tokens": n},
    }


def _token_bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def render_completion(response: ChatResponse, model_name: str) -> dict[str, Any]:
    choices = []
    for i, c in enumerate(response.choices):
        logprobs = None
        if c.logprobs is not None:
            logprobs = {
                "content": [
                    {
                        "token": t.token,
                        "logprob": t.logprob,
                        "bytes": _token_bytes(t.token),
                        "top_logprobs": [{"token": tok, "logprob": lp, "bytes": _token_bytes(tok)} for tok, lp in t.top],
                    }
                    for t in c.logprobs
                ]
            }
        choices.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": c.finish_reason,
                "logprobs": logprobs,
            }
        )
    u = response.usage
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": choices,
        "usage": {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens},
    }


@dataclass
class _StreamOptions:
    include_usage: bool = False


def _stream_options(body: dict[str, Any]) -> _StreamOptions | None:
    """None unless the body asks for streaming; the stream_options it gives otherwise."""
    if not _typed(body, "stream", bool, False):
        return None
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise _BadRequest("'stream_options' must be an object", "stream_options")
    return _StreamOptions(include_usage=_typed(opts, "include_usage", bool, False))


async def _open_stream(model: Model, request: ChatRequest) -> AsyncIterator[TextDelta | ChatResponse]:
    """The model's own stream when it has one (request errors raise now, before any byte is sent);
    otherwise the whole answer, computed first, as one piece per choice."""
    stream = getattr(model, "stream", None)
    if callable(stream):
        return stream(request)
    response = (await model.chat([request]))[0]

    async def replay() -> AsyncIterator[TextDelta | ChatResponse]:
        for i, choice in enumerate(response.choices):
            yield TextDelta(i, choice.text)
        yield response

    return replay()


def _chunk(cid: str, created: int, model_name: str, choices: list[dict[str, Any]], **extra: Any) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model_name, "choices": choices}
    return f"data: {json.dumps(body | extra)}\n\n"


def create_app(model: Model, model_name: str | None = None, close_model: bool = False) -> Starlette:
    """An ASGI app serving `model`. With close_model, the app closes the model on shutdown."""
    name = model_name or getattr(model, "name", None) or model.identity
    stats = ServerStats()
    started = int(time.time())

    def count(response: ChatResponse) -> None:
        stats.chat_completed += 1
        stats.prompt_tokens += response.usage.prompt_tokens
        stats.completion_tokens += response.usage.completion_tokens

    async def sse(events: AsyncIterator[TextDelta | ChatResponse], n: int, opts: _StreamOptions) -> AsyncIterator[str]:
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def choice(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}

        yield _chunk(cid, created, name, [choice(i, {"role": "assistant", "content": ""}) for i in range(n)])
        try:
            async with contextlib.aclosing(events):  # a client that hangs up cancels the request
                async for event in events:
                    if isinstance(event, TextDelta):
                        yield _chunk(cid, created, name, [choice(event.index, {"content": event.text})])
                        continue
                    yield _chunk(cid, created, name, [choice(i, {}, c.finish_reason) for i, c in enumerate(event.choices)])
                    if opts.include_usage:
                        u = event.usage
                        usage = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                                 "total_tokens": u.total_tokens}
                        yield _chunk(cid, created, name, [], usage=usage)
                    count(event)
        except SynthloomError as e:  # the 200 is sent: report in-band, like OpenAI
            stats.chat_failed += 1
            yield f"data: {json.dumps({'error': {'message': str(e), 'type': 'server_error'}})}\n\n"
        yield "data: [DONE]\n\n"

    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        stats.chat_requests += 1
        try:
            body = await _json_body(request)
            chat_request = parse_chat_body(body)
            stream_opts = _stream_options(body)
            if stream_opts is not None:
                events = await _open_stream(model, chat_request)
                return StreamingResponse(sse(events, chat_request.n, stream_opts), media_type="text/event-stream")
            response = (await model.chat([chat_request]))[0]
        except (_BadRequest, SynthloomError) as e:
            stats.chat_failed += 1
            return _error_for(e)
        count(response)
        return JSONResponse(render_completion(response, name))

    async def completions(request: Request) -> JSONResponse:
        stats.score_requests += 1
        try:
            prompt = parse_scoring_body(await _json_body(request))
            if not getattr(model, "can_score", False):
                return _error(501, "this model cannot score prompts", err_type="not_implemented")
            scored = (await model.score([prompt]))[0]
        except (_BadRequest, SynthloomError) as e:
            return _error_for(e)
        stats.prompt_tokens += len(scored.tokens)
        return JSONResponse(render_scoring(prompt, scored, name))

    async def models(_: Request) -> JSONResponse:
        return JSONResponse(
            {"object": "list", "data": [{"id": name, "object": "model", "created": started, "owned_by": "synthloom"}]}
        )

    async def stats_view(_: Request) -> JSONResponse:
        return JSONResponse({**stats.__dict__, "model": name, "identity": model.identity})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        if close_model:
            await model.aclose()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/stats", stats_view, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.stats = stats
    return app


def serve(model: Model, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None) -> None:
    """Serve `model` until interrupted (blocking). Closes the model on shutdown."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: this server has no authentication; anyone who can reach it can use it", host)
    app = create_app(model, model_name=model_name, close_model=True)
    print(
        f"synthloom: serving {model_name or getattr(model, 'name', model.identity)} at http://{host}:{port}/v1",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m synthloom.llm.server", description="OpenAI-compatible server over a synthloom model"
    )
    parser.add_argument("--model", default="embedded", help="model spec, e.g. embedded or embedded:/path/model.gguf?n_slots=8")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-name", default=None, help="name reported by /v1/models (default: the weights file name)")
    args = parser.parse_args(argv)
    from synthloom.llm.spec import load_model

    try:
        model = load_model(args.model)
    except SynthloomError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    serve(model, host=args.host, port=args.port, model_name=args.model_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
