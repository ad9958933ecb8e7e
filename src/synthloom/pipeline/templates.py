"""Jinja2 prompt templates: inline text or `name.j2` files from the package or a recipe folder.

Undefined variables are errors (StrictUndefined), and the variables a template reads are
its step's declared input columns.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2 import meta as jinja_meta

from synthloom.errors import ConfigError
from synthloom.records import sha256_hex

PACKAGE_TEMPLATES = Path(__file__).resolve().parent.parent / "recipes" / "templates"
_BUILTIN_NAMES = {"range", "loop", "namespace", "dict", "lipsum", "cycler", "joiner"}


@lru_cache(maxsize=8)
def environment(extra_dirs: tuple[str, ...] = ()) -> jinja2.Environment:
    loader = jinja2.FileSystemLoader([*extra_dirs, str(PACKAGE_TEMPLATES)])
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=False, autoescape=False)
    env.filters["enumerate"] = lambda seq, start=1: list(enumerate(seq, start))
    return env


def template_source(template: str, extra_dirs: tuple[str, ...] = ()) -> str:
    """The text of a template given inline or as a `*.j2` file name."""
    if template.endswith(".j2") and "\n" not in template:
        env = environment(extra_dirs)
        try:
            src, _, _ = env.loader.get_source(env, template)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            raise ConfigError(f"template {template!r} not found (looked in {', '.join(extra_dirs) or ''} "
                              f"{PACKAGE_TEMPLATES})") from None
        return src
    return template


class PromptTemplate:
    """A compiled template with its source hash and the variables it needs."""

    def __init__(self, template: str, extra_dirs: tuple[str, ...] = ()):
        self.source = template_source(template, extra_dirs)
        self._dirs = tuple(extra_dirs)
        env = environment(extra_dirs)
        try:
            parsed = env.parse(self.source)
            self._compiled = env.from_string(self.source)
        except jinja2.TemplateSyntaxError as e:
            raise ConfigError(f"template syntax error at line {e.lineno}: {e.message}") from None
        self.variables = set(jinja_meta.find_undeclared_variables(parsed)) - _BUILTIN_NAMES
        self.sha = sha256_hex(self.source)[:16]

    # Pickling (process pools, Ray workers): the compiled template holds the environment's
    # lambdas, so ship the resolved source and recompile on arrival.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_compiled"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._compiled = environment(state.get("_dirs", ())).from_string(self.source)

    def render(self, row: dict) -> str:
        try:
            return self._compiled.render(**row).strip()
        except jinja2.UndefinedError as e:
            raise ConfigError(f"template needs a value the row lacks: {e.message}") from None
