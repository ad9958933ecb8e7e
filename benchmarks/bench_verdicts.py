"""Verdict suites: precision of "ok" and recall of every registered verifier on its labelled cases.

One line per verifier (the registry is tests/verdicts/suites.py; add a suite there with
`register`). Precision of ok is what matters for training data: a false accept is a wrong row
in train. The bar is precision >= 99.5% and recall >= 90%; the exit status is 1 below it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from verdicts.suites import SUITES, score  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="accepted for `make bench`; the suites are already quick")
    parser.add_argument("--only", nargs="*", default=None, help="suite names (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list false accepts and misses")
    args = parser.parse_args()
    failed = False
    for name in args.only or sorted(SUITES):
        if name not in SUITES:
            parser.error(f"no suite {name!r} (have: {', '.join(sorted(SUITES))})")
        suite = SUITES[name]
        start = time.perf_counter()
        result = score(suite)
        print(f"{result.line(name)}  [{time.perf_counter() - start:.1f}s]")
        if args.verbose:
            print(f"  false accepts: {result.false_accepts}\n  misses: {result.misses}")
        failed |= result.precision < suite.min_precision or result.recall < suite.min_recall
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
