"""ROUGE-L novelty pool inside the self_instruct recipe: synthloom's NoveltyPool vs rouge-score.

The recipe's generation step (`self_instruct_generate`) runs for real through the pipeline engine:
a scripted model returns numbered lists of candidate instructions (fresh ones and light edits of
pool members, so some are rejected), the step filters them and checks each against the online pool
seeded with the seed instructions. The baseline is the same step with the pool replaced by one that
scores with rouge-score's scorer (pre-tokenised `_score_lcs` against every member, as Self-Instruct
does). Speed is candidate-vs-member pairs per second of the step; decisions must be identical.
Runs alternate ours and the baseline; the median ratio is printed.

    .venv/bin/python benchmarks/bench_code_recipes.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from rouge_score import rouge_scorer

from synthloom.llm.scripted import ScriptedModel
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.quality.rouge import Novelty
from synthloom.recipes import code_steps, self_instruct

VERBS = ["write", "implement", "create", "compute", "return", "convert", "parse", "validate", "sort", "merge", "count", "find",
         "build", "check"]
OBJECTS = ("a function", "a class", "a generator", "a script", "a method", "a decorator", "a query",
           "a recursive function", "an iterator", "a helper")
TASKS = ("that reverses a linked list", "that counts distinct words in a sentence", "that merges two sorted arrays",
         "that validates an email address", "that parses a date string", "that finds the longest common prefix",
         "that computes a moving average", "that flattens a nested dictionary", "that detects a cycle in a graph",
         "that serialises a tree to a string", "that rotates a matrix in place", "that removes duplicate rows",
         "that tokenises an arithmetic expression", "that schedules tasks by priority", "that encodes run lengths")
EXTRAS = ("in Python", "without recursion", "in linear time", "using a heap", "with type hints", "and tests",
          "for large inputs", "using only the standard library", "with clear error messages", "")


def instruction(rng: random.Random) -> str:
    return " ".join(x for x in (rng.choice(VERBS).capitalize(), rng.choice(OBJECTS), rng.choice(TASKS),
                                rng.choice(EXTRAS), rng.choice(EXTRAS), f"case {rng.randrange(10**6)}") if x)


def edit(text: str, rng: random.Random) -> str:
    words = text.split()
    words[rng.randrange(len(words))] = rng.choice(VERBS)
    return " ".join(words)


class RougeScorePool:
    """The baseline: Self-Instruct's loop, every candidate scored against every member by rouge-score."""

    def __init__(self, threshold: float = 0.7, initial=(), tokenizer=None) -> None:
        self.threshold = threshold
        self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        self.texts: list[str] = []
        self.tokens: list[list[str]] = []
        for t in initial:
            self.add(t)

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str) -> None:
        self.texts.append(text)
        self.tokens.append(self.scorer._tokenizer.tokenize(text))

    def add_if_novel(self, text: str) -> Novelty:
        tokens = self.scorer._tokenizer.tokenize(text)
        best, idx = 0.0, None
        for i, member in enumerate(self.tokens):
            f = rouge_scorer._score_lcs(member, tokens).fmeasure
            if f > best:
                best, idx = f, i
        accepted = not best > self.threshold
        if accepted:
            self.texts.append(text)
            self.tokens.append(tokens)
        return Novelty(accepted, best, self.texts[idx] if idx is not None else None)


def workload(n_seeds: int, n_candidates: int, per_prompt: int) -> tuple[list[dict], list[str]]:
    rng = random.Random(7)
    seeds = [{"instruction": instruction(rng)} for _ in range(n_seeds)]
    completions = []
    for _ in range(0, n_candidates, per_prompt):
        items = [edit(rng.choice(seeds)["instruction"], rng) if rng.random() < 0.3 else instruction(rng)
                 for _ in range(per_prompt)]
        completions.append("\n".join(f"{9 + i}. {t}" for i, t in enumerate(items))[3:])
    return seeds, completions


async def run_step(seeds: list[dict], completions: list[str], per_prompt: int, baseline: bool) -> tuple[float, list, int]:
    queue = list(completions)
    pairs = 0
    real_pool = code_steps.NoveltyPool

    def counting_pool(*args, **kwargs):
        pool = RougeScorePool(*args, **kwargs) if baseline else real_pool(*args, **kwargs)
        original = pool.add_if_novel

        def add_if_novel(text: str) -> Novelty:
            nonlocal pairs
            pairs += len(pool)
            return original(text)

        pool.add_if_novel = add_if_novel  # type: ignore[method-assign]
        return pool

    def answer(request):
        return queue.pop(0) if queue else "9. "

    options = self_instruct.Options(num_instructions=10**6, prompts_per_round=1, max_rounds=len(completions),
                                    instances=False, decontaminate=False)
    pipeline = self_instruct.build(options)
    pipeline.source.generator = lambda: seeds
    with tempfile.TemporaryDirectory() as d, mock.patch.object(code_steps, "NoveltyPool", counting_pool):
        t0 = time.perf_counter()
        result = await run_pipeline_async(pipeline, RunOptions(out=Path(d) / "run", formats=("jsonl",)),
                                          models={"generator": ScriptedModel(answer)})
        seconds = time.perf_counter() - t0
    return seconds, [r["instruction"] for r in result.rows], pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workload (CI)")
    args = parser.parse_args()
    n_seeds, n_cand, rounds = (300, 60, 3) if args.quick else (1000, 200, 3)
    per_prompt = 20
    seeds, completions = workload(n_seeds, n_cand, per_prompt)
    ours_t, base_t, ratios = [], [], []
    for _ in range(rounds):
        t_ours, kept_ours, pairs = asyncio.run(run_step(seeds, completions, per_prompt, baseline=False))
        t_base, kept_base, pairs_base = asyncio.run(run_step(seeds, completions, per_prompt, baseline=True))
        if kept_ours != kept_base or pairs != pairs_base:
            raise SystemExit("decisions differ between NoveltyPool and rouge-score")
        ours_t.append(pairs / t_ours)
        base_t.append(pairs / t_base)
        ratios.append(t_base / t_ours)
    print(f"self_instruct novelty step: {n_seeds} seeds, {n_cand} candidates, {pairs} pairs, "
          f"{len(kept_ours)} accepted (decisions identical)")
    print(f"  synthloom NoveltyPool : {statistics.median(ours_t):12,.0f} pairs/s (whole step)")
    print(f"  rouge-score baseline  : {statistics.median(base_t):12,.0f} pairs/s (whole step)")
    print(f"  ratio (ours / baseline, median of {rounds}): {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
