"""Watermark benchmark: generation throughput with vs without the green-list processor, and
detection quality (true/false positives, robustness to 10% word substitution) on the same texts.

Each round sends the same 16 prompts (16 concurrent sequences, 200 tokens each, ignore_eos) to a
watermarked and a plain engine, alternating which goes first so machine noise hits both; the
throughput ratio is the median over rounds. Every generated text is then scored by the detector.
Target: watermarked >= 0.90x plain throughput; z >= 4 on >= 95% of watermarked texts; <= 1% of
plain texts flagged at fpr=0.01.

    .venv/bin/python benchmarks/bench_watermark.py [--rounds 4] [--tokens 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time

from synthloom.llm.base import ChatRequest
from synthloom.llm.embedded import EmbeddedModel
from synthloom.watermark import Detector, WatermarkScheme
from synthloom.watermark.detector import gguf_tokenizer

TOPICS = ["the sea", "bread", "a robot", "winter", "the moon", "a library", "trains", "volcanoes",
          "friendship", "a market", "rain", "chess", "bees", "a lighthouse", "deserts", "music"]
STYLES = ["Write an essay about", "Tell a story about", "Explain to a child", "Describe"]
FILLER = ["the", "house", "quickly", "blue", "people", "because", "water", "strange", "often", "small"]


def prompts(round_: int, n: int, tokens: int) -> list[ChatRequest]:
    return [
        ChatRequest(messages=[{"role": "user", "content": f"{STYLES[(round_ + i) % 4]} {TOPICS[i % 16]}."}],
                    seed=1000 * round_ + i, max_tokens=tokens, temperature=0.7)
        for i in range(n)
    ]


def substitute(text: str, fraction: float, rng: random.Random) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), round(fraction * len(words))):
        words[i] = rng.choice(FILLER)
    return " ".join(words)


async def timed(model: EmbeddedModel, reqs: list[ChatRequest]) -> tuple[list[str], float, int]:
    t0 = time.perf_counter()
    out = await model.chat(reqs)
    return [r.text for r in out], time.perf_counter() - t0, sum(r.usage.completion_tokens for r in out)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--concurrent", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 64-token generations")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.tokens = 2, 64
    os.environ.setdefault("SYNTHLOOM_WM_KEY", "bench-secret-key-not-for-production")
    common = {"n_slots": args.concurrent, "n_ctx": 1024 * args.concurrent, "n_threads": args.threads, "ignore_eos": True}
    wm_model = EmbeddedModel(watermark_key_env="SYNTHLOOM_WM_KEY", **common)  # type: ignore[arg-type]
    plain_model = EmbeddedModel(**common)  # type: ignore[arg-type]
    marked: list[str] = []
    plain: list[str] = []
    ratios: list[float] = []
    try:
        for r in range(args.rounds):
            reqs = prompts(r, args.concurrent, args.tokens)
            order = [(wm_model, marked), (plain_model, plain)]
            rates: dict[int, float] = {}
            for model, sink in (order if r % 2 == 0 else order[::-1]):
                texts, secs, toks = await timed(model, reqs)
                sink.extend(texts)
                rates[id(model)] = toks / secs
            ratios.append(rates[id(wm_model)] / rates[id(plain_model)])
            print(f"round {r}: watermarked {rates[id(wm_model)]:.1f} tok/s, plain {rates[id(plain_model)]:.1f} tok/s, "
                  f"ratio {ratios[-1]:.3f}", flush=True)
        # the machine-noise-free view: Python-side sampling time (processors included) per engine
        for name, m in (("watermarked", wm_model), ("plain", plain_model)):
            st = m.stats
            print(f"{name}: llama_decode {st.decode_seconds:.1f}s, sampling+processors {st.sample_seconds:.1f}s")
    finally:
        await wm_model.aclose()
        await plain_model.aclose()
    print(f"throughput ratio (watermarked / plain, median of {len(ratios)} rounds): {statistics.median(ratios):.3f}")

    tok, n_vocab = gguf_tokenizer()
    scheme = WatermarkScheme.from_env("SYNTHLOOM_WM_KEY", n_vocab=n_vocab)
    det = Detector(scheme, tok, fpr=0.01)
    zm = [det.score(t).z or 0.0 for t in marked]
    zp = [det.score(t).z or 0.0 for t in plain]
    rng = random.Random(0)
    ze = [det.score(substitute(t, 0.10, rng)).z or 0.0 for t in marked]
    n = len(marked)

    def share(zs: list[float], cut: float) -> str:
        return f"{sum(z >= cut for z in zs)}/{len(zs)} ({100 * sum(z >= cut for z in zs) / len(zs):.1f}%)"

    print(f"texts: {n} watermarked + {len(plain)} plain, {args.tokens} tokens each, gamma={scheme.gamma}, "
          f"delta={scheme.delta}, threshold z={det.threshold:.3f} (fpr 0.01)")
    print(f"watermarked z: median {statistics.median(zm):.2f}, min {min(zm):.2f}; z>=4: {share(zm, 4)}; "
          f"detected at fpr 0.01: {share(zm, det.threshold)}")
    print(f"plain z: median {statistics.median(zp):.2f}, max {max(zp):.2f}; flagged at fpr 0.01: {share(zp, det.threshold)}")
    print(f"10% words substituted: median z {statistics.median(ze):.2f}, min {min(ze):.2f}; z>=4: {share(ze, 4)}; "
          f"detected at fpr 0.01: {share(ze, det.threshold)}")


if __name__ == "__main__":
    asyncio.run(main())
