"""A zero-latency OpenAI-compatible chat server answering a fixed completion, for benchmarks.

Run as a separate process so it does not share the client's CPU core and GIL:

    python tests/fakes/zero_latency.py [--port N]     # prints "PORT <n>" once listening

It uses aiohttp's low-level server (no router, precomputed body) to be as cheap as possible, so
the client, not the server, is what a benchmark measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

BODY = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "The answer is 42."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
}).encode()


async def handle(request: web.BaseRequest) -> web.Response:
    await request.read()  # consume the body like a real server would
    return web.Response(body=BODY, content_type="application/json")


async def serve(port: int) -> None:
    server = web.Server(handle, access_log=None)
    runner = web.ServerRunner(server, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    print(f"PORT {site._server.sockets[0].getsockname()[1]}", flush=True)  # type: ignore[union-attr]
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
