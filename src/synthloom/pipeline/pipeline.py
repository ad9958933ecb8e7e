"""Pipelines: a source of rows plus an ordered list of steps; YAML recipes resolve to the same object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import yaml

from synthloom.errors import BadInputError, ConfigError
from synthloom.io import read_rows
from synthloom.pipeline import builtins as _builtins  # noqa: F401  (registers built-in steps)
from synthloom.pipeline import model_step as _model_step  # noqa: F401
from synthloom.pipeline.gate import GATE_NAME, VerdictGate, is_gate
from synthloom.pipeline.step import (STEP_TYPES, Rejected, Step, StepContext, apply_step, build_step,
                                     register_step)
from synthloom.records import META, Row, canonical_json, sha256_hex


class Source:
    """Where a pipeline's rows come from: a file, inline rows, or a Python generator function."""

    def __init__(self, path: str | None = None, rows: list[Row] | None = None,
                 generator: Callable[[], list[Row]] | None = None, fmt: str = "auto",
                 description: str = ""):
        self.path, self.rows, self.generator, self.fmt = path, rows, generator, fmt
        self.description = description or (f"file {path}" if path else "inline rows")

    def load(self) -> list[Row]:
        if self.path is not None:
            rows = read_rows(self.path, self.fmt)
            where = self.path
        elif self.generator is not None:
            rows = list(self.generator())
            where = self.description
        elif self.rows is not None:
            rows = [dict(r) for r in self.rows]
            where = "inline rows"
        else:
            raise BadInputError("this recipe needs input rows: pass --input FILE")
        if not rows:
            raise BadInputError(f"input {where} has no rows")
        return rows

    def config(self) -> dict[str, Any]:
        if self.path is not None:
            return {"path": str(self.path), "format": self.fmt}
        return {"description": self.description}


@register_step("branch")
class Branch(Step):
    """Run several sub-pipelines on the same rows and union their outputs (fan-out recipes).

    Each output row gets `branch_column` = the branch's name, so funnels can be split per stream.
    """

    branches: dict[str, list[Any]]
    branch_column: str = "branch"

    def model_post_init(self, context: Any) -> None:
        built: dict[str, list[Step]] = {}
        for bname, steps in self.branches.items():
            built[bname] = [s if isinstance(s, Step) else build_step(s) for s in steps]
            for s in built[bname]:
                if s.is_global:
                    raise ConfigError(f"branch {self.name}/{bname}: global step {s.name!r} cannot run "
                                      "inside a branch; put it after the branch")
        self.branches = built

    def input_columns(self) -> set[str]:
        return set().union(*(validate_steps(steps, None, f"{self.name}/{b}")[1]
                             for b, steps in self.branches.items())) if self.branches else set()

    def output_columns(self, available: set[str]) -> set[str]:
        outs = [validate_steps(steps, available, f"{self.name}/{b}")[0] for b, steps in self.branches.items()]
        return set().union(*outs) | {self.branch_column}

    def model_roles(self) -> set[str]:
        return set().union(*(s.model_roles() for steps in self.branches.values() for s in steps))

    def config(self) -> dict[str, Any]:
        return {"type": "branch", "name": self.name, "branch_column": self.branch_column,
                "branches": {b: [s.config() for s in steps] for b, steps in self.branches.items()}}

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        # Outcomes are grouped per input row so the executor's 1-outcome-per-row check holds.
        per_row: dict[int, list[Any]] = {i: [] for i in range(len(rows))}
        index_of = {id(r): i for i, r in enumerate(rows)}
        for bname, steps in self.branches.items():
            current = [(i, r) for i, r in enumerate(rows)]
            for j, step in enumerate(steps):
                sub = ctx.for_step(f"{self.name}/{bname}/{step.name}", ctx.step_index)
                origin = {id(r): i for i, r in current}
                kept, rejected = await apply_step(step, [r for _, r in current], sub)
                for rej in rejected:
                    i = origin.get(id(rej.row), index_of.get(id(rej.row), 0))
                    per_row[i].append(Rejected(f"{bname}.{step.name}:{rej.reason}", rej.row, rej.detail))
                current = [(_trace_origin(r, current, origin), r) for r in kept]
            for i, r in current:
                r[self.branch_column] = bname
                per_row[i].append(r)
        return [per_row[i] for i in range(len(rows))]


def _trace_origin(row: Row, previous: list[tuple[int, Row]], origin: dict[int, int]) -> int:
    """Which input row a sub-step's output came from (by object identity or parent id)."""
    if id(row) in origin:
        return origin[id(row)]
    parents = row.get(META, {}).get("parents", [])
    for i, prev in previous:
        if prev.get(META, {}).get("id") in parents:
            return i
    return previous[0][0] if previous else 0


