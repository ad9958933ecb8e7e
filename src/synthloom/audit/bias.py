"""Demographic representation and stereotypical associations, after HELM (Liang et al. 2022, §4.7).

- Representation of a category (gender, religion, age): the share of group-term mentions that
  fall to each group; bias = total variation distance (TVD) to the target distribution, which is
  the reference set's distribution when one is given and uniform otherwise.
- Stereotypical association of a category with targets (occupations, adjectives): for each target
  word, the distribution of group mentions in the texts that contain it; bias = mean TVD to the
  target distribution over targets that co-occur with the category at all.
Word lists ship in `synthloom/audit/data/` (documented in docs/audit.md). A category with fewer
than `min_mentions` mentions is not judged (unknown): there is no evidence either way.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import yaml

from synthloom.audit.checks import Check, rounded
from synthloom.text import words


@dataclass(frozen=True)
class BiasLimits:
    representation_max: float = 0.3
    association_max: float = 0.4
    min_mentions: float = 20
    counterfactual_differ_max: float = 0.2
    counterfactual_similarity_min: float = 0.85


@functools.lru_cache(maxsize=1)
def word_lists() -> tuple[dict[str, dict[str, list[str]]], dict[str, list[str]], dict[str, list[list[str]]]]:
    """(categories {category: {group: words}}, targets {kind: words}, swaps {category: [[a, b]...]})."""
    data = resources.files("synthloom.audit") / "data"
    groups = yaml.safe_load((data / "groups.yaml").read_text(encoding="utf-8"))
    swaps = groups.pop("swaps", {})
    targets = yaml.safe_load((data / "targets.yaml").read_text(encoding="utf-8"))
    return groups, targets, swaps


def _tvd(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p - q).sum())


def _distribution(counts: Counter, groups: Sequence[str]) -> np.ndarray | None:
    v = np.array([counts.get(g, 0) for g in groups], dtype=float)
    return v / v.sum() if v.sum() else None


class _Counts:
    """Per-category group mentions, overall and per target word, for one text set."""

    def __init__(self, texts: Sequence[str]) -> None:
        categories, targets, _ = word_lists()
        lookup = {w: (cat, g) for cat, gs in categories.items() for g, ws in gs.items() for w in ws}
        target_words = {w for ws in targets.values() for w in ws}
        self.mentions: dict[str, Counter] = {c: Counter() for c in categories}
        self.by_target: dict[str, dict[str, Counter]] = {c: {} for c in categories}
        for text in texts:
            toks = words(text)
            here: dict[str, Counter] = {}
            for t in toks:
                hit = lookup.get(t)
                if hit:
                    here.setdefault(hit[0], Counter())[hit[1]] += 1
            for cat, c in here.items():
                self.mentions[cat].update(c)
                for t in target_words.intersection(toks):
                    self.by_target[cat].setdefault(t, Counter()).update(c)


def bias_audit(texts: Sequence[str], reference: Sequence[str] | None = None, limits: BiasLimits = BiasLimits()
               ) -> dict[str, Any]:
    """Representation and association bias per category, against the reference or uniform."""
    categories, targets, _ = word_lists()
    synth = _Counts(texts)
    ref = _Counts(reference) if reference else None
    measures: dict[str, Any] = {"against": "reference" if ref else "uniform", "categories": {}}
    checks: list[Check] = []
    for cat, gs in categories.items():
        groups = list(gs)
        uniform = np.full(len(groups), 1 / len(groups))
        target = (_distribution(ref.mentions[cat], groups) if ref else None)
        target = uniform if target is None else target
        total = sum(synth.mentions[cat].values())
        dist = _distribution(synth.mentions[cat], groups)
        rep = _tvd(dist, target) if dist is not None and total >= limits.min_mentions else None
        assoc_by: dict[str, float] = {}
        for word, counts in synth.by_target[cat].items():
            if sum(counts.values()) < 2:
                continue
            ref_t = _distribution(ref.by_target[cat].get(word, Counter()), groups) if ref else None
            assoc_by[word] = _tvd(_distribution(counts, groups), uniform if ref_t is None else ref_t)
        assoc = float(np.mean(list(assoc_by.values()))) if assoc_by and total >= limits.min_mentions else None
        top = sorted(assoc_by.items(), key=lambda kv: -kv[1])[:8]
        measures["categories"][cat] = {
            "mentions": total, "shares": {g: rounded(x) for g, x in zip(groups, dist)} if dist is not None else {},
            "target_shares": {g: rounded(x) for g, x in zip(groups, target)},
            "representation_tvd": None if rep is None else rounded(rep),
            "association_tvd": None if assoc is None else rounded(assoc),
            "most_skewed_targets": [{"word": w, "tvd": rounded(v), "counts": dict(synth.by_target[cat][w])} for w, v in top]}
        note = f"{total} mentions" + ("" if total >= limits.min_mentions else f" (< {limits.min_mentions:g}: not judged)")
        checks.append(Check(f"representation_{cat}", rep, limits.representation_max, False,
                            f"HELM demographic representation: TVD to {measures['against']}", note))
        checks.append(Check(f"association_{cat}", assoc, limits.association_max, False,
                            f"HELM stereotypical associations ({'/'.join(targets)}): mean TVD", note))
    return {"measures": measures, "checks": [c.as_dict() for c in checks]}
