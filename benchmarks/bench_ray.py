"""Scaling: rows/s of the local executor versus the Ray executor with 1, 2 and 4 model workers.

A model-bound recipe (one model step per row) against a local fake OpenAI server that waits
`--delay` seconds per answer, so the numbers reflect orchestration (how many requests each
executor keeps in flight, and what shipping shards through Ray costs), not this machine's CPU.
Every run writes a fresh run directory (fresh request cache), so nothing is answered from cache.

Concurrency: the local executor runs `--shards-in-flight` shards of `--shard-size` rows at once;
each Ray worker runs `--parts-per-worker` shards at once, so N workers keep N times as many
requests in flight (each worker has its own client, as it would on its own node).

    .venv/bin/python benchmarks/bench_ray.py [--quick] [--address auto]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.fakes

# Imported only after the sys.path setup above, so that tests.fakes (under the repository root) resolves.
from synthloom.pipeline.pipeline import Pipeline, Source  # noqa: E402
from synthloom.run.ray_executor import RayOptions, connect, run_pipeline_ray  # noqa: E402
from synthloom.run.runner import RunOptions, run_pipeline_async  # noqa: E402
from synthloom.pipeline.step import build_step  # noqa: E402
from tests.fakes.openai_server import FakeOpenAIServer  # noqa: E402


def pipeline(rows: int, shard_size: int) -> Pipeline:
    step = build_step({"type": "model", "name": "gen", "prompt": "Write about item {{ i }}", "output": "text"})
    return Pipeline("bench_ray", [step], source=Source(rows=[{"i": i} for i in range(rows)]),
                    models={"generator": "embedded"}, shard_size=shard_size)


def options(out: Path, url: str, shards_in_flight: int) -> RunOptions:
    spec = f"openai:{url}#fake?api_key_env=SYNTHLOOM_BENCH_NO_KEY&max_concurrency=256"
    return RunOptions(out=out, models={"generator": spec}, formats=("jsonl",), shards_in_flight=shards_in_flight)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256 rows per run instead of 2,048")
    ap.add_argument("--delay", type=float, default=0.2, help="server latency per answer, seconds")
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("--shards-in-flight", type=int, default=4, help="local executor; also parts per Ray worker")
    ap.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    args = ap.parse_args()
    rows = 256 if args.quick else 2048
    logging.basicConfig(level=logging.WARNING)

    connect(RayOptions(address=args.address, num_cpus=2))
    results: dict[str, float] = {}
    with FakeOpenAIServer(delay=args.delay) as server, tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        asyncio.run(run_pipeline_async(pipeline(rows, args.shard_size),
                                       options(Path(tmp) / "local", server.url, args.shards_in_flight)))
        results["local"] = rows / (time.perf_counter() - t0)
        for workers in (1, 2, 4):
            ray_opts = RayOptions(address=args.address, model_workers=workers, parts_per_worker=args.shards_in_flight,
                                  worker_cpus=0.25)
            opts = options(Path(tmp) / f"ray{workers}", server.url, 1)
            t0 = time.perf_counter()
            asyncio.run(run_pipeline_ray(pipeline(rows, args.shard_size), opts, ray_opts))
            results[f"ray x{workers}"] = rows / (time.perf_counter() - t0)
        sent = server.received
    ideal = args.shards_in_flight * args.shard_size / args.delay
    print(f"{rows} rows/run, server delay {args.delay}s, shard {args.shard_size}, "
          f"{args.shards_in_flight} shards in flight per executor/worker (ideal one-unit rate {ideal:.0f} rows/s); "
          f"{sent} requests sent")
    for name, rate in results.items():
        print(f"  {name:8s} {rate:8.1f} rows/s   {rate / results['local']:5.2f}x local")
    print(f"  scaling ray x2/x1 = {results['ray x2'] / results['ray x1']:.2f}, "
          f"x4/x1 = {results['ray x4'] / results['ray x1']:.2f}")


if __name__ == "__main__":
    main()