def validate_steps(steps: list[Step], available: set[str] | None, where: str = "") -> tuple[set[str], set[str]]:
    """Check every step's inputs exist before it runs.

    Returns (columns after the last step, columns needed from the input). With `available`
    None, only collects what the steps need from their input.
    """
    needed: set[str] = set()
    cols = set(available) if available is not None else None
    produced_by: dict[str, str] = {}
    for step in steps:
        missing = step.input_columns() - (cols if cols is not None else set(produced_by))
        if cols is None:
            needed |= missing
        elif missing:
            col = sorted(missing)[0]
            have = ", ".join(sorted(c for c in cols if c != META)) or "none"
            label = f"{where}/{step.name}" if where else step.name
            raise ConfigError(
                f"step {label!r} needs column {col!r}, which neither the input nor an earlier step "
                f"produces (available: {have}); add a step that produces {col!r} before {step.name!r} "
                "or rename an input column"
            )
        before = cols if cols is not None else set(produced_by)
        after = step.output_columns(before)
        for c in after - before:
            produced_by[c] = step.name
        if cols is not None:
            cols = after
    return (cols if cols is not None else set(produced_by)), needed


class Pipeline:
    """A named, ordered list of steps with a source and the model roles it uses.

    `required_checks` names the verdicts a row must pass to enter train; `advisory_checks` the
    recorded verdicts that are informational only (e.g. a draft a later step corrected). The
    engine appends the verdict gate (pipeline/gate.py) as the last step of every pipeline, so no
    row with a failed check reaches train whatever the recipe does. `keep_unverified` also writes
    the rows the gate stopped to the separate `data/unverified.*` split.
    """

    def __init__(self, name: str, steps: list[Step], source: Source | None = None,
                 models: dict[str, str] | None = None, description: str = "",
                 options: dict[str, Any] | None = None, shard_size: int = 64,
                 required_checks: list[str] | tuple[str, ...] = (),
                 advisory_checks: list[str] | tuple[str, ...] = (), keep_unverified: bool = False):
        self.name = name
        self.required_checks = list(required_checks)
        self.advisory_checks = list(advisory_checks)
        self.keep_unverified = bool(keep_unverified)
        steps = [s for s in steps if not is_gate(s)]
        if any(s.name == GATE_NAME for s in steps):
            raise ConfigError(f"pipeline {name!r}: the step name {GATE_NAME!r} is reserved for the verdict gate")
        self.steps = steps + [VerdictGate(name=GATE_NAME, required=self.required_checks,
                                          advisory=self.advisory_checks)]
        self.source = source
        self.models = dict(models or {"generator": "embedded"})
        self.description = description
        self.options = dict(options or {})
        self.shard_size = shard_size
        names = [s.name for s in steps]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"pipeline {name!r}: step names must be unique, repeated: {', '.join(sorted(dup))}")

    def model_roles(self) -> set[str]:
        return set().union(*(s.model_roles() for s in self.steps))

    def validate(self, input_columns: set[str]) -> set[str]:
        return validate_steps(self.steps, set(input_columns))[0]

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "options": self.options,
            "models": self.models,
            "source": self.source.config() if self.source else None,
            "shard_size": self.shard_size,
            "required_checks": self.required_checks,
            "advisory_checks": self.advisory_checks,
            "keep_unverified": self.keep_unverified,
            "steps": [s.config() for s in self.steps if not is_gate(s)],
        }

    def fingerprint(self) -> str:
        """Hash of what determines the output (the source path is not: --input may move)."""
        cfg = self.config()
        cfg.pop("source", None)
        cfg.pop("description", None)
        return sha256_hex(canonical_json(cfg))[:16]


def pipeline_from_yaml(path: str | Path) -> Pipeline:
    """Load a YAML recipe: name, description, models, source (optional), options, steps."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"recipe file {p} does not exist") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"recipe {p} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict) or "steps" not in data:
        raise ConfigError(f"recipe {p} must be a mapping with a 'steps' list")
    if not isinstance(data["steps"], list) or not data["steps"]:
        raise ConfigError(f"recipe {p}: 'steps' must be a non-empty list")
    template_dir = str(p.resolve().parent)
    steps = []
    for spec in data["steps"]:
        if isinstance(spec, dict) and spec.get("type") == "model":
            spec = {"template_dirs": [template_dir], **spec}
        steps.append(build_step(spec))
    source = None
    src = data.get("source")
    if isinstance(src, dict) and "path" in src:
        sp = Path(src["path"])
        source = Source(path=str(sp if sp.is_absolute() else p.parent / sp), fmt=src.get("format", "auto"))
    elif isinstance(src, dict) and "rows" in src:
        source = Source(rows=list(src["rows"]))
    return Pipeline(
        name=str(data.get("name") or p.stem),
        steps=steps,
        source=source,
        models=data.get("models") or {"generator": "embedded"},
        description=str(data.get("description", "")),
        options=data.get("options") or {},
        shard_size=int(data.get("shard_size", 64)),
        required_checks=_name_list(data.get("required_checks"), p, "required_checks"),
        advisory_checks=_name_list(data.get("advisory_checks"), p, "advisory_checks"),
        keep_unverified=bool(data.get("keep_unverified", False)),
    )


def _name_list(value: Any, path: Path, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"recipe {path}: {key!r} must be a list of check names")
    return list(value)


def dump_yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False, allow_unicode=True)


__all__ = ["Pipeline", "Source", "Branch", "pipeline_from_yaml", "validate_steps", "STEP_TYPES", "dump_yaml"]
