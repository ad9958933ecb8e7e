"""P6: isolated executions/s of the sandbox pool vs bare `subprocess.run([python, "-c", snippet])`.

Both run the same HumanEval programs (prompt + canonical solution + tests + check) with the same
parallelism. Rounds alternate ours and the baseline (the machine may be shared, so timings are
noisy) and the median ratio is reported. Target: ratio >= 1.0.

    .venv/bin/python benchmarks/bench_sandbox.py [--quick] [--workers N] [--snippets N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from synthloom.verify.code import SandboxPool, Snippet
from synthloom.verify.code.humaneval import humaneval_snippet, load_humaneval


def make_snippets(count: int) -> list[Snippet]:
    problems = load_humaneval()
    return [humaneval_snippet(problems[i % len(problems)]) for i in range(count)]


def as_program(snippet: Snippet) -> str:
    return snippet.code + "\n" + "\n".join(snippet.tests) + "\n"


def run_ours(pool: SandboxPool, snippets: list[Snippet]) -> tuple[float, int]:
    started = time.perf_counter()
    results = pool.run_batch(snippets)
    elapsed = time.perf_counter() - started
    return len(snippets) / elapsed, sum(r.verified for r in results)


def run_baseline(programs: list[str], workers: int) -> tuple[float, int]:
    def one(program: str) -> bool:
        return subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60).returncode == 0

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as executor:
        passed = sum(executor.map(one, programs))
    elapsed = time.perf_counter() - started
    return len(programs) / elapsed, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer snippets and rounds (for CI)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--snippets", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    count = args.snippets or (60 if args.quick else 200)
    rounds = args.rounds or (3 if args.quick else 5)
    snippets = make_snippets(count)
    programs = [as_program(s) for s in snippets]

    started = time.perf_counter()
    pool = SandboxPool(workers=args.workers).start()
    startup_s = time.perf_counter() - started
    ratios, ours_rates, base_rates = [], [], []
    try:
        pool.run_batch(snippets[: args.workers * 2])  # warm-up, not timed
        for round_index in range(rounds):
            ours, ours_passed = run_ours(pool, snippets)
            base, base_passed = run_baseline(programs, args.workers)
            if ours_passed != count or base_passed != count:
                raise SystemExit(f"correctness check failed: ours {ours_passed}/{count}, "
                                 f"baseline {base_passed}/{count}")
            ours_rates.append(ours)
            base_rates.append(base)
            ratios.append(ours / base)
            print(f"round {round_index + 1}: sandbox pool {ours:8.1f} exec/s   bare subprocess {base:8.1f} exec/s   "
                  f"ratio {ours / base:5.2f}")
    finally:
        pool.close()
    print(f"P6 sandbox: {count} HumanEval programs x {rounds} rounds, {args.workers} workers "
          f"(pool start-up {startup_s * 1000:.0f} ms, not timed)")
    print(f"  sandbox pool (bwrap, fork per snippet): median {statistics.median(ours_rates):.1f} exec/s")
    print(f"  bare subprocess.run([python, -c]):      median {statistics.median(base_rates):.1f} exec/s")
    print(f"  P6 ratio (median of rounds): {statistics.median(ratios):.2f}x  (target >= 1.0)")


if __name__ == "__main__":
    main()
