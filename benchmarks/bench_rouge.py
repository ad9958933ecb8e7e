"""P4: Self-Instruct ROUGE-L novelty filter, synthloom's NoveltyPool vs the rouge-score package.

Workload: a pool of 5,000 instructions; candidate instructions (fresh ones plus light edits of pool
members, so some are rejected) are scored against the whole pool. rouge-score does what Self-Instruct
does (pre-tokenised, `_score_lcs` against every member); it scores a small slice of the candidates,
synthloom scores them all, and speed is compared as candidate-vs-member pairs per second. Decisions
are checked to be identical on the slice both scored. Rounds alternate ours and the baseline; the
median ratio is reported (the machine is shared, timings are noisy).

    .venv/bin/python benchmarks/bench_rouge.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from rouge_score import rouge_scorer, tokenize

from synthloom.quality.rouge import NoveltyPool

SUBJECTS = """list array string dictionary tree graph matrix sentence paragraph essay poem email letter
story recipe table report summary query function class program script algorithm number sequence
date price review tweet headline title question answer argument description plan schedule budget
""".split()
VERBS = """write create generate explain describe summarize translate classify sort reverse find count
compute convert rewrite list compare design suggest identify edit analyze evaluate extract outline
""".split()
ADJ = """short long simple formal friendly detailed concise creative technical persuasive funny sad
positive negative recursive efficient sorted unique random given following first last every
""".split()
TOPICS = """climate change machine learning ancient rome healthy eating space travel the ocean
renewable energy a job interview a birthday party remote work social media electric cars
online privacy the stock market public transport a mountain hike a new smartphone chess openings
""".split("\n")
WORDS = [w for line in TOPICS for w in line.split()] + SUBJECTS + ADJ


def make_instruction(rng: random.Random) -> str:
    topic = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
    parts = [
        rng.choice(VERBS).capitalize(),
        "a" if rng.random() < 0.5 else "the",
        rng.choice(ADJ),
        rng.choice(SUBJECTS),
        rng.choice(["about", "for", "that describes", "of", "using"]),
        topic,
    ]
    if rng.random() < 0.5:
        parts += [rng.choice(["in", "with", "under", "without"]), str(rng.randint(2, 500)), rng.choice(SUBJECTS)]
    return " ".join(parts) + rng.choice([".", "?", "!"])


def make_candidates(pool: list[str], n: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(n):
        if rng.random() < 0.3:  # a light edit of a pool member: likely rejected
            words = rng.choice(pool).split()
            words[rng.randrange(len(words))] = rng.choice(WORDS)
            out.append(" ".join(words))
        else:
            out.append(make_instruction(rng))
    return out


def baseline_decisions(pool_tokens: list[list[str]], cands: list[str], threshold: float) -> list[bool]:
    """What Self-Instruct does: rouge-score's `_score_lcs` against every pool member."""
    out = []
    for c in cands:
        ct = tokenize.tokenize(c, None)
        best = max(rouge_scorer._score_lcs(ct, pt).fmeasure for pt in pool_tokens)
        out.append(not best > threshold)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller pool and fewer rounds")
    args = ap.parse_args()
    rng = random.Random(0)
    pool_size = 1000 if args.quick else 5000
    n_ours, n_base, rounds = (200, 10, 3) if args.quick else (1000, 30, 5)
    pool = [make_instruction(rng) for _ in range(pool_size)]
    cands = make_candidates(pool, n_ours, rng)

    ours_pool = NoveltyPool(0.7, initial=pool)
    pool_tokens = [tokenize.tokenize(p, None) for p in pool]
    ratios, ours_rates, base_rates = [], [], []
    for r in range(rounds):
        t = time.perf_counter()
        ours = [ours_pool.score(c)[0] for c in cands]
        ours_rate = len(cands) * pool_size / (time.perf_counter() - t)
        sl = cands[r * n_base : (r + 1) * n_base]
        t = time.perf_counter()
        base = baseline_decisions(pool_tokens, sl, 0.7)
        base_rate = len(sl) * pool_size / (time.perf_counter() - t)
        ours_dec = [not s > 0.7 for s in ours[r * n_base : (r + 1) * n_base]]
        assert ours_dec == base, "decision mismatch against rouge-score"
        ours_rates.append(ours_rate)
        base_rates.append(base_rate)
        ratios.append(ours_rate / base_rate)
    rejected = sum(s > 0.7 for s in ours)
    print(f"pool={pool_size} candidates={len(cands)} (rejected {rejected}), baseline slice={n_base}/round")
    print(f"rouge-score : {statistics.median(base_rates):>14,.0f} pairs/s")
    print(f"synthloom   : {statistics.median(ours_rates):>14,.0f} pairs/s (exact max score per candidate)")
    print(f"P4 ratio (median of {rounds} alternating rounds): {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
