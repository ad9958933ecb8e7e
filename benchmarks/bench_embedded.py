"""P1: embedded engine throughput, continuous batching vs the same engine one request at a time.

32 requests x 128 generated tokens with 16 slots busy at once, against single-stream requests
(one at a time) on the same loaded engine. Rounds alternate the two so machine noise hits both;
the reported ratio is the median over rounds. Target: batched >= 1.8x single-stream.

    .venv/bin/python benchmarks/bench_embedded.py [--quick] [--rounds N] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from synthloom.llm.base import ChatRequest
from synthloom.llm.embedded import EmbeddedModel

TOPICS = ["the sea", "a city at night", "bread", "mountains", "a robot", "winter", "a library", "the moon"]


def requests(count: int, max_tokens: int) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=[{"role": "user", "content": f"Write a short story about {TOPICS[i % len(TOPICS)]} (#{i})."}],
            temperature=0.7,
            seed=i,
            max_tokens=max_tokens,
        )
        for i in range(count)
    ]


async def batched(model: EmbeddedModel, reqs: list[ChatRequest]) -> tuple[int, float]:
    t0 = time.perf_counter()
    out = await model.chat(reqs)
    return sum(r.usage.completion_tokens for r in out), time.perf_counter() - t0


async def single_stream(model: EmbeddedModel, reqs: list[ChatRequest]) -> tuple[int, float]:
    t0 = time.perf_counter()
    tokens = 0
    for r in reqs:
        tokens += (await model.chat([r]))[0].usage.completion_tokens
    return tokens, time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter requests (smoke run)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: physical cores)")
    ap.add_argument("--shared-kv", action="store_true",
                    help="batch_invariant=False: one shared KV cache (faster, outputs depend on batch make-up)")
    args = ap.parse_args()
    n_req, n_tok, n_single, rounds = (16, 32, 4, 1) if args.quick else (32, 128, 8, 3)
    rounds = args.rounds or rounds

    # ignore_eos: every request generates exactly max_tokens, so both sides count the same work
    model = EmbeddedModel(n_slots=16, n_threads=args.threads, ignore_eos=True, batch_invariant=not args.shared_kv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"model {model.name}, threads {model.options.n_threads}, slots {model.options.n_slots}, "
        f"load average {load:.1f} on {os.cpu_count()} CPUs (timings are noisy when load > CPUs)"
    )
    await model.chat(requests(2, 8))  # warm-up: first decode pays one-off allocation costs

    ratios, agg_rates, single_rates = [], [], []
    for rnd in range(rounds):
        s_tok, s_dt = await single_stream(model, requests(n_single, n_tok))
        b_tok, b_dt = await batched(model, requests(n_req, n_tok))
        single_rate, agg_rate = s_tok / s_dt, b_tok / b_dt
        ratios.append(agg_rate / single_rate)
        agg_rates.append(agg_rate)
        single_rates.append(single_rate)
        print(
            f"round {rnd + 1}: batched {b_tok} tok in {b_dt:.1f}s = {agg_rate:.1f} tok/s | "
            f"single {s_tok} tok in {s_dt:.1f}s = {single_rate:.1f} tok/s | ratio {agg_rates[-1] / single_rate:.2f}x"
        )
    print(
        f"P1 embedded: aggregate {statistics.median(agg_rates):.1f} tok/s ({n_req} req x {n_tok} tok, 16 concurrent), "
        f"single-stream {statistics.median(single_rates):.1f} tok/s, "
        f"median ratio {statistics.median(ratios):.2f}x (target >= 1.8x)"
    )
    s = model.stats
    print(
        f"engine: {s.decode_calls} decode calls, max {s.max_active_sequences} sequences in one batch, "
        f"{s.decode_seconds:.1f}s in llama_decode, {s.sample_seconds:.1f}s sampling in Python/numpy; "
        f"prompt tokens decoded {s.prompt_tokens_decoded}, reused from slots {s.prompt_tokens_reused}"
    )
    await model.aclose()


if __name__ == "__main__":
    asyncio.run(main())
