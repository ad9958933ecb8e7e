"""P2: OpenAI-compatible client overhead versus the simplest raw aiohttp loop.

20,000 chat requests at concurrency 256 against a local zero-latency fake server (its own
process), with synthloom's OpenAIModel (AIMD limiter, retry policy, breaker, replica choice,
response parsing into ChatResponse) and with a bare `semaphore + session.post + r.json()` loop,
run alternately in the same process so machine noise hits both. Prints requests/s of each run and
the median ratio ours / raw (target >= 0.8).

    .venv/bin/python benchmarks/bench_client.py [--quick] [--transports]

`--quick` sends 2,000 requests per run. `--transports` also times a raw httpx loop, the evidence
for choosing aiohttp over httpx as the client's transport (docs/models.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from synthloom.llm.base import ChatRequest
from synthloom.llm.openai_compat import OpenAIModel

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "fakes" / "zero_latency.py"


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"fake server failed to start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def make_messages(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"What is 6 times 7? (question {i})"}] for i in range(n)]


async def run_ours(base_url: str, messages: list[list[dict[str, str]]], concurrency: int,
                   ) -> tuple[float, float]:
    """(requests per second, client CPU microseconds per request)."""
    requests = [ChatRequest(m, temperature=0.0, max_tokens=16) for m in messages]
    model = OpenAIModel([base_url], "bench", api_key_env=None, max_concurrency=concurrency)
    start, cpu = time.perf_counter(), time.process_time()
    responses = await model.chat(requests)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    await model.aclose()
    assert len(responses) == len(requests) and responses[-1].text == "The answer is 42."
    return len(requests) / elapsed, cpu / len(requests) * 1e6


async def run_raw_aiohttp(base_url: str, messages: list[list[dict[str, str]]], concurrency: int,
                          ) -> tuple[float, float]:
    url = f"{base_url}/chat/completions"
    payloads = [{"model": "bench", "messages": m, "temperature": 0.0, "max_tokens": 16}
                for m in messages]
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one(payload: dict) -> str:
            async with sem:
                async with session.post(url, json=payload) as r:
                    data = await r.json()
            return data["choices"][0]["message"]["content"]

        start, cpu = time.perf_counter(), time.process_time()
        texts = await asyncio.gather(*(one(p) for p in payloads))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert texts[-1] == "The answer is 42."
    return len(payloads) / elapsed, cpu / len(payloads) * 1e6


async def run_raw_httpx(base_url: str, messages: list[list[dict[str, str]]], concurrency: int) -> float:
    import httpx

    url = f"{base_url}/chat/completions"
    payloads = [{"model": "bench", "messages": m, "temperature": 0.0, "max_tokens": 16}
                for m in messages]
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def one(payload: dict) -> str:
            async with sem:
                r = await client.post(url, json=payload)
                return r.json()["choices"][0]["message"]["content"]

        start = time.perf_counter()
        texts = await asyncio.gather(*(one(p) for p in payloads))
        elapsed = time.perf_counter() - start
    assert texts[-1] == "The answer is 42."
    return len(payloads) / elapsed


async def bench(base_url: str, n: int, concurrency: int, rounds: int, transports: bool) -> None:
    messages = make_messages(n)
    await run_raw_aiohttp(base_url, messages[: min(n, 1000)], concurrency)  # warm-up: imports, sockets
    await run_ours(base_url, messages[: min(n, 1000)], concurrency)
    ours, raw, ratios, cpu_ratios, httpx_rates = [], [], [], [], []
    for i in range(rounds):
        # Alternate which goes first so a noisy neighbour doesn't always hit the same one.
        if i % 2 == 0:
            (o, o_cpu) = await run_ours(base_url, messages, concurrency)
            (r, r_cpu) = await run_raw_aiohttp(base_url, messages, concurrency)
        else:
            (r, r_cpu) = await run_raw_aiohttp(base_url, messages, concurrency)
            (o, o_cpu) = await run_ours(base_url, messages, concurrency)
        ours.append(o)
        raw.append(r)
        ratios.append(o / r)
        cpu_ratios.append(r_cpu / o_cpu)
        line = (f"round {i + 1}: synthloom {o:6.0f} req/s ({o_cpu:4.0f} us CPU/req)   "
                f"raw aiohttp {r:6.0f} req/s ({r_cpu:4.0f} us CPU/req)   ratio {o / r:.2f}")
        if transports:
            h = await run_raw_httpx(base_url, messages, concurrency)
            httpx_rates.append(h)
            line += f"   raw httpx {h:6.0f} req/s"
        print(line, flush=True)
    print(f"\nP2 client overhead: {n} requests x {rounds} rounds at concurrency {concurrency}")
    print(f"  synthloom OpenAIModel : median {statistics.median(ours):8.0f} req/s")
    print(f"  raw aiohttp loop      : median {statistics.median(raw):8.0f} req/s")
    if httpx_rates:
        print(f"  raw httpx loop        : median {statistics.median(httpx_rates):8.0f} req/s "
              f"({statistics.median(httpx_rates) / statistics.median(raw):.2f}x raw aiohttp)")
    # Client CPU per request is far less sensitive to other processes than wall-clock rates.
    print(f"  median CPU-efficiency ratio (raw CPU/req / ours CPU/req): "
          f"{statistics.median(cpu_ratios):.2f}x")
    median_ratio = statistics.median(ratios)
    verdict = "PASS" if median_ratio >= 0.8 else "BELOW TARGET"
    print(f"  median ratio ours/raw : {median_ratio:.2f}x  (target >= 0.80: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 requests per run instead of 20,000")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5, quick 3)")
    parser.add_argument("--transports", action="store_true", help="also time a raw httpx loop")
    args = parser.parse_args()
    n = args.requests or (2_000 if args.quick else 20_000)
    rounds = args.rounds or (3 if args.quick else 5)
    proc, base_url = start_server()
    try:
        asyncio.run(bench(base_url, n, args.concurrency, rounds, args.transports))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
