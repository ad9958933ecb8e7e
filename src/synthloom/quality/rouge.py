"""ROUGE-L F-measure and Self-Instruct's online novelty pool, fast and decision-identical to rouge-score.

`rouge-score` (no stemmer) computes, for target t and prediction p with LCS length l:
P = l/|p|, R = l/|t|, F = 2PR/(P+R) (0 when either side has no tokens). We evaluate exactly that
float expression, so a threshold comparison gives the same answer bit for bit.

Speed comes from pruning: LCS(a, b) <= the multiset token overlap m(a, b), so
F <= 2m/(|a|+|b|). The pool keeps an inverted index of "occurrence features" (token, k-th occurrence):
the multiset overlap with every pool member is then one `bincount` over the query's posting lists.
Only members whose bound can beat the current best get an exact (bit-parallel, vectorised) LCS,
visited in decreasing-bound order (branch and bound), so the reported max score is exact too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

from synthloom.errors import BadInputError
from synthloom.quality.lcs import (
    WORD_BITS,
    lcs_length,
    lcs_length_masks,
    lcs_lengths_vs_many,
    match_masks,
)
from synthloom.text import rouge_words

Tokenizer = Callable[[str], list[str]]

# Exact LCS is computed in chunks of this many pool members, best bounds first.
_CHUNK = 512


def fmeasure_from_lcs(lcs: int, len_target: int, len_prediction: int) -> float:
    """rouge-score's F from an LCS length, with its exact float expression."""
    if len_target == 0 or len_prediction == 0:
        return 0.0
    precision = lcs / len_prediction
    recall = lcs / len_target
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l(target: str, prediction: str, tokenizer: Tokenizer = rouge_words) -> float:
    """ROUGE-L F-measure of two texts (equals rouge_score's `rougeL` fmeasure, no stemmer)."""
    a, b = tokenizer(target), tokenizer(prediction)
    if not a or not b:
        return 0.0
    return fmeasure_from_lcs(lcs_length(a, b), len(a), len(b))


def _fmeasure_vec(lcs: np.ndarray, len_target: int, len_pred: np.ndarray) -> np.ndarray:
    """Vectorised rouge-score F: same operations in the same order as the scalar version."""
    precision = lcs / len_pred
    recall = lcs / len_target
    denom = precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        f = 2 * precision * recall / denom
    return np.where(denom > 0, f, 0.0)


class Novelty(NamedTuple):
    accepted: bool
    max_score: float
    most_similar: str | None


class _GrowableInts:
    """Append-only int32 buffer with amortised O(1) appends and a zero-copy view."""

    __slots__ = ("data", "size")

    def __init__(self, capacity: int = 4) -> None:
        self.data = np.empty(capacity, dtype=np.int32)
        self.size = 0

    def append(self, value: int) -> None:
        if self.size == len(self.data):
            self.data = np.resize(self.data, 2 * len(self.data))
        self.data[self.size] = value
        self.size += 1

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if need > len(self.data):
            self.data = np.resize(self.data, max(need, 2 * len(self.data)))
        self.data[self.size : need] = values
        self.size = need

    def view(self) -> np.ndarray:
        return self.data[: self.size]


