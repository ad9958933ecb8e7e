"""Error types with a user-facing one-line message and the exit code the CLI should use."""

from __future__ import annotations


class SynthloomError(Exception):
    """Base for errors shown to the user as one line (never a traceback). Exit code 1."""

    exit_code = 1


class BadInputError(SynthloomError):
    """The user's input (file, option, recipe, schema) is wrong. Exit code 2."""

    exit_code = 2


class ConfigError(BadInputError):
    """A recipe, option or model spec is invalid."""
