"""Held-out evaluation: greedy pass@1, sampled pass@k (unbiased estimator) and output diversity."""

from __future__ import annotations

from math import comb
from typing import Any

from synthloom.selfimprove.data import Problem, user_prompt
from synthloom.selfimprove.policy import Policy
from synthloom.verify.math import verify_answer


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al. 2021: P(at least one of k draws from n samples with c correct is correct)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def is_correct(text: str, answer: str, strict: bool = False) -> bool:
    """Answer matches gold. strict: only an explicit marker ("The answer is N") counts, never the
    last number of a rambling text (which is right by luck often enough to poison training data)."""
    return bool(verify_answer(text, answer, fallback_last_number=not strict)["ok"])


def diversity(texts: list[str]) -> dict[str, float]:
    """distinct-1/2 (unique n-grams / all n-grams): falls when a loop collapses onto one template."""
    from synthloom.quality.diversity import distinct_n

    texts = [t for t in texts if t.strip()]
    if not texts:
        return {"distinct_1": 0.0, "distinct_2": 0.0}
    return {"distinct_1": round(distinct_n(texts, 1), 4), "distinct_2": round(distinct_n(texts, 2), 4)}


def evaluate(policy: Policy, problems: list[Problem], k: int = 0, temperature: float = 0.8,
             max_new_tokens: int = 48, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(summary, per-problem rows). pass@1 is greedy; with k > 0, pass@k from k samples at `temperature`."""
    prompts = [user_prompt(p.question) for p in problems]
    greedy = [outs[0] for outs in policy.generate(prompts, n=1, temperature=0.0, max_new_tokens=max_new_tokens)]
    rows: list[dict[str, Any]] = [{"id": p.id, "question": p.question, "answer": p.answer, "greedy": g,
                                   "correct": is_correct(g, p.answer), "correct_strict": is_correct(g, p.answer, True)}
            for p, g in zip(problems, greedy)]
    # pass@1 keeps the last-number fallback (the base model is not penalised for format); strict does not
    summary: dict[str, Any] = {"n": len(problems), "pass@1": _mean([r["correct"] for r in rows]),
                               "pass@1_strict": _mean([r["correct_strict"] for r in rows]),
                               "greedy_diversity": diversity(greedy)}
    if k > 0:
        samples = policy.generate(prompts, n=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
        for row, p, outs in zip(rows, problems, samples):
            row["samples_correct"] = sum(is_correct(o, p.answer) for o in outs)
        summary[f"pass@{k}"] = _mean([pass_at_k(k, r["samples_correct"], k) for r in rows])
        summary["sampled_pass@1"] = _mean([r["samples_correct"] / k for r in rows])
        summary["sample_diversity"] = diversity([o for outs in samples for o in outs])
    return summary, rows


def _mean(values: list[Any]) -> float:
    return round(sum(float(v) for v in values) / len(values), 4) if values else 0.0
