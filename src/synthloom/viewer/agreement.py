"""Agreement between expert reviewers, and between reviewers and automatic verifiers/judges.

Labels are binary: accept (accept or edit) vs reject for reviewers; `ok` true/false for automatic
verdicts (not-checkable verdicts are skipped); the pipeline itself counts as one more rater
("pipeline": the row was kept vs rejected).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations
from typing import Any

from synthloom.viewer.store import Decision


def cohen_kappa(a: list[bool], b: list[bool]) -> float | None:
    """Cohen's kappa of two raters on the same items; None when chance agreement is 1 (undefined)."""
    if len(a) != len(b):
        raise ValueError("cohen_kappa needs two label lists of the same length")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


def _pair_stats(a: list[bool], b: list[bool]) -> dict[str, Any]:
    n = len(a)
    return {"n": n, "agreement": (sum(x == y for x, y in zip(a, b)) / n) if n else None,
            "kappa": cohen_kappa(a, b)}


def agreement_report(reviews: dict[str, dict[str, Decision]],
                     automatic: Iterable[tuple[str, dict[str, bool]]]) -> dict[str, Any]:
    """`reviews`: {row key: {reviewer: decision}}; `automatic`: (row key, {rater: ok}) per row."""
    reviewers = sorted({r for per_row in reviews.values() for r in per_row})
    pairs = []
    for ra, rb in combinations(reviewers, 2):
        both = [(d[ra].accepted, d[rb].accepted) for d in reviews.values() if ra in d and rb in d]
        pairs.append({"a": ra, "b": rb, **_pair_stats([x for x, _ in both], [y for _, y in both])})
    auto_by_rater: dict[str, dict[str, bool]] = {}
    for key, raters in automatic:
        if key not in reviews:
            continue
        for rater, ok in raters.items():
            auto_by_rater.setdefault(rater, {})[key] = ok
    vs_auto = []
    for reviewer in reviewers:
        for rater in sorted(auto_by_rater):
            keys = [k for k, d in reviews.items() if reviewer in d and k in auto_by_rater[rater]]
            human = [reviews[k][reviewer].accepted for k in keys]
            machine = [auto_by_rater[rater][k] for k in keys]
            if keys:
                vs_auto.append({"reviewer": reviewer, "rater": rater, **_pair_stats(human, machine)})
    counts = {r: sum(1 for d in reviews.values() if r in d) for r in reviewers}
    return {"reviewers": reviewers, "reviewed": counts, "rows_reviewed": len(reviews),
            "pairs": pairs, "automatic": vs_auto}
