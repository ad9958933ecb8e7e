"""Discoverable built-in recipes.

A recipe is a module with NAME, DESCRIPTION, an `Options` pydantic model and `build(options)`
returning a Pipeline; a YAML file resolves to the same Pipeline object.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synthloom.errors import ConfigError

BUILTIN_RECIPES = {
    "instruct": "synthloom.recipes.instruct",
    "metamath": "synthloom.recipes.metamath",
    "llava": "synthloom.recipes.llava",
    "pix2struct": "synthloom.recipes.pix2struct",
    "self_instruct": "synthloom.recipes.self_instruct",
    "evol_instruct": "synthloom.recipes.evol_instruct",
    "code_exec": "synthloom.recipes.code_exec",
    "constitutional": "synthloom.recipes.constitutional",
    "backtranslation": "synthloom.recipes.backtranslation",
    "rag": "synthloom.recipes.rag",
    "debate": "synthloom.recipes.debate",
    "reflection": "synthloom.recipes.reflection",
}


class RecipeOptions(BaseModel):
    """Base of every recipe's options: unknown options are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    keep_unverified: bool = Field(False, description="also write rows whose required checks did not pass to "
                                                     "data/unverified.* (never to train)")


@dataclass
class RecipeInfo:
    name: str
    description: str
    options: dict[str, tuple[str, Any, str]]  # option -> (type, default, help)
    module: Any


def _option_table(options_cls: type[BaseModel]) -> dict[str, tuple[str, Any, str]]:
    table = {}
    for name, field in options_cls.model_fields.items():
        ann = getattr(field.annotation, "__name__", str(field.annotation))
        table[name] = (ann, field.default, field.description or "")
    return table


def recipe_info(name: str) -> RecipeInfo:
    try:
        module_name = BUILTIN_RECIPES[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_RECIPES))
        raise ConfigError(f"unknown recipe {name!r}; built-in recipes: {known} (or give a path to a .yaml recipe)") from None
    module = importlib.import_module(module_name)
    return RecipeInfo(module.NAME, module.DESCRIPTION, _option_table(module.Options), module)


def list_recipes() -> list[RecipeInfo]:
    return [recipe_info(n) for n in sorted(BUILTIN_RECIPES)]


def load_recipe(name_or_path: str, options: dict[str, Any] | None = None):
    """A Pipeline from a built-in recipe name (with options) or a YAML recipe path."""
    from synthloom.pipeline.pipeline import pipeline_from_yaml

    options = options or {}
    if name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).is_file():
        if options:
            raise ConfigError("-o/--option applies to built-in recipes; edit the YAML recipe instead")
        return pipeline_from_yaml(name_or_path)
    info = recipe_info(name_or_path)
    try:
        opts = info.module.Options(**options)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        known = ", ".join(info.options)
        raise ConfigError(f"recipe {info.name!r} option {loc}: {err['msg']} (options: {known})") from None
    pipeline = info.module.build(opts)
    pipeline.options = {**opts.model_dump(mode="json"), **pipeline.options}
    pipeline.keep_unverified = opts.keep_unverified
    return pipeline
