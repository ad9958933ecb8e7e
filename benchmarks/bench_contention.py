"""P5: embedded engine throughput beside a competing busy process, against the same engine idle.

The engine and one CPU hog (a busy-looping process) share the same 2 cores. Rounds alternate
idle (hog stopped with SIGSTOP) and contended (hog running), so the noise of a shared machine hits
both; each contended round is divided by the mean of the idle rounds around it and the median of
those ratios is reported. Target: >= 0.4x idle.

    .venv/bin/python benchmarks/bench_contention.py [--quick] [--rounds N] [--threads N] [--compare]

--compare runs the benchmark once per configuration (OpenMP wait policy x thread policy) in child
processes, since the wait policy is fixed when llama.cpp's OpenMP runtime loads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time

CORES = 2


def pin(cores: int) -> set[int] | None:
    """Restrict this process (and the children it starts) to the first `cores` CPUs it may use."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = set(sorted(os.sched_getaffinity(0))[:cores])
    os.sched_setaffinity(0, cpus)
    return cpus


def start_hog() -> subprocess.Popen[bytes]:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    hog.send_signal(signal.SIGSTOP)
    return hog


async def round_rate(model, n_req: int, n_tok: int, seed: int) -> float:
    from synthloom.llm.base import ChatRequest

    reqs = [ChatRequest(messages=[{"role": "user", "content": f"Write a story about the number {seed + i}."}],
                        temperature=0.7, seed=seed + i, max_tokens=n_tok) for i in range(n_req)]
    t0 = time.perf_counter()
    out = await model.chat(reqs)
    return sum(r.usage.completion_tokens for r in out) / (time.perf_counter() - t0)


async def measure(args: argparse.Namespace) -> float:
    from synthloom.llm.embedded import EmbeddedModel

    cpus = pin(CORES)
    n_req, n_tok, pairs = (8, 24, 2) if args.quick else (8, 96, 4)
    pairs = args.rounds or pairs
    model = EmbeddedModel(n_slots=8, n_ctx=8192, n_threads=args.threads, ignore_eos=True)
    hog = start_hog()
    try:
        await round_rate(model, 2, 8, 0)  # warm-up
        idle, busy, ratios = [], [], []
        idle.append(await round_rate(model, n_req, n_tok, 100))
        for k in range(pairs):
            hog.send_signal(signal.SIGCONT)
            await asyncio.sleep(0.5)  # the hog is running before the round starts
            busy.append(await round_rate(model, n_req, n_tok, 200 + 10 * k))
            hog.send_signal(signal.SIGSTOP)
            await asyncio.sleep(0.5)
            idle.append(await round_rate(model, n_req, n_tok, 300 + 10 * k))
            ratios.append(busy[-1] / ((idle[-2] + idle[-1]) / 2))
            print(f"  pair {k + 1}: idle {idle[-2]:.1f} / {idle[-1]:.1f} tok/s, beside a busy process "
                  f"{busy[-1]:.1f} tok/s, ratio {ratios[-1]:.2f}x", flush=True)
    finally:
        hog.kill()
        await model.aclose()
    ratio = statistics.median(ratios)
    policy = os.environ.get("OMP_WAIT_POLICY", "-") + "/" + os.environ.get("GOMP_SPINCOUNT", "-")
    print(f"P5 contention [{args.label or 'default'}; OMP_WAIT_POLICY/GOMP_SPINCOUNT {policy}; "
          f"threads {model.options.n_threads}; cpus {sorted(cpus) if cpus else '?'}]: "
          f"idle {statistics.median(idle):.1f} tok/s, contended {statistics.median(busy):.1f} tok/s, "
          f"median ratio {ratio:.2f}x (target >= 0.4x)", flush=True)
    return ratio


def compare(args: argparse.Namespace) -> None:
    """One child process per configuration (the OpenMP wait policy is read once, at load)."""
    spin = {"GOMP_SPINCOUNT": "300000"}  # libgomp's own default, what llama.cpp ran with before
    configs = [
        ("spinning waits, 2 threads (the old default)", spin, ["--threads", "2"]),
        ("spinning waits, 1 thread (the old advice for busy machines)", spin, ["--threads", "1"]),
        ("passive waits, 1 thread", {"OMP_WAIT_POLICY": "PASSIVE"}, ["--threads", "1"]),
        ("defaults: passive waits, one thread per usable core", {}, []),
    ]
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    extra = ["--quick"] if args.quick else []
    if args.rounds:
        extra += ["--rounds", str(args.rounds)]
    for label, env, opts in configs:
        subprocess.run([sys.executable, __file__, "--label", label, *opts, *extra], env={**base, **env}, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two short pairs of rounds (smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help="pairs of idle/contended rounds")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: usable physical cores)")
    ap.add_argument("--compare", action="store_true", help="run every wait/thread configuration")
    ap.add_argument("--label", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compare:
        compare(args)
    else:
        asyncio.run(measure(args))


if __name__ == "__main__":
    main()
