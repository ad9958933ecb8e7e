"""CLI commands of the quality kit: `dedup`, `decontam`, `diversity`, `perplexity` (mounted by
synthloom.cli).

Each reads a JSONL/Parquet/CSV file, works on one text column, writes its result file and prints a
one-line JSON summary. User mistakes exit 2 with one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, Optional

import typer

from synthloom.errors import BadInputError, SynthloomError


def _one_line_errors(fn: Callable[..., None]) -> Callable[..., None]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except SynthloomError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


def _load(path: Path, column: str) -> tuple[list[dict[str, Any]], list[str]]:
    from synthloom.io import read_rows

    rows = read_rows(path)
    if not rows:
        raise BadInputError(f"{path} has no rows")
    missing = sum(1 for r in rows if column not in r)
    if missing:
        cols = ", ".join(sorted({k for r in rows[:50] for k in r if not k.startswith("_")}))
        raise BadInputError(f"{path}: column {column!r} missing in {missing} of {len(rows)} rows (columns: {cols})")
    return rows, ["" if r[column] is None else str(r[column]) for r in rows]


def _write_rows(rows: list[dict[str, Any]], out: Path) -> None:
    from synthloom.io import write_jsonl, write_parquet

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        write_parquet(rows, out)
    else:
        write_jsonl(rows, out)


def _default_out(path: Path, tag: str) -> Path:
    suffix = ".parquet" if path.suffix.lower() == ".parquet" else ".jsonl"
    return path.with_name(f"{path.stem}.{tag}{suffix}")


def register(app: typer.Typer) -> None:
    """Add the `dedup`, `decontam`, `diversity` and `perplexity` commands to a Typer app."""

    @app.command()
    @_one_line_errors
    def dedup(
        file: Path = typer.Argument(..., help="input JSONL / Parquet / CSV"),
        column: str = typer.Option("text", "--column", "-c", help="text column to compare"),
        method: str = typer.Option("minhash", help="exact | minhash | semantic"),
        threshold: Optional[float] = typer.Option(None, help="Jaccard (minhash, default 0.7) or cosine (semantic, default 0.9)"),
        ngram: int = typer.Option(5, help="shingle size in words (minhash)"),
        num_perm: int = typer.Option(256, help="MinHash permutations"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="kept rows (default FILE.dedup.jsonl)"),
    ) -> None:
        """Remove exact, near (MinHash-LSH) or semantic duplicates; keeps the first of each cluster."""
        from synthloom.quality.minhash import (
            MinHashSettings,
            exact_dedup,
            minhash_dedup,
        )

        rows, texts = _load(file, column)
        if method == "exact":
            result = exact_dedup(texts)
        elif method == "minhash":
            result = minhash_dedup(texts, MinHashSettings(ngram, num_perm, 0.7 if threshold is None else threshold))
        elif method == "semantic":
            from synthloom.quality.embeddings import default_embedder
            from synthloom.quality.semdedup import semantic_dedup

            result = semantic_dedup(texts, default_embedder(), 0.9 if threshold is None else threshold)
        else:
            raise BadInputError(f"unknown dedup method {method!r}: use exact, minhash or semantic")
        target = out or _default_out(file, "dedup")
        _write_rows([r for r, k in zip(rows, result.keep) if k], target)
        typer.echo(json.dumps(result.summary() | {"output": str(target)}))

    @app.command()
    @_one_line_errors
    def decontam(
        file: Path = typer.Argument(..., help="input JSONL / Parquet / CSV"),
        benchmark: list[str] = typer.Option(..., "--benchmark", "-b", help="humaneval | champ | PATH[:column] (repeatable)"),
        column: str = typer.Option("text", "--column", "-c"),
        ngram: int = typer.Option(13, help="n-gram size in words"),
        judge: Optional[str] = typer.Option(None, help="model spec for the LLM judge (enables embedding retrieval + judge)"),
        judge_kind: str = typer.Option("code", help="code | math | knowledge"),
        top_k: int = typer.Option(1, help="retrieved rows per benchmark item"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="clean rows (default FILE.clean.jsonl)"),
        report: Optional[Path] = typer.Option(None, help="hit report JSON (default FILE.decontam.json)"),
    ) -> None:
        """Find and remove rows overlapping evaluation benchmarks (n-gram; optionally embedding + judge)."""
        from synthloom.quality.benchmarks_data import load_benchmark

        rows, texts = _load(file, column)
        items = [it for b in benchmark for it in load_benchmark(b)]
        if judge_kind not in ("code", "math", "knowledge"):
            raise BadInputError(f"unknown judge kind {judge_kind!r}: use code, math or knowledge")
        embedder = None
        if judge:
            from synthloom.quality.embeddings import default_embedder

            embedder = default_embedder()
        result = asyncio.run(_decontaminate_with_judge(texts, items, ngram, embedder, judge, top_k, judge_kind))
        dirty = result.contaminated_rows()
        target = out or _default_out(file, "clean")
        _write_rows([r for i, r in enumerate(rows) if i not in dirty], target)
        report_path = report or file.with_name(f"{file.stem}.decontam.json")
        report_path.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        typer.echo(json.dumps({"rows": len(rows), "contaminated": len(dirty), "benchmarks": benchmark,
                               "output": str(target), "report": str(report_path)}))

    @app.command()
    @_one_line_errors
    def diversity(
        file: Path = typer.Argument(..., help="input JSONL / Parquet / CSV"),
        column: str = typer.Option("text", "--column", "-c"),
        embeddings: bool = typer.Option(
            False, "--embeddings/--no-embeddings", help="also embedding distance and Vendi score (loads MiniLM)"
        ),
        sample: int = typer.Option(500, help="Self-BLEU sample size (compare datasets only at equal size)"),
        seed: int = typer.Option(0),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the report JSON here too"),
    ) -> None:
        """Diversity report: distinct-1/2, Self-BLEU-4, and optionally embedding distance and Vendi score."""
        from synthloom.quality.diversity import diversity_report

        _, texts = _load(file, column)
        embedder = None
        if embeddings:
            from synthloom.quality.embeddings import default_embedder

            embedder = default_embedder()
        rep = diversity_report(texts, embedder, self_bleu_sample=sample, seed=seed)
        text = json.dumps(rep, ensure_ascii=False)
        if out:
            out.write_text(json.dumps(rep, indent=2, ensure_ascii=False), encoding="utf-8")
        typer.echo(text)

    @app.command()
    @_one_line_errors
    def perplexity(
        file: Path = typer.Argument(..., help="input JSONL / Parquet / CSV"),
        column: str = typer.Option("text", "--column", "-c"),
        model: str = typer.Option("embedded", "--model", "-m", help="model spec that can score text (embedded)"),
        max_perplexity: Optional[float] = typer.Option(None, "--max", help="drop rows above this perplexity"),
        min_perplexity: Optional[float] = typer.Option(None, "--min", help="drop rows below this perplexity"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="rows with a perplexity column (default FILE.ppl.jsonl)"),
    ) -> None:
        """Perplexity of each row's text under a reference LM; with --max/--min, keep rows within bounds."""
        rows, texts = _load(file, column)
        values = asyncio.run(_perplexities(model, texts))
        bounded = max_perplexity is not None or min_perplexity is not None

        def within(v: float | None) -> bool:
            if v is None:
                return not bounded
            return (max_perplexity is None or v <= max_perplexity) and (min_perplexity is None or v >= min_perplexity)

        kept = [{**r, "perplexity": v} for r, v in zip(rows, values) if within(v)]
        target = out or _default_out(file, "ppl")
        _write_rows(kept, target)
        scored = sorted(v for v in values if v is not None)
        quantiles = {}
        for q in (10, 50, 90) if scored else ():
            quantiles[f"p{q}"] = round(scored[min(len(scored) - 1, len(scored) * q // 100)], 3)
        typer.echo(json.dumps({"rows": len(rows), "scored": len(scored), "kept": len(kept), **quantiles,
                               "output": str(target)}))


async def _decontaminate_with_judge(texts: list[str], items: list[Any], ngram: int, embedder: Any,
                                    judge: str | None, top_k: int, judge_kind: str) -> Any:
    """decontaminate() with the judge spec built behind the shared request cache (and closed)."""
    from synthloom.llm.models import build_models, close_models
    from synthloom.quality.decontam import decontaminate

    models, backends = build_models({"judge": judge}) if judge else ({"judge": None}, [])
    try:
        return await decontaminate(texts, items, ngram, embedder, models["judge"], top_k,
                                   judge_kind=judge_kind)  # type: ignore[arg-type]
    finally:
        await close_models(backends)


async def _perplexities(spec: str, texts: list[str]) -> list[float | None]:
    """Perplexity per text (None when empty or longer than the model's context), with a progress bar."""
    from rich.console import Console
    from rich.progress import Progress

    from synthloom.llm.base import InvalidRequestError, can_score
    from synthloom.llm.models import build_models

    models, backends = build_models({"scorer": spec})  # scores are cached like answers
    model = models["scorer"]
    try:
        if not can_score(model):
            raise BadInputError(
                f"model {spec!r} cannot score text; use an embedded model, or add ?score=true to an openai: "
                "spec whose server answers /completions with echo and logprobs"
            )
        console = Console(stderr=True)
        values: list[float | None] = [None] * len(texts)
        with Progress(console=console, disable=not console.is_terminal, transient=True) as bar:
            task = bar.add_task("scoring", total=len(texts))

            async def one(i: int) -> None:
                if texts[i].strip():
                    try:
                        values[i] = (await model.score([texts[i]]))[0].perplexity
                    except InvalidRequestError:
                        pass  # too long for the context: left unscored
                bar.advance(task)

            await asyncio.gather(*(one(i) for i in range(len(texts))))
        return values
    finally:
        from synthloom.llm.models import close_models

        await close_models(backends)
