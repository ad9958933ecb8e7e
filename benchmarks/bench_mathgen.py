"""Symbolic generator throughput vs the naive approach (solving each premise set with sympy).

Ours: sample a world, forward-deduce with parent pointers, shave the proof, render (all of
`generate_problems`). Baseline: for the same problems, only the answer step done the naive way,
sympy.solve on the premise equations (given the minimal subset for free, which favours it).

    .venv/bin/python benchmarks/bench_mathgen.py [--quick]
"""

from __future__ import annotations

import argparse
import time

from synthloom.mathgen import generate_problems
from synthloom.mathgen.check import check_with_sympy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run for CI (a few seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n_ours, n_baseline = (400, 40) if args.quick else (5000, 300)

    generate_problems(50, seed=args.seed + 1)  # warm imports and caches
    # CPU time is the figure of merit (both sides are single-threaded, CPU-bound); wall time is
    # printed too but is noisy on a shared machine.
    wall, cpu = time.perf_counter(), time.process_time()
    problems = generate_problems(n_ours, seed=args.seed)
    ours_wall, ours_s = time.perf_counter() - wall, time.process_time() - cpu
    ours_rate = n_ours / ours_s

    sample = problems[:: max(1, n_ours // n_baseline)][:n_baseline]
    wall, cpu = time.perf_counter(), time.process_time()
    agreed = sum(check_with_sympy(problem) for problem in sample)
    baseline_wall, baseline_s = time.perf_counter() - wall, time.process_time() - cpu
    baseline_rate = len(sample) / baseline_s

    depths = sorted({p["depth"] for p in problems})
    histogram = ", ".join(f"{d}:{sum(p['depth'] == d for p in problems)}" for d in depths)
    print(
        f"ours (deduce + traceback + render): {n_ours} problems in {ours_s:.2f}s CPU "
        f"({ours_wall:.2f}s wall) = {ours_rate:,.0f} problems/s"
    )
    print(
        f"baseline (sympy.solve per premise set): {len(sample)} problems in {baseline_s:.2f}s CPU "
        f"({baseline_wall:.2f}s wall) = {baseline_rate:,.1f} problems/s"
    )
    print(f"ratio ours/baseline: {ours_rate / baseline_rate:.1f}x")
    print(f"sympy agreed with our answer on {agreed}/{len(sample)}; depth histogram {histogram}")


if __name__ == "__main__":
    main()
