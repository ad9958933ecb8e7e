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

One client must not be able to make it unresponsive (ServerLimits): bodies above a size limit get
413 before they are read, at most `max_queue` generation requests are waiting or running at once
(more get 503 with Retry-After), a request whose client hangs up is cancelled in the model (its
engine slots are freed on the next step), and the first SIGINT/SIGTERM closes the model so
in-flight requests end at once (503 / an in-band stream error) and the process exits in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
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
# JSON bodies above this are parsed on a worker thread so the event loop keeps answering
_PARSE_OFF_LOOP_BYTES = 1 << 16
T = TypeVar("T")


@dataclass(frozen=True)
class ServerLimits:
    """What one client may ask of the server (see the module docstring)."""

    max_body_bytes: int = 4 << 20
    max_queue: int = 256  # generation/scoring requests waiting or running at once
    shutdown_grace_s: float = 3.0  # after the first signal, how long in-flight responses may take

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or self.max_queue < 1 or self.shutdown_grace_s < 0:
            raise ValueError("max_body_bytes and max_queue must be >= 1 and shutdown_grace_s >= 0")


@dataclass
class ServerStats:
    chat_requests: int = 0  # every POST to /v1/chat/completions, answered or not
    chat_completed: int = 0
    chat_failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    score_requests: int = 0  # POSTs to /v1/completions
    rejected_too_large: int = 0  # 413
    rejected_busy: int = 0  # 503: the queue was full
    cancelled: int = 0  # the client hung up before its answer was ready
    in_flight: int = 0  # generation/scoring requests admitted and not yet answered


