"""Fidelity of a synthetic text set to a real (reference) one, on sentence embeddings.

- MAUVE (Pillutla et al. 2021): quantise both sets' features into k-means buckets and integrate the
  KL divergence frontier between the two histograms; 1 = same distribution. Computed by the
  `mauve-text` package on the MiniLM features we already have (no GPT-2 featuriser).
- Precision / recall of distributions (Kynkäänniemi et al. 2019): the real manifold is the union of
  balls reaching each real point's k-th nearest real neighbour; precision = share of synthetic
  points inside it (quality), recall = share of real points inside the synthetic manifold (coverage).
- Classifier two-sample test (Lopez-Paz & Oquab 2017): cross-validated ROC AUC of a logistic
  regression telling real from synthetic; 0.5 = indistinguishable.
- Coverage side by side: lengths, vocabulary, and topic clusters (joint k-means) that one side
  reaches and the other does not.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthloom.audit.checks import Check, rounded
from synthloom.audit.knn import inside_any_ball, kth_neighbour_distances
from synthloom.text import words


@dataclass(frozen=True)
class FidelityLimits:
    mauve_min: float = 0.5
    c2st_auc_max: float = 0.85
    precision_min: float = 0.5
    recall_min: float = 0.3
    unreached_max: float = 0.2  # share of real rows in clusters the synthetic set never reaches
    min_rows: float = 50  # fewer rows a side: measured and shown, but not judged


def mauve_score(real: np.ndarray, synth: np.ndarray, seed: int = 0) -> float:
    """MAUVE of synthetic (q) against real (p) features; buckets capped so 10k x 10k stays fast."""
    try:
        import mauve
    except ImportError as e:
        from synthloom.errors import ConfigError

        raise ConfigError("MAUVE needs the audit extra: pip install 'synthloom[audit]' (mauve-text)") from e
    # the paper's n/10 buckets, capped (k-means cost) and kept under faiss's 39 points per centroid
    buckets = int(np.clip(min(min(len(real), len(synth)) // 10, (len(real) + len(synth)) // 39), 2, 100))
    out = mauve.compute_mauve(p_features=real, q_features=synth, num_buckets=buckets, kmeans_num_redo=2,
                              kmeans_max_iter=100, seed=seed, verbose=False)
    return float(out.mauve)


def precision_recall(real: np.ndarray, synth: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al. (2019) improved precision and recall with k-NN manifolds (their k = 3)."""
    real_r = kth_neighbour_distances(real, real, k, exclude_self=True)[:, -1]
    synth_r = kth_neighbour_distances(synth, synth, k, exclude_self=True)[:, -1]
    precision = float(inside_any_ball(synth, real, real_r).mean())
    recall = float(inside_any_ball(real, synth, synth_r).mean())
    return precision, recall