class NoveltyPool:
    """Self-Instruct's online ROUGE-L filter: reject a text whose ROUGE-L F with any member > threshold.

    Accepted texts join the pool immediately (`add_if_novel`), so later candidates are compared
    against them. `add` inserts unconditionally (seed tasks). Decisions equal rouge-score's.
    """

    def __init__(
        self,
        threshold: float = 0.7,
        initial: Iterable[str] = (),
        tokenizer: Tokenizer = rouge_words,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise BadInputError(f"ROUGE-L threshold must be in [0, 1], got {threshold}")
        self.threshold = threshold
        self._tokenize = tokenizer
        self.texts: list[str] = []
        self._vocab: dict[str, int] = {}
        self._postings: dict[tuple[int, int], _GrowableInts] = {}
        self._flat = _GrowableInts(1024)  # all members' token ids, concatenated
        self._offsets = _GrowableInts(256)
        self._lengths = _GrowableInts(256)
        for text in initial:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    # -- building -------------------------------------------------------------------------
    def add(self, text: str) -> None:
        """Insert a text into the pool without checking it."""
        self._insert(text, self._tokenize(text))

    def _insert(self, text: str, tokens: list[str]) -> None:
        doc = len(self.texts)
        ids = np.fromiter((self._vocab.setdefault(t, len(self._vocab)) for t in tokens), np.int32, len(tokens))
        seen: Counter[int] = Counter()
        for tid in ids.tolist():
            feature = (tid, seen[tid])
            seen[tid] += 1
            plist = self._postings.get(feature)
            if plist is None:
                plist = self._postings[feature] = _GrowableInts()
            plist.append(doc)
        self._offsets.append(self._flat.size)
        self._lengths.append(len(ids))
        self._flat.extend(ids)
        self.texts.append(text)

    # -- querying -------------------------------------------------------------------------
    def score(self, text: str) -> tuple[float, str | None]:
        """Exact max ROUGE-L F of `text` against the pool, and the member reaching it."""
        best, idx = self._best(self._tokenize(text), stop_above=None)
        return best, (self.texts[idx] if idx is not None else None)

    def add_if_novel(self, text: str) -> Novelty:
        """Accept (and insert) `text` iff its max ROUGE-L F against the pool is <= threshold."""
        tokens = self._tokenize(text)
        best, idx = self._best(tokens, stop_above=None)
        accepted = not best > self.threshold
        if accepted:
            self._insert(text, tokens)
        return Novelty(accepted, best, self.texts[idx] if idx is not None else None)

    def filter(self, texts: Iterable[str]) -> list[Novelty]:
        """Online filter over a batch, in order: each accepted text is seen by the next ones."""
        return [self.add_if_novel(t) for t in texts]

    def _best(self, tokens: list[str], stop_above: float | None) -> tuple[float, int | None]:
        """Exact best F over the pool by branch and bound; stops early once best > stop_above."""
        n_docs = len(self.texts)
        lq = len(tokens)
        if n_docs == 0 or lq == 0:
            return 0.0, None
        # Unknown tokens get fresh negative ids: they match nothing in the pool.
        unknown: dict[str, int] = {}
        q_ids = [self._vocab[t] if t in self._vocab else unknown.setdefault(t, -2 - len(unknown)) for t in tokens]
        postings = []
        for tid, count in Counter(q_ids).items():
            if tid < 0:
                continue
            for k in range(count):
                plist = self._postings.get((tid, k))
                if plist is None:
                    break
                postings.append(plist.view())
        if not postings:
            return 0.0, None
        overlap = np.bincount(np.concatenate(postings), minlength=n_docs)
        cand = np.flatnonzero(overlap)
        lengths = self._lengths.view()[cand]
        bound = _fmeasure_vec(overlap[cand].astype(np.float64), lq, lengths.astype(np.float64))
        order = np.argsort(-bound, kind="stable")
        cand, bound, lengths = cand[order], bound[order], lengths[order]

        best, best_idx = 0.0, None
        q_arr = np.asarray(q_ids, dtype=np.int64)
        for start in range(0, len(cand), _CHUNK):
            if bound[start] <= best:  # no remaining member can beat the best exact score
                break
            stop = start + _CHUNK
            chunk, chunk_len = cand[start:stop], lengths[start:stop]
            lcs = self._lcs_many(q_arr, chunk, chunk_len)
            f = _fmeasure_vec(lcs.astype(np.float64), lq, chunk_len.astype(np.float64))
            i = int(np.argmax(f))
            if f[i] > best:
                best, best_idx = float(f[i]), int(chunk[i])
            if stop_above is not None and best > stop_above:
                break
        return best, best_idx

    def _lcs_many(self, q: np.ndarray, docs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        flat, offsets = self._flat.view(), self._offsets.view()[docs]
        if len(q) <= WORD_BITS:
            width = int(lengths.max())
            idx = offsets[:, None] + np.arange(width)[None, :]
            valid = np.arange(width)[None, :] < lengths[:, None]
            padded = np.where(valid, flat[np.minimum(idx, len(flat) - 1)], -1)
            return lcs_lengths_vs_many(q, padded)
        masks = match_masks(q.tolist())
        return np.array(
            [lcs_length_masks(masks, len(q), flat[o : o + n].tolist()) for o, n in zip(offsets, lengths)],
            dtype=np.int64,
        )
