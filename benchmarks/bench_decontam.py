"""P5: 13-gram decontamination + Janitor-style cleaning, synthloom vs lm-evaluation-harness's Janitor.

The baseline re-implements lm-evaluation-harness `lm_eval/decontamination/janitor.py` in pure
Python, following its algorithm: normalise contaminants (ASCII lowercase, delete punctuation),
register their whitespace-split 13-grams in a set, then for each training document walk its
whitespace-token 13-grams with character indices, normalise each, look it up, and cut 200 chars
around every hit (drop fragments < 200 chars; > 10 hits drops the document).

Same data for both: contaminants = HumanEval (prompt + solution) and CHAMP (problem + solution);
training set = synthetic documents, some carrying a benchmark item verbatim or re-formatted
(re-indented, spaces around brackets). Reports docs/s, the ratio (median of alternating rounds),
and which planted rows each side caught.

    .venv/bin/python benchmarks/bench_decontam.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import string
import time

from synthloom.quality.benchmarks_data import load_champ, load_humaneval
from synthloom.quality.decontam import NgramIndex


# ---- baseline: lm-evaluation-harness Janitor (pure-Python path), re-implemented ----
def _form_ngrams(sequence, n):
    history = []
    while n > 1:
        try:
            history.append(next(sequence))
        except StopIteration:
            return
        n -= 1
    for item in sequence:
        history.append(item)
        yield tuple(history)
        del history[0]


def _word_ngrams(s: str, n: int):
    return (" ".join(g) for g in _form_ngrams(iter(s.split()), n))


def _word_ngrams_indices(s: str, n: int):
    tokens = ((m.group(0), (m.start(), m.end() - 1)) for m in re.finditer(r"\S+", s))
    for gram in _form_ngrams(tokens, n):
        toks, idx = zip(*gram)
        yield " ".join(toks), (idx[0][0], idx[-1][1])


class Janitor:
    def __init__(self, ngram_n=13, window_to_remove=200, too_dirty_cutoff=10, minimum_slice_length=200):
        self.ngram_n, self.window_to_remove = ngram_n, window_to_remove
        self.too_dirty_cutoff, self.minimum_slice_length = too_dirty_cutoff, minimum_slice_length
        self.dirt_ngrams: set[str] = set()
        self.table = str.maketrans(string.ascii_lowercase + string.ascii_uppercase, string.ascii_lowercase * 2,
                                   string.punctuation)

    def normalize_string(self, s: str) -> str:
        return s.translate(self.table)

    def register_contaminant(self, dirt: str) -> None:
        self.dirt_ngrams.update(_word_ngrams(self.normalize_string(dirt), self.ngram_n))

    def clean_python(self, dirty: str) -> list[str]:
        hits = ((None, *ij) for g, ij in _word_ngrams_indices(dirty, self.ngram_n)
                if self.normalize_string(g) in self.dirt_ngrams)
        return self._split_chunks(dirty, hits)

    def _split_chunks(self, dirty, parts):
        chunks, splice, end = [], 0, -1
        for i, (_, start, end) in enumerate(parts):
            if i >= self.too_dirty_cutoff:
                return []
            start = max(0, start - self.window_to_remove)
            end = min(len(dirty), end + self.window_to_remove)
            if start - splice > self.minimum_slice_length:
                chunks.append(dirty[splice:start])
            splice = end
        if end < len(dirty) - self.minimum_slice_length:
            chunks.append(dirty[end + 1 :])
        return chunks


# ---- data ----
def make_training(n_docs: int, bench_texts: list[str], rng: random.Random) -> tuple[list[str], dict[int, str]]:
    vocab = sorted({w for t in bench_texts for w in re.findall(r"[A-Za-z]+", t)})
    docs, planted = [], {}
    for i in range(n_docs):
        doc = " ".join(rng.choice(vocab) for _ in range(rng.randint(100, 300)))
        r = rng.random()
        if r < 0.01:
            doc = doc[: len(doc) // 2] + "\n" + rng.choice(bench_texts) + "\n" + doc[len(doc) // 2 :]
            planted[i] = "verbatim"
        elif r < 0.02:
            t = rng.choice(bench_texts).replace("    ", "  ").replace("(", "( ").replace(")", " )").replace(",", " , ")
            doc = doc + "\n" + t
            planted[i] = "reformatted"
        docs.append(doc)
    return docs, planted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    items = load_humaneval() + load_champ()
    rng = random.Random(0)
    docs, planted = make_training(2000 if args.quick else 20000, [i.text for i in items], rng)
    rounds = 3
    ours_t, base_t, ratios = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        index = NgramIndex(items, 13)
        dirty = index.contaminated_rows(docs)
        ours_clean = {i: index.janitor_clean(docs[i]) for i in dirty.nonzero()[0].tolist()}
        ours_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        jan = Janitor()
        for it in items:
            jan.register_contaminant(it.text)
        base_clean = {}
        for i, d in enumerate(docs):
            chunks = jan.clean_python(d)
            if chunks != [d]:
                base_clean[i] = chunks
        base_t.append(time.perf_counter() - t)
        ratios.append(base_t[-1] / ours_t[-1])
    for name, caught in (("janitor", set(base_clean)), ("synthloom", set(ours_clean))):
        by_kind = {k: sum(1 for i, kk in planted.items() if kk == k and i in caught) for k in ("verbatim", "reformatted")}
        totals = {k: sum(1 for kk in planted.values() if kk == k) for k in ("verbatim", "reformatted")}
        extra = len(caught - set(planted))
        print(f"{name:>10}: caught verbatim {by_kind['verbatim']}/{totals['verbatim']}, "
              f"reformatted {by_kind['reformatted']}/{totals['reformatted']}, unplanted rows flagged {extra}")
    print(f"docs={len(docs)} contaminant items={len(items)} n=13")
    print(f"janitor   : {len(docs) / statistics.median(base_t):>10,.0f} docs/s")
    print(f"synthloom : {len(docs) / statistics.median(ours_t):>10,.0f} docs/s (index build + scan + cleaning)")
    print(f"P5 ratio (median of {rounds} alternating rounds): {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
