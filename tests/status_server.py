"""A real local HTTP server whose every chat request is answered by one handler (e.g. always 404),
for tests of a wrong URL, model or key: the fault-injecting fake server with its answer replaced."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from tests.fakes.openai_server import FakeOpenAIServer


class StatusServer(FakeOpenAIServer):
    def __init__(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        super().__init__()
        self.handler = handler

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        return await self.handler(request)


def always(status: int, message: str) -> StatusServer:
    """A server answering every chat request with `status` and an OpenAI-style error body."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": message}}, status=status)

    return StatusServer(answer)
