"""A constitution: principles as data, each phrased as a critique, a revision and a preference question.

The default lives in `synthloom/recipes/data/constitution.yaml`; a user file has the same shape.
Principles are sampled per critique and per comparison from a per-request seed (never one fixed
principle, as in Bai et al. 2022), so a run is reproducible at any concurrency.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from synthloom.errors import BadInputError

FIELDS = ("name", "critique", "revision", "preference")


@dataclass(frozen=True, slots=True)
class Principle:
    name: str
    critique: str  # the critique request appended after the assistant's reply
    revision: str  # the matching rewrite request
    preference: str  # the multiple-choice question for RL-CAI feedback


@dataclass(frozen=True, slots=True)
class Constitution:
    name: str
    principles: tuple[Principle, ...]

    def sample(self, seed: int) -> Principle:
        """The principle for one critique or comparison, chosen by that request's seed."""
        return self.principles[random.Random(seed).randrange(len(self.principles))]

    def by_name(self, name: str) -> Principle:
        for p in self.principles:
            if p.name == name:
                return p
        raise BadInputError(f"constitution {self.name!r} has no principle {name!r}")


def parse_constitution(data: object, where: str) -> Constitution:
    """Validate a loaded YAML document; every error names the file and the offending item."""
    if not isinstance(data, dict) or not isinstance(data.get("principles"), list) or not data["principles"]:
        raise BadInputError(f"constitution {where}: needs a non-empty 'principles' list")
    principles = []
    seen: set[str] = set()
    for i, item in enumerate(data["principles"]):
        if not isinstance(item, dict):
            raise BadInputError(f"constitution {where}: principle #{i + 1} is not a mapping")
        missing = [f for f in FIELDS if not isinstance(item.get(f), str) or not item[f].strip()]
        if missing:
            raise BadInputError(f"constitution {where}: principle #{i + 1} lacks text for {', '.join(missing)}")
        if item["name"] in seen:
            raise BadInputError(f"constitution {where}: principle name {item['name']!r} is repeated")
        seen.add(item["name"])
        principles.append(Principle(*(item[f].strip() for f in FIELDS)))
    return Constitution(str(data.get("name") or where), tuple(principles))


def load_constitution(path: str | None = None) -> Constitution:
    """The constitution in `path`, or the bundled default when `path` is None or empty."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise BadInputError(f"constitution file {p} does not exist")
        return _load(str(p), p.stat().st_mtime_ns)  # an edited file is read again
    return _load(None, 0)


@lru_cache(maxsize=16)
def _load(path: str | None, mtime_ns: int) -> Constitution:
    if not path:
        text = resources.files("synthloom.recipes").joinpath("data/constitution.yaml").read_text(encoding="utf-8")
        where = "default"
    else:
        text, where = Path(path).read_text(encoding="utf-8"), path
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BadInputError(f"constitution {where}: invalid YAML: {str(e).splitlines()[0]}") from None
    return parse_constitution(data, where)