def c2st_auc(real: np.ndarray, synth: np.ndarray, folds: int = 5, seed: int = 0, max_per_side: int = 5000) -> float:
    """Cross-validated ROC AUC of a logistic regression separating real from synthetic rows.

    Both sides are subsampled to the same size so the AUC is not driven by class imbalance, and
    identical rows share a fold: a copy on the training side with the other label would push the
    held-out copy's score the wrong way (a set against a shuffle of itself would score below 0.5).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    rng = np.random.default_rng(seed)
    n = min(len(real), len(synth), max_per_side)
    x = np.concatenate([real[rng.choice(len(real), n, replace=False)], synth[rng.choice(len(synth), n, replace=False)]])
    y = np.concatenate([np.zeros(n), np.ones(n)])
    groups = _pair_groups(x[:n], x[n:])
    cv = StratifiedGroupKFold(n_splits=min(folds, n), shuffle=True, random_state=seed)
    scores = cross_val_predict(LogisticRegression(C=1.0, max_iter=1000), x, y, cv=cv, groups=groups,
                               method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def _pair_groups(real: np.ndarray, synth: np.ndarray) -> np.ndarray:
    """CV groups: each real row shares a group with at most one identical synthetic row."""
    groups = np.arange(len(real) + len(synth))
    waiting: dict[bytes, list[int]] = {}
    for i, v in enumerate(np.round(real, 5)):
        waiting.setdefault(v.tobytes(), []).append(i)
    for j, v in enumerate(np.round(synth, 5)):
        match = waiting.get(v.tobytes())
        if match:
            groups[len(real) + j] = match.pop()
    return groups


def _quantiles(values: Sequence[int]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": rounded(a.mean(), 2), "p10": float(np.percentile(a, 10)), "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90))}


def length_comparison(real_texts: Sequence[str], synth_texts: Sequence[str]) -> dict[str, Any]:
    """Word-length quantiles of both sets and the two-sample Kolmogorov-Smirnov statistic."""
    from scipy.stats import ks_2samp

    real_len = [len(words(t)) for t in real_texts]
    synth_len = [len(words(t)) for t in synth_texts]
    with warnings.catch_warnings():  # identical samples make scipy warn about an exact p-value
        warnings.simplefilter("ignore")
        ks = ks_2samp(real_len, synth_len).statistic
    return {"real": _quantiles(real_len), "synthetic": _quantiles(synth_len),
            "ks": rounded(ks)}


def vocabulary_comparison(real_texts: Sequence[str], synth_texts: Sequence[str], min_count: int = 2,
                          examples: int = 10) -> dict[str, Any]:
    """How much of the real vocabulary (words seen >= min_count times) the synthetic set uses, and
    how much synthetic text is in words the real set never uses."""
    real = Counter(w for t in real_texts for w in words(t))
    synth = Counter(w for t in synth_texts for w in words(t))
    common_real = {w for w, c in real.items() if c >= min_count}
    covered = sum(1 for w in common_real if w in synth)
    novel_tokens = sum(c for w, c in synth.items() if w not in real)
    missing = [w for w, _ in real.most_common() if w in common_real and w not in synth][:examples]
    novel = [w for w, _ in synth.most_common() if w not in real][:examples]
    return {"real_vocabulary": len(real), "synthetic_vocabulary": len(synth),
            "real_vocabulary_covered": rounded(covered / len(common_real)) if common_real else None,
            "synthetic_tokens_unseen_in_real": rounded(novel_tokens / max(1, sum(synth.values()))),
            "frequent_real_words_missing": missing, "frequent_synthetic_words_unseen": novel}


def cluster_coverage(real: np.ndarray, synth: np.ndarray, real_texts: Sequence[str], synth_texts: Sequence[str],
                     clusters: int = 20, seed: int = 0, ratio: float = 0.1) -> dict[str, Any]:
    """Topic clusters (k-means on both sets together) that only one side reaches.

    A cluster is *unreached* when it holds a real share of at least 1/(2k) and a synthetic share
    below `ratio` times its real share; *synthetic-only* is the mirror image.
    """
    from sklearn.cluster import KMeans

    both = np.concatenate([real, synth])
    k = int(max(2, min(clusters, len(both) // 10)))
    labels = KMeans(n_clusters=k, n_init=2, random_state=seed).fit_predict(both)
    real_share = np.bincount(labels[:len(real)], minlength=k) / len(real)
    synth_share = np.bincount(labels[len(real):], minlength=k) / len(synth)

    def example(c: int, texts: Sequence[str], lab: np.ndarray) -> str:
        idx = np.flatnonzero(lab == c)
        return texts[int(idx[0])][:200] if len(idx) else ""

    unreached, synth_only = [], []
    for c in range(k):
        entry = {"cluster": c, "real_share": rounded(real_share[c]), "synthetic_share": rounded(synth_share[c])}
        if real_share[c] >= 1 / (2 * k) and synth_share[c] < ratio * real_share[c]:
            unreached.append({**entry, "example": example(c, real_texts, labels[:len(real)])})
        if synth_share[c] >= 1 / (2 * k) and real_share[c] < ratio * synth_share[c]:
            synth_only.append({**entry, "example": example(c, synth_texts, labels[len(real):])})
    return {"clusters": k, "unreached": unreached, "synthetic_only": synth_only,
            "real_share_unreached": rounded(sum(e["real_share"] for e in unreached)),
            "synthetic_share_without_real": rounded(sum(e["synthetic_share"] for e in synth_only))}


def _checks(limits: FidelityLimits, mauve_value: float | None, precision: float, recall: float, auc: float,
            clusters: dict[str, Any]) -> list[Check]:
    return [
        Check("mauve", mauve_value, limits.mauve_min, True, "mauve (Pillutla et al. 2021) on MiniLM features"),
        Check("precision", precision, limits.precision_min, True, "k-NN manifold precision (Kynkaanniemi et al. 2019)"),
        Check("recall", recall, limits.recall_min, True, "k-NN manifold recall (Kynkaanniemi et al. 2019)"),
        Check("c2st_auc", auc, limits.c2st_auc_max, False, "classifier two-sample test, 5-fold logistic regression AUC"),
        Check("real_share_unreached", clusters["real_share_unreached"], limits.unreached_max, False,
              f"joint k-means ({clusters['clusters']} clusters), real clusters with no synthetic rows"),
    ]


def fidelity_audit(real_texts: Sequence[str], synth_texts: Sequence[str], real: np.ndarray, synth: np.ndarray,
                   limits: FidelityLimits = FidelityLimits(), seed: int = 0, use_mauve: bool = True) -> dict[str, Any]:
    """Every fidelity measure, and the checks the audit gates on (`timings` says what each cost)."""
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        out = fn(*args, **kw)
        timings[name] = round(time.perf_counter() - t, 2)
        return out

    precision, recall = timed("precision_recall", precision_recall, real, synth)
    auc = timed("c2st", c2st_auc, real, synth, seed=seed)
    mauve_value = timed("mauve", mauve_score, real, synth, seed=seed) if use_mauve else None
    clusters = timed("clusters", cluster_coverage, real, synth, real_texts, synth_texts, seed=seed)
    checks = _checks(limits, mauve_value, precision, recall, auc, clusters)
    if min(len(real_texts), len(synth_texts)) < limits.min_rows:
        # the measures are still reported, but a handful of rows is no evidence either way
        checks = [dataclasses.replace(c, value=None, note=f"fewer than {limits.min_rows:g} rows a side") for c in checks]
    measures = {"mauve": None if mauve_value is None else rounded(mauve_value), "precision": rounded(precision),
                "recall": rounded(recall), "c2st_auc": rounded(auc),
                "lengths": length_comparison(real_texts, synth_texts),
                "vocabulary": vocabulary_comparison(real_texts, synth_texts), "clusters": clusters,
                "rows": {"real": len(real_texts), "synthetic": len(synth_texts)}, "timings": timings}
    return {"measures": measures, "checks": [c.as_dict() for c in checks]}