def _error(status: int, message: str, err_type: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": err_type, "param": param, "code": None}}, status_code=status)


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class _TooLarge(Exception):
    pass


class _Abandoned(Exception):
    """The request's work was cancelled: its client left, or the server is shutting down."""

    def __init__(self, shutting_down: bool) -> None:
        super().__init__("server is shutting down" if shutting_down else "client disconnected")
        self.shutting_down = shutting_down


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


async def _json_body(request: Request, limit: int) -> Any:
    """The parsed body, or _TooLarge as soon as it is known to exceed `limit` bytes: from the
    Content-Length header before anything is read, else while reading a chunked body. The unread
    rest is discarded by the HTTP server once the 413 has been sent."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        return await asyncio.to_thread(json.loads, raw) if size > _PARSE_OFF_LOOP_BYTES else json.loads(raw)
    except ValueError:
        raise _BadRequest("request body is not valid JSON") from None


async def _disconnected(request: Request) -> None:
    """Return when the client hangs up (call only once the body has been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_abandoned(request: Request, work: Awaitable[T], stopping: asyncio.Event) -> T:
    """`work`'s result, or _Abandoned as soon as the client disconnects or the server starts
    shutting down; either way the work is cancelled, which frees its engine slots at once."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, gone, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise _Abandoned(shutting_down=stop.done())
    finally:
        for t in (task, gone, stop):
            t.cancel()


def _error_for(e: Exception) -> JSONResponse:
    """The OpenAI-style answer to a request that failed before anything was sent back."""
    if isinstance(e, _BadRequest):
        return _error(400, str(e), param=e.param)
    if isinstance(e, _Abandoned):
        return _error(503, str(e), err_type="server_error")
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
    opener = getattr(model, "open_stream", None)  # prepares the request off the event loop
    if callable(opener):
        return await opener(request)
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


def create_app(
    model: Model, model_name: str | None = None, close_model: bool = False, limits: ServerLimits | None = None
) -> Starlette:
    """An ASGI app serving `model`. With close_model, the app closes the model on shutdown.
    `app.state.begin_shutdown()` (a coroutine) ends in-flight work now; `serve` calls it on the
    first signal."""
    name = model_name or getattr(model, "name", None) or model.identity
    limits = limits or ServerLimits()
    stats = ServerStats()
    started = int(time.time())
    stopping = asyncio.Event()
    latency = _Latency()

    def count(response: ChatResponse) -> None:
        stats.chat_completed += 1
        stats.prompt_tokens += response.usage.prompt_tokens
        stats.completion_tokens += response.usage.completion_tokens

    def refused() -> JSONResponse | None:
        """A 503 when the queue is full or the server is stopping, else None (and the request is
        admitted: the caller must `release()` it)."""
        if stopping.is_set():
            return _error(503, "server is shutting down", err_type="server_error")
        if stats.in_flight >= limits.max_queue:
            stats.rejected_busy += 1
            retry = str(latency.retry_after(stats.in_flight))
            return JSONResponse(
                {"error": {"message": f"server busy: {stats.in_flight} requests queued (max_queue={limits.max_queue}); "
                           f"retry after {retry} s", "type": "server_error", "param": None, "code": None}},
                status_code=503, headers={"Retry-After": retry},
            )
        stats.in_flight += 1
        return None

    def release(since: float) -> None:
        stats.in_flight -= 1
        latency.add(time.monotonic() - since)

    def too_large() -> JSONResponse:
        stats.rejected_too_large += 1
        return _error(413, f"request body exceeds the server's limit of {limits.max_body_bytes} bytes "
                           "(synthloom serve --max-body-mb)")

    async def sse(events: AsyncIterator[TextDelta | ChatResponse], n: int, opts: _StreamOptions,
                  outcome: dict[str, bool]) -> AsyncIterator[str]:
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def choice(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}

        yield _chunk(cid, created, name, [choice(i, {"role": "assistant", "content": ""}) for i in range(n)])
        try:
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
            message = "server is shutting down" if stopping.is_set() else str(e)
            yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"
        yield "data: [DONE]\n\n"
        outcome["finished"] = True

    def streamed(events: AsyncIterator[TextDelta | ChatResponse], n: int, opts: _StreamOptions,
                 since: float) -> StreamingResponse:
        outcome = {"finished": False}

        async def closed() -> None:
            # also when the client left before the first byte (the generator never ran): closing
            # `events` is what cancels the request in the model
            await events.aclose()  # type: ignore[attr-defined]
            stats.cancelled += not outcome["finished"]
            release(since)

        return _ClosingStream(sse(events, n, opts, outcome), closed, media_type="text/event-stream")

    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        stats.chat_requests += 1
        busy = refused()
        if busy is not None:
            return busy
        since, streaming = time.monotonic(), False
        try:
            body = await _json_body(request, limits.max_body_bytes)
            chat_request = parse_chat_body(body)
            stream_opts = _stream_options(body)
            if stream_opts is not None:
                events = await _unless_abandoned(request, _open_stream(model, chat_request), stopping)
                streaming = True  # from here on the stream releases the request
                return streamed(events, chat_request.n, stream_opts, since)
            response = (await _unless_abandoned(request, model.chat([chat_request]), stopping))[0]
        except _TooLarge:
            return too_large()
        except (_BadRequest, SynthloomError, _Abandoned) as e:
            stats.chat_failed += 1
            stats.cancelled += isinstance(e, _Abandoned) and not e.shutting_down
            return _error_for(e)
        finally:
            if not streaming:
                release(since)
        count(response)
        return JSONResponse(render_completion(response, name))

    async def completions(request: Request) -> JSONResponse:
        stats.score_requests += 1
        busy = refused()
        if busy is not None:
            return busy
        since = time.monotonic()
        try:
            prompt = parse_scoring_body(await _json_body(request, limits.max_body_bytes))
            if not getattr(model, "can_score", False):
                return _error(501, "this model cannot score prompts", err_type="not_implemented")
            scored = (await _unless_abandoned(request, model.score([prompt]), stopping))[0]
        except _TooLarge:
            return too_large()
        except (_BadRequest, SynthloomError, _Abandoned) as e:
            return _error_for(e)
        finally:
            release(since)
        stats.prompt_tokens += len(scored.tokens)
        return JSONResponse(render_scoring(prompt, scored, name))

    async def models(_: Request) -> JSONResponse:
        return JSONResponse(
            {"object": "list", "data": [{"id": name, "object": "model", "created": started, "owned_by": "synthloom"}]}
        )

    async def stats_view(_: Request) -> JSONResponse:
        engine = getattr(getattr(model, "engine", None), "stats", None)  # the embedded engine's counters
        extra = {"engine": dict(engine.__dict__)} if hasattr(engine, "__dict__") else {}
        return JSONResponse({**stats.__dict__, "model": name, "identity": model.identity, **extra})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    closing: list[asyncio.Task[None]] = []

    async def begin_shutdown() -> None:
        """Refuse new work and end in-flight work now: waiting handlers answer 503, and closing
        the model fails what it is still computing (streams end with an in-band error)."""
        if not stopping.is_set():
            stopping.set()
            if close_model:
                closing.append(asyncio.ensure_future(model.aclose()))
        await asyncio.gather(*closing)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        if close_model:
            await begin_shutdown()

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
    app.state.begin_shutdown = begin_shutdown
    return app


class _ClosingStream(StreamingResponse):
    """A streaming response that runs `on_close` however it ends (finished, client gone, error)."""

    def __init__(self, content: AsyncIterator[str], on_close: Any, media_type: str) -> None:
        super().__init__(content, media_type=media_type)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


class _Latency:
    """Recent request durations, for a Retry-After that means something."""

    def __init__(self) -> None:
        self.mean = 1.0

    def add(self, seconds: float) -> None:
        self.mean += 0.1 * (seconds - self.mean)  # exponential moving average

    def retry_after(self, queued: int) -> int:
        # about when one queued request has finished; clients spread out with their own jitter
        return max(1, min(30, math.ceil(self.mean * min(queued, 8) / 8)))


def serve(model: Model, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
          limits: ServerLimits | None = None) -> None:
    """Serve `model` until SIGINT/SIGTERM (blocking). Closes the model on shutdown."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: this server has no authentication; anyone who can reach it can use it", host)
    limits = limits or ServerLimits()
    app = create_app(model, model_name=model_name, close_model=True, limits=limits)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=max(1, math.ceil(limits.shutdown_grace_s)))
    server = _Server(config, app.state.begin_shutdown)
    print(
        f"synthloom: serving {model_name or getattr(model, 'name', model.identity)} at http://{host}:{port}/v1",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    print("synthloom: server stopped", file=sys.stderr, flush=True)


class _Server(uvicorn.Server):
    """uvicorn's server, with the first signal also ending the app's in-flight work at once
    (uvicorn alone waits for every open response, i.e. for the model to finish them)."""

    def __init__(self, config: uvicorn.Config, begin_shutdown: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._begin_shutdown = begin_shutdown

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal it handled once it has stopped, from inside the event loop,
        # which prints tracebacks; the shutdown was already done, so return normally instead
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.should_exit:
            # a second signal: leave now. uvicorn's forced exit skips the app's shutdown and
            # prints tracebacks for the tasks it abandons; the model holds nothing to flush
            print("synthloom: forced exit", file=sys.stderr, flush=True)
            os._exit(128 + sig)
        super().handle_exit(sig, frame)
        with contextlib.suppress(RuntimeError):  # no running loop: nothing is in flight
            loop = asyncio.get_running_loop()
            loop.call_soon_threadsafe(lambda: loop.create_task(self._begin_shutdown()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m synthloom.llm.server", description="OpenAI-compatible server over a synthloom model"
    )
    parser.add_argument("--model", default="embedded", help="model spec, e.g. embedded or embedded:/path/model.gguf?n_slots=8")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-name", default=None, help="name reported by /v1/models (default: the weights file name)")
    add_limit_options(parser.add_argument)
    args = parser.parse_args(argv)
    from synthloom.llm.spec import load_model

    try:
        limits = limits_from(args.max_body_mb, args.max_queue)
        model = load_model(args.model)
    except SynthloomError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    serve(model, host=args.host, port=args.port, model_name=args.model_name, limits=limits)
    return 0


def add_limit_options(add: Any) -> None:
    defaults = ServerLimits()
    add("--max-body-mb", type=float, default=defaults.max_body_bytes / (1 << 20),
        help="largest request body accepted, in MiB (larger: 413)")
    add("--max-queue", type=int, default=defaults.max_queue,
        help="requests waiting or running at once (more: 503 with Retry-After)")


def limits_from(max_body_mb: float, max_queue: int) -> ServerLimits:
    """ServerLimits from command-line values, or a one-line BadInputError."""
    from synthloom.errors import BadInputError

    if not max_body_mb >= 0.001 or max_queue < 1:
        raise BadInputError(f"--max-body-mb must be >= 0.001 (got {max_body_mb}) and --max-queue >= 1 (got {max_queue})")
    return ServerLimits(max_body_bytes=int(max_body_mb * (1 << 20)), max_queue=max_queue)


if __name__ == "__main__":
    sys.exit(main())
