"""The one way to define a step.

A step is a pydantic model (so recipes in YAML and in Python build the same object, and its
configuration is saved with the run) with:

* `is_global`: False (the default) for a step that handles each row on its own — it returns one
  outcome per input row: a row, a `Rejected` (filtering), or a list of rows and `Rejected`s
  (expanding); True for a step that sees every row at once (a barrier: dedup, the online
  Self-Instruct pool, sampling), which returns any list of outcomes.
* `inputs` / `outputs`: declared columns, checked before anything runs.
* `process(rows, ctx)`: sync or async; returns the outcomes.

Rows a step makes from a parent should be built with `ctx.derive(parent, updates)` so that
provenance (`_meta`) follows them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from synthloom.errors import ConfigError
from synthloom.llm.base import Model
from synthloom.records import Row, derive_row, derive_seed, meta_of

if TYPE_CHECKING:
    from synthloom.llm.usage import UsageTracker



@dataclass(slots=True)
class Rejected:
    """A row a step did not keep, with a short machine-readable reason and a human detail."""

    reason: str
    row: Row
    detail: str = ""


Outcome = Row | Rejected | list[Row | Rejected]


@dataclass
class StepContext:
    """What a step may use while it runs: models, seeds, provenance helpers, shared services."""

    run_seed: int
    recipe: str
    step_name: str
    step_index: int
    models: dict[str, Model] = field(default_factory=dict)  # role -> Model (cache-wrapped)
    usage: UsageTracker | None = None  # counts every call's tokens for the funnel and the budget
    run_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def model(self, name: str) -> Model:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ConfigError(
                f"step {self.step_name!r} uses model {name!r}, which is not configured "
                f"(configured: {known}); pass --model {name}=SPEC"
            ) from None

    def seed_for(self, row: Row, sample_index: int = 0) -> int:
        return derive_seed(self.run_seed, meta_of(row).get("id", ""), self.step_name, sample_index)

    def derive(self, parent: Row, updates: Row, **meta: Any) -> Row:
        return derive_row(parent, updates, self.step_name, **meta)

    def for_step(self, name: str, index: int) -> "StepContext":
        return StepContext(self.run_seed, self.recipe, name, index, self.models, self.usage,
                           self.run_dir, self.options)


STEP_TYPES: dict[str, type["Step"]] = {}

# Packages declare the modules that register their step types as `synthloom.steps` entry points
# (pyproject.toml), so the core names no module above it and a plugin package adds its own.
STEP_ENTRY_POINTS = "synthloom.steps"


def load_step_modules() -> list[str]:
    """Import every module registering step types; returns those that could not be imported (an
    optional dependency missing), each with the name of what was missing."""
    import importlib
    from importlib.metadata import entry_points

    missing = []
    for entry in entry_points(group=STEP_ENTRY_POINTS):
        try:
            importlib.import_module(entry.value)
        except ImportError as e:
            missing.append(f"{entry.value} (needs {e.name or e})")
    return missing


def register_step(type_name: str):
    """Class decorator: make a step available to YAML recipes as `type: <type_name>`."""

    def deco(cls: type[Step]) -> type[Step]:
        cls.type_name = type_name
        STEP_TYPES[type_name] = cls
        return cls

    return deco


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    type_name: ClassVar[str] = ""
    is_global: ClassVar[bool] = False  # sees every row at once (see the module docstring)
    cpu_heavy: ClassVar[bool] = False  # run in a process pool when True

    name: str

    # --- declared columns -------------------------------------------------------------
    def input_columns(self) -> set[str]:
        """Columns this step reads (must exist before it runs)."""
        return set()

    def output_columns(self, available: set[str]) -> set[str]:
        """Columns present after this step, given those present before it."""
        return available

    def model_roles(self) -> set[str]:
        """Names of the models (roles) this step calls; only those are loaded for a run."""
        return set()

    # --- work ---------------------------------------------------------------------------
    def setup(self, ctx: StepContext) -> None:
        """Called once per run before the first batch (load resources, models...)."""

    def teardown(self, ctx: StepContext) -> Any:
        """Called once when the run ends (finished, failed or stopped): release resources.
        May be async."""

    def process(self, rows: list[Row], ctx: StepContext) -> Any:
        raise NotImplementedError(f"step type {type(self).__name__} must implement process()")

    async def run(self, rows: list[Row], ctx: StepContext) -> list[Outcome]:
        result = self.process(rows, ctx)
        if inspect.isawaitable(result):
            result = await result
        return list(result)

    def config(self) -> dict[str, Any]:
        """The resolved configuration saved in the run's recipe.yaml."""
        return {"type": self.type_name or type(self).__name__, **self.model_dump(mode="json")}


def build_step(spec: dict[str, Any]) -> Step:
    """A step from its YAML mapping: `{type: ..., name: ..., **options}`."""
    from pydantic import ValidationError

    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"each step needs a 'type' key, got {spec!r}")
    spec = dict(spec)
    type_name = spec.pop("type")
    missing: list[str] = []
    if type_name not in STEP_TYPES:
        missing = load_step_modules()
    cls = STEP_TYPES.get(type_name)
    if cls is None:
        known = ", ".join(sorted(STEP_TYPES))
        unavailable = f" (not loaded: {'; '.join(missing)})" if missing else ""
        raise ConfigError(f"unknown step type {type_name!r}; known step types: {known}{unavailable}")
    spec.setdefault("name", type_name)
    try:
        return cls(**spec)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"step {spec['name']!r} ({type_name}): {loc}: {err['msg']}") from None


async def apply_step(step: Step, rows: list[Row], ctx: StepContext) -> tuple[list[Row], list[Rejected]]:
    """Run a step on rows and split its outcomes into kept rows and rejections."""
    outcomes = await step.run(rows, ctx) if rows or step.is_global else []
    return split_outcomes(step, rows, outcomes)


def split_outcomes(step: Step, rows: list[Row], outcomes: list[Any]) -> tuple[list[Row], list[Rejected]]:
    """Check a step's outcomes (one per row unless it is global) and flatten them into kept rows and
    rejections."""
    if not step.is_global and len(outcomes) != len(rows):
        raise RuntimeError(
            f"step {step.name!r} returned {len(outcomes)} outcomes for {len(rows)} rows; "
            "non-global steps must return exactly one outcome per input row"
        )
    kept: list[Row] = []
    rejected: list[Rejected] = []

    def take(item: Any) -> None:
        if isinstance(item, Rejected):
            rejected.append(item)
        elif isinstance(item, dict):
            kept.append(item)
        elif isinstance(item, (list, tuple)):
            for sub in item:
                take(sub)
        else:
            raise TypeError(f"step {step.name!r} produced {type(item).__name__}, expected a row dict or Rejected")

    for outcome in outcomes:
        take(outcome)
    return kept, rejected
