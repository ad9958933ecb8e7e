"""KEY=VALUE command-line options (recipe options, model roles, audit thresholds), parsed once for
every command."""

from __future__ import annotations

import json
from typing import Any

from synthloom.errors import BadInputError


def parse_pairs(pairs: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise BadInputError(f"{what} {pair!r} must look like KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
