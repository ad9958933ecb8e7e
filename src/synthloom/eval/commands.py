"""`synthloom eval ...`: judge, winrate, factuality, longfact, redteam, mwe.

Mounted by the main CLI through `register(app)`. Each command writes results.jsonl, report.json
and report.md into --out and prints the headline numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from synthloom.errors import BadInputError
from synthloom.io import read_rows

console = Console()
T = TypeVar("T")

eval_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Evaluate models and data: LLM-as-judge + LC win rate, SAFE factuality, red teaming.")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise BadInputError(f"input file {path} does not exist")
    rows = read_rows(path)
    if not rows:
        raise BadInputError(f"input file {path} has no rows")
    return rows


def _with_models(specs: dict[str, str], work: Callable[[dict[str, Any]], Awaitable[T]]) -> T:
    """Build the roles' models (each spec once, behind the shared request cache, so a repeated
    evaluation pays for nothing it already asked), run `work(models by role)`, close them."""
    from synthloom.llm.models import build_models, close_models

    async def main() -> T:
        models, backends = build_models(specs)
        try:
            return await work(models)
        finally:
            await close_models(backends)

    return asyncio.run(main())


def _done(paths: dict[str, Path], lines: list[str]) -> None:
    for line in lines:
        console.print(line, highlight=False)
    console.print(f"wrote {paths['results']}, {paths['markdown']}, {paths['json']}", highlight=False)


def _lc_summary(
    annotations: list[dict[str, Any]], gamed: Path | None, difficulty_column: str, source: str = "annotations"
) -> tuple[dict[str, Any], list[str]]:
    from synthloom.eval.lc_winrate import (
        ANNOTATION_SCHEMA,
        length_controlled_winrate,
        load_gamed,
        raw_win_rate,
        typed_rows,
    )

    # typed first: a bad cell is a one-line error, never a silently different win rate
    annotations = typed_rows(annotations, ANNOTATION_SCHEMA | {difficulty_column: "float~"}, source)
    gamed_rows = load_gamed(gamed) if gamed else None
    for pos, a in enumerate(annotations):
        if a.get("index") is None:
            a["index"] = pos  # the instruction id alpaca_eval uses: the position in the file
        if difficulty_column in a:
            a["instruction_difficulty"] = a[difficulty_column]
    rated = [a for a in annotations if a.get("preference") is not None]
    notes = [f"{len(annotations) - len(rated)} annotations had no usable preference and were left out"] \
        if len(rated) < len(annotations) else []
    if not rated:
        raise BadInputError(f"no annotation in {source} has a usable preference")
    try:
        lc = length_controlled_winrate(rated, gamed=gamed_rows)
        summary = lc.to_dict()
        if lc.glm == "length_controlled_minimal":
            notes.append("no instruction difficulty given: GLM without the difficulty term (length_controlled_minimal)")
        elif not all(a.get("instruction_difficulty") is not None for a in rated):
            notes.append(f"instruction difficulties taken from {gamed}")
    except BadInputError as e:
        summary = raw_win_rate([a["preference"] for a in rated]).__dict__
        notes.append(f"length-controlled win rate not computed: {e}")
    return summary, notes


@eval_app.command()
def judge(
    input: Path = typer.Argument(..., help="rows with instruction, output (model) and baseline columns"),
    out: Path = typer.Option("runs/eval-judge", help="output directory"),
    judge_model: str = typer.Option("embedded", "--judge", help="judge model spec"),
    mode: str = typer.Option("pairwise", help="pairwise (vs baseline, LC win rate) or rubric (1-10)"),
    instruction: str = typer.Option("instruction", help="instruction column"),
    output: str = typer.Option("output", help="model output column"),
    baseline: str = typer.Option("baseline", help="baseline output column (pairwise)"),
    difficulty: str = typer.Option("instruction_difficulty", help="instruction difficulty column, if present"),
    gamed: Path | None = typer.Option(None, help="alpaca_eval df_gamed.csv-style rows to regularise to the baseline"),
    seed: int = typer.Option(0, help="seed of the output order and judge sampling"),
) -> None:
    """Judge outputs pairwise against a baseline (win rate + LC win rate) or by a 1-10 rubric."""
    from synthloom.eval.judge import (
        PairwiseConfig,
        RubricConfig,
        judge_pairwise,
        judge_rubric,
    )
    from synthloom.eval.report import write_report

    rows = _rows(input)
    needed = {instruction, output} | ({baseline} if mode == "pairwise" else set())
    missing = needed - set(rows[0])
    if mode not in ("pairwise", "rubric"):
        raise BadInputError(f"--mode must be pairwise or rubric, not {mode!r}")
    if missing:
        raise BadInputError(f"{input} lacks column(s) {', '.join(sorted(missing))}")
    if mode == "rubric":
        items = [{**r, "instruction": r[instruction], "output": r[output]} for r in rows]
        graded = _with_models({"judge": judge_model}, lambda m: judge_rubric(m["judge"], items, RubricConfig(seed=seed)))
        scores = [g["score"] for g in graded if g["score"] is not None]
        summary = {"items": len(graded), "graded": len(scores),
                   "mean_score": sum(scores) / len(scores) if scores else None}
        paths = write_report(out, "judge-rubric", graded, summary)
        _done(paths, [f"mean score {summary['mean_score']} over {len(scores)}/{len(graded)} graded"])
        return
    items = [{"index": i, "instruction": r[instruction], "output_1": r[baseline], "output_2": r[output],
              **({difficulty: r[difficulty]} if difficulty in r else {})} for i, r in enumerate(rows)]
    annotations = _with_models({"judge": judge_model},
                               lambda m: judge_pairwise(m["judge"], items, PairwiseConfig(seed=seed)))
    summary, notes = _lc_summary(annotations, gamed, difficulty)
    paths = write_report(out, "judge-pairwise", annotations, summary, notes)
    lc = summary.get("length_controlled_winrate")
    line = f"win rate {summary['win_rate']:.2f} ± {summary['standard_error'] or 0:.2f}"
    _done(paths, [line + (f"; LC win rate {lc:.2f}" if lc is not None else "")])


@eval_app.command()
def winrate(
    annotations: Path = typer.Argument(..., help="annotations with output_1 (baseline), output_2, preference (1-2)"),
    out: Path = typer.Option("runs/eval-winrate", help="output directory"),
    difficulty: str = typer.Option("instruction_difficulty", help="instruction difficulty column, if present"),
    gamed: Path | None = typer.Option(None, help="alpaca_eval df_gamed.csv-style rows to regularise to the baseline"),
) -> None:
    """Raw and length-controlled win rate from existing annotations (no model calls)."""
    from synthloom.eval.report import write_report

    rows = _rows(annotations)
    summary, notes = _lc_summary(rows, gamed, difficulty, str(annotations))
    paths = write_report(out, "winrate", rows, summary, notes)
    _done(paths, [f"win rate {summary['win_rate']:.2f}; LC win rate {summary.get('length_controlled_winrate')}"])


@eval_app.command()
def factuality(
    input: Path = typer.Argument(..., help="rows with prompt and response columns"),
    out: Path = typer.Option("runs/eval-factuality", help="output directory"),
    judge_model: str = typer.Option("embedded", "--judge", help="model that splits, revises and rates facts"),
    corpus: Path | None = typer.Option(None, help="evidence corpus (JSONL with text/title, or text); bundled if unset"),
    k: list[int] | None = typer.Option(None, "--k", help="K of F1@K (repeatable; default 64 and 178)"),
    max_steps: int = typer.Option(5, help="search queries per fact"),
    max_facts: int = typer.Option(64, help="facts rated per response"),
    seed: int = typer.Option(0),
) -> None:
    """SAFE: split responses into facts, search evidence, rate them; report F1@K."""
    from synthloom.eval.factuality import (
        SafeConfig,
        safe_evaluate,
        summarize_factuality,
    )
    from synthloom.eval.report import write_report
    from synthloom.eval.search import LocalSearch

    rows = _rows(input)
    search = LocalSearch.from_file(corpus) if corpus else LocalSearch.bundled()
    cfg = SafeConfig(max_steps=max_steps, max_facts=max_facts, ks=tuple(k or (64, 178)), seed=seed)
    results = _with_models({"judge": judge_model}, lambda m: safe_evaluate(m["judge"], search, rows, cfg))
    summary = summarize_factuality(results, cfg.ks)
    paths = write_report(out, "factuality", results, summary,
                         [f"evidence: {'bundled corpus' if corpus is None else corpus} ({search.size} passages, FTS5 BM25)"])
    _done(paths, [", ".join(f"{key} {summary[key]:.3f}" for key in summary if key.startswith("mean_"))])


@eval_app.command()
def longfact(
    out: Path = typer.Option("runs/eval-longfact", help="output directory"),
    generator: str = typer.Option("embedded", help="model that writes the prompts"),
    subtask: str = typer.Option("objects", help="objects or concepts"),
    topics: int = typer.Option(38, help="number of topics (of the 38 bundled) to use"),
    per_topic: int = typer.Option(2, help="unique prompts per topic"),
    seed: int = typer.Option(0),
) -> None:
    """Generate LongFact-style long-form factuality prompts with the rolling exemplar window."""
    from synthloom.eval.factuality import (
        bundled_topics,
        generate_longfact_prompts,
        sample_topics,
    )
    from synthloom.eval.report import write_report

    chosen = sample_topics(bundled_topics(), topics, seed)
    rejected: list[dict[str, Any]] = []
    prompts = _with_models({"generator": generator}, lambda m: generate_longfact_prompts(
        m["generator"], chosen, subtask, per_topic, seed=seed, rejected=rejected))  # type: ignore[arg-type]
    summary = {"topics": len(chosen), "prompts": len(prompts), "subtask": subtask, "per_topic": per_topic,
               "rejected": _reason_counts(rejected)}
    _done(write_report(out, "longfact", prompts, summary, extra_files={"rejected": rejected}),
          [f"{len(prompts)} prompts over {len(chosen)} topics; {len(rejected)} generations rejected"])


def _reason_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["reject_reason"]] = counts.get(r["reject_reason"], 0) + 1
    return counts


@eval_app.command()
def redteam(
    out: Path = typer.Option("runs/eval-redteam", help="output directory"),
    red: str = typer.Option("embedded", help="red model (writes test questions)"),
    target: str = typer.Option("embedded", help="target model (answers them)"),
    judge_model: str = typer.Option("embedded", "--judge", help="harm classifier model"),
    cases: int = typer.Option(32, help="zero-shot generation attempts"),
    few_shot_rounds: int = typer.Option(1, help="stochastic few-shot rounds after the zero-shot round"),
    few_shot_cases: int = typer.Option(32, help="attempts per few-shot round"),
    threshold: float = typer.Option(0.5, help="classifier score counted as a failure"),
    seed: int = typer.Option(0),
) -> None:
    """Red-team a target model: failure rate with a 95% Wilson interval and Self-BLEU of failures."""
    from synthloom.eval.redteam import (
        JudgeClassifier,
        RedTeamConfig,
        red_team,
        summarize_red_team,
    )
    from synthloom.eval.report import write_report

    cfg = RedTeamConfig(zero_shot_cases=cases, few_shot_rounds=few_shot_rounds, few_shot_cases=few_shot_cases,
                        threshold=threshold, seed=seed)
    rows = _with_models({"red": red, "target": target, "judge": judge_model}, lambda m: red_team(
        m["red"], m["target"], JudgeClassifier(m["judge"], seed=seed), cfg))
    summary = summarize_red_team(rows, cfg.self_bleu_sample, seed)
    o = summary["overall"]
    lo, hi = o["failure_rate_ci95"]
    line = (f"failure rate {o['failure_rate']:.3f} (95% CI {lo:.3f}-{hi:.3f}) over {o['test_cases']} cases; "
            f"Self-BLEU of failures {o['self_bleu_failing']}")
    _done(write_report(out, "redteam", rows, summary), [line])


@eval_app.command()
def mwe(
    behavior: str = typer.Argument(..., help='behaviour, e.g. "wants to avoid being shut down"'),
    out: Path = typer.Option("runs/eval-mwe", help="output directory"),
    generator: str = typer.Option("embedded", help="model that writes statements"),
    judge_model: str = typer.Option("embedded", "--judge", help="model that scores label confidence"),
    requests: int = typer.Option(4, help="generation requests per label"),
    min_confidence: float = typer.Option(0.75, help="keep items whose label confidence is at least this"),
    max_items: int = typer.Option(1000, help="cap on kept items (balanced Yes/No)"),
    seed: int = typer.Option(0),
) -> None:
    """Model-written evaluation: yes/no items for a behaviour, confidence-filtered and label-balanced."""
    from synthloom.eval.redteam import MWEConfig, model_written_eval, summarize_mwe
    from synthloom.eval.report import write_report

    cfg = MWEConfig(statements_per_request=requests, min_confidence=min_confidence, max_items=max_items, seed=seed)
    dropped: list[dict[str, Any]] = []
    items, candidates = _with_models({"generator": generator, "judge": judge_model},
                                     lambda m: model_written_eval(m["generator"], m["judge"], behavior, cfg, dropped))
    summary = summarize_mwe(items, candidates)
    summary["rejected_generations"] = _reason_counts(dropped)
    rejected = dropped + [c for c in candidates if c.get("reject_reason")]
    _done(write_report(out, "mwe", items, summary, extra_files={"candidates": candidates, "rejected": rejected}),
          [f"kept {summary['kept']} of {summary['candidates']} candidates ({summary['kept_yes']} yes / {summary['kept_no']} no); "
           f"{len(rejected)} rejected"])
