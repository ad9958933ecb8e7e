"""Leakage of private seed records into synthetic rows.

Distance to closest record (DCR) and nearest-neighbour distance ratio (NNDR), the privacy
measures of tabular synthetic-data evaluation (e.g. SDMetrics; Zhao et al. 2021), computed here
for text in two spaces: sentence embeddings (paraphrased leaks) and word 3-gram Jaccard (copied
phrasing). A synthetic row counts as *too close* when its DCR is below the distance that 95% of
seeds keep from their own nearest other seed; with no leakage about 5% of rows fall below it.
Verbatim leakage is the longest common word span shared with the nearest seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

import numpy as np

from synthloom.audit.checks import Check, rounded
from synthloom.audit.knn import kth_neighbour_distances, nearest
from synthloom.text import words


@dataclass(frozen=True)
class PrivacyLimits:
    close_share_max: float = 0.1  # share of synthetic rows closer to a seed than seeds are to each other
    close_percentile: float = 5.0
    verbatim_words: int = 20  # a shared span this long counts as a verbatim leak
    verbatim_share_max: float = 0.05
    canary_exposure_max: float = 0.0
    pii_share_max: float = 1.0  # informational unless tightened


def _ngram_vectorizer(n: int):
    from sklearn.feature_extraction.text import CountVectorizer

    def grams(text: str) -> list[str]:
        w = words(text)
        return [" ".join(w[i:i + n]) for i in range(max(1, len(w) - n + 1))] if w else []

    return CountVectorizer(analyzer=grams, binary=True, dtype=np.float32)


def ngram_nearest(synth_texts: Sequence[str], seed_texts: Sequence[str], n: int = 3, block: int = 2048
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Index of each synthetic text's most similar seed and that word n-gram Jaccard similarity."""
    vec = _ngram_vectorizer(n)
    seeds = vec.fit_transform(seed_texts).tocsr()
    synth = vec.transform(synth_texts).tocsr()
    seed_sizes = np.asarray(seeds.sum(axis=1)).ravel()
    synth_sizes = np.asarray(synth.sum(axis=1)).ravel()
    idx = np.zeros(len(synth_texts), dtype=np.int64)
    best = np.zeros(len(synth_texts), dtype=np.float32)
    for start in range(0, synth.shape[0], block):
        inter = (synth[start:start + block] @ seeds.T).toarray()
        union = synth_sizes[start:start + block, None] + seed_sizes[None, :] - inter
        jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        j = np.argmax(jac, axis=1)
        idx[start:start + block] = j
        best[start:start + block] = jac[np.arange(len(j)), j]
    return idx, best


def longest_common_span(a: str, b: str) -> int:
    """Length in words of the longest contiguous word sequence shared by a and b."""
    wa, wb = words(a), words(b)
    if not wa or not wb:
        return 0
    return SequenceMatcher(None, wa, wb, autojunk=False).find_longest_match(0, len(wa), 0, len(wb)).size


def leakage_audit(synth_texts: Sequence[str], seed_texts: Sequence[str], synth: np.ndarray, seeds: np.ndarray,
                  limits: PrivacyLimits = PrivacyLimits(), examples: int = 5) -> dict[str, Any]:
    """DCR, NNDR, the too-close share and verbatim spans of synthetic rows against private seeds."""
    two = kth_neighbour_distances(synth, seeds, 2)
    dcr = two[:, 0]
    nndr = dcr / np.maximum(two[:, 1], 1e-9) if two.shape[1] > 1 else np.ones_like(dcr)
    emb_idx, _ = nearest(synth, seeds)
    if len(seeds) > 1:
        seed_nn = kth_neighbour_distances(seeds, seeds, 1, exclude_self=True)[:, 0]
        radius = float(np.percentile(seed_nn, limits.close_percentile))
        close = dcr < radius
    else:
        radius, close = float("nan"), np.zeros(len(dcr), dtype=bool)
    ng_idx, ng_sim = ngram_nearest(synth_texts, seed_texts)
    spans = np.array([max(longest_common_span(t, seed_texts[int(i)]), longest_common_span(t, seed_texts[int(j)]))
                      for t, i, j in zip(synth_texts, emb_idx, ng_idx)])
    verbatim = spans >= limits.verbatim_words
    worst = np.argsort(dcr)[:examples]
    measures = {
        "rows": {"synthetic": len(synth_texts), "private_seeds": len(seed_texts)},
        "embedding_dcr": {"min": rounded(dcr.min()), "p5": rounded(np.percentile(dcr, 5)), "median": rounded(np.median(dcr))},
        "seed_to_seed_radius": rounded(radius) if radius == radius else None,
        "nndr": {"min": rounded(nndr.min()), "median": rounded(np.median(nndr))},
        "share_closer_than_seeds": rounded(close.mean()),
        "ngram_jaccard": {"max": rounded(ng_sim.max()), "p95": rounded(np.percentile(ng_sim, 95)),
                          "share_over_0.5": rounded((ng_sim > 0.5).mean())},
        "longest_common_span_words": {"max": int(spans.max()), "p95": rounded(np.percentile(spans, 95), 1)},
        "share_verbatim": rounded(verbatim.mean()),
        "closest_pairs": [{"synthetic": synth_texts[int(i)][:200], "seed": seed_texts[int(emb_idx[i])][:200],
                           "dcr": rounded(dcr[i]), "span_words": int(spans[i])} for i in worst],
    }
    checks = [
        Check("share_closer_than_seeds", float(close.mean()) if radius == radius else None, limits.close_share_max, False,
              f"embedding DCR below the {limits.close_percentile:g}th percentile of seed-to-seed distances"),
        Check("share_verbatim", float(verbatim.mean()), limits.verbatim_share_max, False,
              f"rows sharing a >= {limits.verbatim_words}-word span with a private seed"),
    ]
    return {"measures": measures, "checks": [c.as_dict() for c in checks]}
