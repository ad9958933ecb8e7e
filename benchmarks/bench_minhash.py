"""P3: MinHash-LSH near-dedup, synthloom (numpy, batched) vs datasketch with the same settings.

Workload: documents of 60-200 Zipf-distributed words; 20% of them get a planted near-duplicate
(a few words substituted, Jaccard of 5-gram shingles about 0.75-0.9). Both sides use the same
tokeniser, 5-gram shingles, 256 permutations, threshold 0.7 and the same (bands, rows); both
cluster with union-find and keep the first of each cluster. Reports docs/s, the ratio (median of
alternating rounds), and recall on the planted pairs plus false merges of unrelated documents.

    .venv/bin/python benchmarks/bench_minhash.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
from datasketch import MinHash, MinHashLSH

from synthloom.quality.minhash import MinHashSettings, connected_first, minhash_dedup
from synthloom.text import ngrams, words


def make_corpus(n_base: int, rng: random.Random) -> tuple[list[str], list[tuple[int, int]]]:
    vocab = [f"w{i}" for i in range(20000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    docs: list[str] = []
    planted: list[tuple[int, int]] = []
    for _ in range(n_base):
        toks = rng.choices(vocab, weights, k=rng.randint(60, 200))
        docs.append(" ".join(toks))
        if rng.random() < 0.2:
            dup = list(toks)
            for _ in range(max(1, len(dup) // 80)):
                dup[rng.randrange(len(dup))] = rng.choice(vocab)
            planted.append((len(docs) - 1, len(docs)))
            docs.append(" ".join(dup))
    return docs, planted


def datasketch_dedup(texts: list[str], s: MinHashSettings) -> np.ndarray:
    """datasketch's MinHash + MinHashLSH, clusters by union-find; returns cluster label per doc."""
    lsh = MinHashLSH(threshold=s.threshold, num_perm=s.num_perm, params=(s.bands, s.rows))
    sigs = []
    for i, t in enumerate(texts):
        m = MinHash(num_perm=s.num_perm, seed=s.seed)
        toks = words(t)
        m.update_batch([" ".join(g).encode() for g in ngrams(toks, min(s.ngram, len(toks)))])
        lsh.insert(i, m)
        sigs.append(m)
    left, right = [], []
    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            if j != i:
                left.append(i)
                right.append(j)
    return connected_first(len(texts), np.array(left, dtype=np.int64), np.array(right, dtype=np.int64))


def quality(cluster: np.ndarray, planted: list[tuple[int, int]]) -> tuple[float, int]:
    recall = sum(cluster[a] == cluster[b] for a, b in planted) / len(planted)
    planted_set = {b for _, b in planted}
    false_merges = sum(1 for i, c in enumerate(cluster) if c != i and i not in planted_set)
    return recall, false_merges


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    docs, planted = make_corpus(800 if args.quick else 5000, random.Random(0))
    s = MinHashSettings().resolved()
    rounds = 3
    ours_t, base_t, ratios = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        ours = minhash_dedup(docs, s).cluster
        ours_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        base = datasketch_dedup(docs, s)
        base_t.append(time.perf_counter() - t)
        ratios.append(base_t[-1] / ours_t[-1])
    r_ours, fm_ours = quality(ours, planted)
    r_base, fm_base = quality(base, planted)
    print(f"docs={len(docs)} planted near-dups={len(planted)} settings: ngram={s.ngram} num_perm={s.num_perm} "
          f"threshold={s.threshold} bands={s.bands} rows={s.rows}")
    print(f"datasketch : {len(docs) / statistics.median(base_t):>10,.0f} docs/s  recall={r_base:.3f} false merges={fm_base}")
    print(f"synthloom  : {len(docs) / statistics.median(ours_t):>10,.0f} docs/s  recall={r_ours:.3f} false merges={fm_ours}")
    print(f"P3 ratio (median of {rounds} alternating rounds): {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
