"""MetaMath end to end on the embedded model: rows/s and kept-rate, against a naive sequential loop.

Ours: the `metamath` recipe (AnsAug + rephrasing streams; FOBAR/SV with --all-streams) through
the pipeline, requests batched by the engine. Baseline, in the same run: the same AnsAug prompts
sent one at a time (the loop most scripts write), verified the same way. Prints rows/s of both,
the ratio, and the kept-rate (the 135M model solves few problems: the figure is about the
engine and the verification funnel, not about the model's math).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from synthloom.llm.base import ChatRequest
from synthloom.llm.cache import CachedModel, RequestCache
from synthloom.llm.embedded import EmbeddedModel
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.pipeline.templates import PromptTemplate
from synthloom.recipes.metamath import symbolic_seeds
from synthloom.recipes.registry import load_recipe
from synthloom.verify.math import verify_answer


async def ours(model, seeds: int, samples: int, streams: list[str], tmp: Path) -> tuple[float, int, int]:
    pipeline = load_recipe("metamath", {"num_seeds": seeds, "max_depth": 1, "samples": samples,
                                        "streams": streams, "decontaminate": False, "max_tokens": 96})
    cached = CachedModel(model, RequestCache(tmp / "ours.sqlite"))
    t0 = time.perf_counter()
    res = await run_pipeline_async(pipeline, RunOptions(out=tmp / "ours", report=False), models={"generator": cached})
    elapsed = time.perf_counter() - t0
    funnel = {s["step"]: s for s in res.stats["funnel"]}["streams"]
    attempted = funnel["rows_out"] + funnel["rejected_total"]
    return elapsed, attempted, len(res.rows)


async def naive(model, seeds: int, samples: int) -> tuple[float, int, int]:
    template = PromptTemplate("metamath_solve.j2")
    problems = symbolic_seeds(seeds, seed=0, max_depth=1)
    t0 = time.perf_counter()
    kept = attempted = 0
    for i, p in enumerate(problems):
        for s in range(samples):
            req = ChatRequest([{"role": "user", "content": template.render({"query": p["question"]})}],
                              temperature=0.7, max_tokens=96, seed=1000 * i + s, stop=["\nQuestion:"])
            text = (await model.chat([req]))[0].text
            attempted += 1
            kept += verify_answer(text, p["answer"])["ok"]
    return time.perf_counter() - t0, attempted, kept


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--all-streams", action="store_true")
    args = ap.parse_args()
    seeds, samples = (4, 2) if args.quick else (12, 4)
    threads = int(os.environ.get("SYNTHLOOM_BENCH_THREADS", "2"))
    model = EmbeddedModel(n_threads=threads, n_slots=16, n_ctx=16384)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t_ours, n_ours, kept_ours = await ours(model, seeds, samples, ["ansaug"], Path(tmp))
            t_naive, n_naive, kept_naive = await naive(model, seeds, samples)
            line = (f"MetaMath AnsAug, {seeds} symbolic seeds x {samples} samples, n_threads={threads}, "
                    f"load {os.getloadavg()[0]:.1f}")
            print(line)
            print(f"  pipeline : {n_ours / t_ours:6.2f} attempts/s  ({n_ours} in {t_ours:.1f}s), "
                  f"kept {kept_ours}/{n_ours} ({100 * kept_ours / max(1, n_ours):.0f}%)")
            print(f"  naive    : {n_naive / t_naive:6.2f} attempts/s  ({n_naive} in {t_naive:.1f}s), "
                  f"kept {kept_naive}/{n_naive}")
            print(f"  ratio (pipeline / naive loop): {(n_ours / t_ours) / (n_naive / t_naive):.2f}x")
            if args.all_streams:
                t_all, n_all, kept_all = await ours(model, seeds, samples, ["ansaug", "rephrase", "fobar", "sv"],
                                                    Path(tmp) / "all")
                print(f"  all four streams: {n_all / t_all:.2f} attempts/s, {len(range(kept_all))} kept "
                      f"of {n_all} ({100 * kept_all / max(1, n_all):.0f}%), {kept_all / t_all:.2f} rows/s")
    finally:
        model.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
