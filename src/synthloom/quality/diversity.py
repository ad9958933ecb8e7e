"""Dataset diversity measures (distinct-n, Li et al. 2016; Self-BLEU, Zhu et al. 2018; Vendi, Friedman & Dieng 2023):
distinct-n, Self-BLEU, embedding distance, Vendi score.

Conventions, stated so numbers are comparable across datasets:
- distinct-n: corpus-level unique n-grams / total tokens (Li et al. 2016) by default; pass
  denominator="ngrams" for unique / total n-grams. Tokens: text.words (per-char CJK/Thai).
- Self-BLEU: for each sampled text, sentence BLEU-4 (sacrebleu, 13a tokeniser, uniform weights)
  with that text as hypothesis and every other sampled text as references, averaged, in [0, 1].
  Smoothing: "floor" with 0.1 (zero n-gram matches count as 0.1, i.e. nltk's method1);
  effective order as in sacrebleu.sentence_bleu (texts shorter than 4 tokens use the orders they have).
  HIGHER = LESS diverse. Fixed sample size (500 by default, seeded): compare only at equal N.
- Embedding: rows L2-normalised; mean pairwise cosine distance over distinct pairs; Vendi score
  exp(-sum lambda log lambda) over eigenvalues of K/n with K = X X^T (K_ii = 1), computed from the
  d x d dual X^T X / n which has the same non-zero spectrum.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from synthloom.errors import BadInputError
from synthloom.quality.embeddings import Embedder
from synthloom.text import ngrams, words


def distinct_n(texts: Sequence[str], n: int, denominator: str = "tokens") -> float:
    """Unique n-grams over the corpus divided by total tokens (or total n-grams)."""
    if denominator not in ("tokens", "ngrams"):
        raise BadInputError(f"denominator must be 'tokens' or 'ngrams', got {denominator!r}")
    unique: set[tuple[str, ...]] = set()
    n_tokens = n_ngrams = 0
    for t in texts:
        toks = words(t)
        grams = ngrams(toks, n)
        unique.update(grams)
        n_tokens += len(toks)
        n_ngrams += len(grams)
    denom = n_tokens if denominator == "tokens" else n_ngrams
    return len(unique) / denom if denom else 0.0


def _closest_ref_len(hyp_len: int, sorted_lens: np.ndarray) -> int:
    """sacrebleu's rule: the reference length closest to the hypothesis', the shorter on ties."""
    i = int(np.searchsorted(sorted_lens, hyp_len))
    options = [int(sorted_lens[j]) for j in (i - 1, i) if 0 <= j < len(sorted_lens)]
    return min(options, key=lambda r: (abs(hyp_len - r), r))


def self_bleu(texts: Sequence[str], max_n: int = 4, sample: int = 500, seed: int = 0, smooth_value: float = 0.1) -> float:
    """Mean sentence BLEU of each sampled text against all other sampled texts, in [0, 1].

    Equal to calling sacrebleu.sentence_bleu(t_i, others, smooth_method="floor") per text, but the
    reference statistics are shared: for every n-gram we keep its two largest per-text counts, so
    "max count over all references except i" is O(1).
    """
    items = list(texts)
    if len(items) > sample:
        items = random.Random(seed).sample(items, sample)
    if len(items) < 2:
        return 0.0
    tok = Tokenizer13a()
    stats = [extract_all_word_ngrams(tok(t.rstrip()), 1, max_n) for t in items]
    top1: dict[tuple[str, ...], tuple[int, int]] = {}  # ngram -> (count, owner)
    top2: Counter[tuple[str, ...]] = Counter()
    for i, (grams, _) in enumerate(stats):
        for g, c in grams.items():
            best = top1.get(g)
            if best is None or c > best[0]:
                if best is not None:
                    top2[g] = max(top2[g], best[0])
                top1[g] = (c, i)
            elif c > top2[g]:
                top2[g] = c
    lens = np.array([length for _, length in stats])
    scores = []
    for i, (grams, hyp_len) in enumerate(stats):
        correct, total = [0] * max_n, [0] * max_n
        for g, c in grams.items():
            best, owner = top1[g]
            ref_max = top2[g] if owner == i else best
            total[len(g) - 1] += c
            correct[len(g) - 1] += min(c, ref_max)
        others = np.sort(np.delete(lens, i))
        bleu = BLEU.compute_bleu(
            correct, total, hyp_len, _closest_ref_len(hyp_len, others),
            smooth_method="floor", smooth_value=smooth_value, effective_order=True, max_ngram_order=max_n,
        )
        scores.append(bleu.score / 100.0)
    return float(np.mean(scores))


def _normalized(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def mean_pairwise_cosine_distance(embeddings: np.ndarray) -> float:
    """Mean of 1 - cos(x_i, x_j) over distinct pairs i < j."""
    x = _normalized(embeddings)
    n = len(x)
    if n < 2:
        return 0.0
    s = x.sum(axis=0)
    sum_all = float(s @ s)  # sum over all ordered pairs of cos, diagonal included (= n)
    mean_cos = (sum_all - n) / (n * (n - 1))
    return 1.0 - mean_cos


def vendi_score(embeddings: np.ndarray, q: float = 1.0) -> float:
    """Vendi score of L2-normalised embeddings with the cosine kernel (effective number of items)."""
    x = _normalized(embeddings)
    n = len(x)
    if n == 0:
        return 0.0
    dual = (x.T @ x) / n if x.shape[1] < n else (x @ x.T) / n
    lam = np.clip(np.linalg.eigvalsh(dual), 0.0, None)
    lam = lam[lam > 1e-12]
    if q == 1.0:
        return float(np.exp(-np.sum(lam * np.log(lam))))
    if np.isinf(q):
        return float(1.0 / lam.max())
    return float(np.exp(np.log(np.sum(lam**q)) / (1 - q)))


def diversity_report(
    texts: Sequence[str],
    embedder: Embedder | None = None,
    self_bleu_sample: int = 500,
    embedding_sample: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """All diversity measures with the conventions that make them comparable (for stats.json)."""
    report: dict[str, Any] = {
        "rows": len(texts),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_denominator": "total tokens (corpus level)",
        "self_bleu_4": self_bleu(texts, 4, self_bleu_sample, seed),
        "self_bleu_settings": {
            "sample": min(self_bleu_sample, len(texts)), "seed": seed, "max_n": 4, "tokenizer": "13a",
            "smoothing": "floor 0.1 (nltk method1)", "direction": "higher = less diverse",
        },
    }
    if embedder is not None:
        sample = list(texts)
        if len(sample) > embedding_sample:
            sample = random.Random(seed).sample(sample, embedding_sample)
        emb = embedder.encode(sample)
        report |= {
            "embedding_model": embedder.name,
            "embedding_sample": len(sample),
            "mean_pairwise_cosine_distance": mean_pairwise_cosine_distance(emb),
            "vendi_score": vendi_score(emb),
        }
    return report
