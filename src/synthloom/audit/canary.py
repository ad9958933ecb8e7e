"""Canaries (Carlini et al. 2019, "The Secret Sharer"): unique secrets planted in private seed data.

A recipe that leaks its seeds repeats them; counting how many planted secrets surface verbatim in
the output measures that leak directly. Exposure here is the share of canaries found (the paper's
rank-based exposure needs a model trained on the data; a prompted generator leaks by copying).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from synthloom.audit.checks import Check, rounded
from synthloom.errors import BadInputError

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: a copy is never a lookalike
_TEMPLATES = ("The access code for locker {name} is {secret}.", "Ticket {secret} belongs to {name}.",
              "Remember: the vault password of {name} is {secret}.")
_NAMES = ("Orla Vantreece", "Ismo Kardashev", "Pell Quarrington", "Ysolde Brannagh", "Tavi Munkholm",
          "Quill Ashdown", "Renske Obaluwe", "Dario Fenwhistle")


def make_canaries(count: int, seed: int = 0) -> list[str]:
    """`count` unique secrets like 'K7QX-M4PZ-9WTR' (60 bits each, never in natural text)."""
    rng = random.Random(seed)
    return ["-".join("".join(rng.choice(_ALPHABET) for _ in range(4)) for _ in range(3)) for _ in range(count)]


def plant_canaries(rows: list[dict[str, Any]], column: str, count: int, seed: int = 0
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """Copies of `rows` with one canary sentence appended to `count` of them (spread evenly)."""
    if not rows:
        raise BadInputError("cannot plant canaries in an empty seed set")
    if column not in rows[0]:
        raise BadInputError(f"seed rows have no column {column!r}")
    secrets = make_canaries(count, seed)
    out = [dict(r) for r in rows]
    rng = random.Random(seed)
    for k, secret in enumerate(secrets):
        i = (k * len(out)) // count if count <= len(out) else k % len(out)
        sentence = _TEMPLATES[k % len(_TEMPLATES)].format(name=rng.choice(_NAMES), secret=secret)
        out[i][column] = f"{out[i][column]} {sentence}".strip()
    return out, secrets


def _loose(secret: str) -> re.Pattern[str]:
    # a copy may lose or change the separators ("K7QX M4PZ 9WTR", "k7qxm4pz9wtr")
    return re.compile(r"[\s\-_.]?".join(re.escape(c) for c in secret.replace("-", "")), re.IGNORECASE)


def canary_exposure(texts: Sequence[str], canaries: Sequence[str], max_exposure: float = 0.0) -> dict[str, Any]:
    """Which canaries surface in `texts` (separators ignored), the exposed share, and its check."""
    if not canaries:
        raise BadInputError("no canaries given")
    found: dict[str, int] = {}
    for secret in canaries:
        pat = _loose(secret)
        hits = sum(1 for t in texts if pat.search(t))
        if hits:
            found[secret] = hits
    share = len(found) / len(canaries)
    check = Check("canary_exposure", share, max_exposure, False,
                  "planted canaries found verbatim in the output (Carlini et al. 2019)")
    return {"measures": {"canaries": len(canaries), "exposed": len(found), "exposure": rounded(share),
                         "exposed_canaries": found}, "checks": [check.as_dict()]}
