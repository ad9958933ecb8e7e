"""A fault-injecting OpenAI-compatible chat server for tests (aiohttp.web in a background thread).

Faults are scripted per request through the last user message: a message containing
`fault:429@0.05,500,ok` gets a 429 with Retry-After 0.05 s on its first send, a 500 on its second
and a normal answer from the third on. Actions:

    ok          a normal completion           429[@s]   rate limited (Retry-After s)
    500, 502    server error                  503[@s]   overloaded (Retry-After s)
    malformed   200 with a non-JSON body      empty     200 with "choices": []
    stall       sleeps `stall_s` before answering (the client should time out)
    reset       drops the TCP connection without an answer
    400, 401, 404   the corresponding client error

The last action repeats for further sends. Every send is counted per request fingerprint
(messages + seed + n) so tests can check how often each request reached the server.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

_FAULT = re.compile(r"fault:([\w@.,]+)")


def fingerprint(payload: dict[str, Any]) -> str:
    return json.dumps([payload.get("messages"), payload.get("seed"), payload.get("n", 1)],
                      sort_keys=True)


def free_port() -> int:
    """A port nothing listens on (for dead-URL tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeOpenAIServer:
    """Start with `with FakeOpenAIServer(...) as srv:`; `srv.url` is the /v1 base URL.

    Options: `delay` seconds per answer; `capacity` = answer 429 when more requests than this are
    in flight; `n_mode` "honour" | "ignore" | "reject"; `schema_mode` "honour" | "reject";
    `responder(payload) -> str | list[str]` for the completion text; `api_key` = require this
    bearer token (the 401 body echoes the token it got, as some servers do); `rate_headers` = dict
    of extra headers added to every answer; `stall_s` for the stall action.
    """

    def __init__(self, *, delay: float = 0.0, capacity: int | None = None, n_mode: str = "honour",
                 schema_mode: str = "honour", responder: Callable[[dict[str, Any]], Any] | None = None,
                 api_key: str | None = None, rate_headers: dict[str, str] | None = None,
                 stall_s: float = 5.0, port: int = 0) -> None:
        self.delay, self.capacity, self.n_mode, self.schema_mode = delay, capacity, n_mode, schema_mode
        self.responder, self.api_key, self.rate_headers = responder, api_key, rate_headers or {}
        self.stall_s, self.port = stall_s, port
        self.received = 0  # chat requests received (every send, retries included)
        self.by_fingerprint: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_log: list[int] = []  # in-flight count seen by each arriving request
        self.payloads: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:  # noqa: BLE001 - reported to the starting thread
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
            pending = asyncio.all_tasks(loop)
            for task in pending:  # handlers still stalling: end them quietly
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-openai")
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ handlers

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"chat_requests": self.received})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.received += 1
        self.in_flight += 1
        self.in_flight_log.append(self.in_flight)
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.auth_headers.append(request.headers.get("Authorization", ""))
        if self.api_key is not None:
            auth = request.headers.get("Authorization", "")
            if auth != f"Bearer {self.api_key}":
                self.statuses["401"] += 1
                given = auth.removeprefix("Bearer ")
                return web.json_response({"error": {"message": f"Incorrect API key provided: {given}"}},
                                         status=401)
        payload = await request.json()
        self.payloads.append(payload)
        fp = fingerprint(payload)
        self.by_fingerprint[fp] += 1
        action = self._action(payload, self.by_fingerprint[fp])
        self.statuses[action] += 1
        kind, _, after = action.partition("@")
        retry_headers = {"Retry-After": after} if after else {}

        if self.capacity is not None and self.in_flight > self.capacity:
            self.statuses["overload"] += 1
            await asyncio.sleep(self.delay)
            return web.json_response({"error": {"message": "too many requests"}}, status=429)
        if kind in ("429", "503"):
            return web.json_response({"error": {"message": "slow down"}}, status=int(kind),
                                     headers=retry_headers)
        if kind in ("500", "502", "400", "404"):
            return web.json_response({"error": {"message": f"injected {kind}"}}, status=int(kind))
        if kind == "401":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        if kind == "malformed":
            return web.Response(text='{"choices": [ {"message": oops', content_type="application/json")
        if kind == "empty":
            return web.json_response({"choices": []})
        if kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()  # goes nowhere: the connection is gone
        if kind == "stall":
            await asyncio.sleep(self.stall_s)

        n = int(payload.get("n", 1))
        if n > 1 and self.n_mode == "reject":
            return web.json_response({"error": {"message": "'n' > 1 is not supported"}}, status=400)
        if "response_format" in payload and self.schema_mode == "reject":
            return web.json_response(
                {"error": {"message": "response_format json_schema is not supported"}}, status=400)
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response(self._completion(payload, 1 if self.n_mode == "ignore" else n),
                                 headers=self.rate_headers)

    def _action(self, payload: dict[str, Any], send_number: int) -> str:
        last_user = next((m["content"] for m in reversed(payload.get("messages", []))
                          if m.get("role") == "user"), "")
        match = _FAULT.search(last_user)
        if not match:
            return "ok"
        actions = match.group(1).split(",")
        return actions[min(send_number, len(actions)) - 1]

    def _completion(self, payload: dict[str, Any], n: int) -> dict[str, Any]:
        messages = payload.get("messages", [])
        last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if self.responder is not None:
            out = self.responder(payload)
            texts = [out] * n if isinstance(out, str) else list(out)
        else:
            texts = [f"echo {last_user} seed={payload.get('seed')} sample={i}" for i in range(n)]
        choices = []
        for i, text in enumerate(texts[:n]):
            choice: dict[str, Any] = {"index": i, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "stop"}
            if payload.get("logprobs"):
                k = int(payload.get("top_logprobs") or 0)
                choice["logprobs"] = {"content": [
                    {"token": w, "logprob": -0.5 * (j + 1),
                     "top_logprobs": [{"token": w, "logprob": -0.5 * (j + 1)},
                                      {"token": w.upper(), "logprob": -3.0}][:k]}
                    for j, w in enumerate(text.split())]}
            choices.append(choice)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = sum(len(t.split()) for t in texts[:n])
        return {"id": "chatcmpl-fake", "object": "chat.completion", "model": payload.get("model"),
                "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}
