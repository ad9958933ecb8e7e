"""Self-Instruct / Code Alpaca instruction handling: seeds, prompt mixes, completion parsing, filters.

Every filter is a pure function returning a funnel reason ("" when the instruction is kept),
following the official Self-Instruct `bootstrap_instructions.py` and Code Alpaca
`generate_instruction.py` (Wang et al. 2022; Chaudhary 2023).
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass
from importlib import resources
from typing import Any

from synthloom.errors import BadInputError
from synthloom.quality.filters import (
    CODE_ALPACA_EXTRA,
    SELF_INSTRUCT_BLACKLIST,
    blacklisted_words,
)
from synthloom.quality.meta_text import strip_meta_text

# General pool: 182 tasks written for this project, classification and not (Self-Instruct starts
# from 175 such human-written tasks, Wang et al. 2022); code pool: the Code Alpaca variant's seeds.
SEED_FILES = {"general": "data/self_instruct_seed_tasks.jsonl", "code": "data/code_seed_tasks.jsonl"}
SEED_FILE = SEED_FILES["code"]

# Self-Instruct splits a completion into items on "<n>. " at a line start.
_NUMBERED = re.compile(r"\n\d+\s?\.\s")
# Code Alpaca blocks: "###" separated, each "<i>. Instruction: ... <i>. Input: ... <i>. Output: ...".
_ALPACA_FIELD = r"{idx}\.\s+(Instruction|Input|Output):"


def load_seed_tasks(pool: str = "code") -> list[dict[str, Any]]:
    """A bundled seed pool: "general" (instruction, input, output, is_classification) or "code"
    (also entry_point and tests)."""
    if pool not in SEED_FILES:
        raise BadInputError(f"unknown seed pool {pool!r}; known: {', '.join(SEED_FILES)}")
    name = SEED_FILES[pool]
    text = resources.files("synthloom.recipes").joinpath(name).read_text(encoding="utf-8")
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not str(row.get("instruction", "")).strip() or not str(row.get("output", "")).strip():
            raise BadInputError(f"{name}:{lineno}: seed task needs an instruction and an output")
        if not isinstance(row.get("is_classification"), bool):
            raise BadInputError(f"{name}:{lineno}: is_classification must be true or false")
        rows.append(row)
    return rows


def normalise_instruction(text: str) -> str:
    """Collapse whitespace, strip list debris and capitalise, as Self-Instruct does; removable
    meta-text ("Task:", "Here is a new task:", wrapping quotes) goes too. Text that is only
    meta-text is left as it is, for `InstructionFilters` to reject by name."""
    text = re.sub(r"\s+", " ", text).strip()
    cleaned = strip_meta_text(text)
    text = (cleaned.text if cleaned.ok else text).strip(" \"'")
    return text[:1].upper() + text[1:] if text else text


# -- filters ------------------------------------------------------------------------------

@dataclass(frozen=True)
class InstructionFilters:
    """Self-Instruct's instruction-level filters; `code_alpaca` extends the blacklist."""

    min_words: int = 4  # the official code drops instructions with <= 3 words
    max_words: int = 150
    code_alpaca: bool = False

    @property
    def blacklist(self) -> tuple[str, ...]:
        return SELF_INSTRUCT_BLACKLIST + (CODE_ALPACA_EXTRA if self.code_alpaca else ())

    def reason(self, instruction: str) -> str:
        """"" if the instruction is kept, else the name of the first filter that rejects it."""
        if not strip_meta_text(instruction).ok:
            return "only_meta_text"  # "Here is a new task:" with no task after it
        n_words = len(instruction.split())
        if n_words < self.min_words:
            return "too_short"
        if n_words > self.max_words:
            return "too_long"
        if not blacklisted_words(instruction, self.blacklist).ok:
            return "blacklisted_word"
        # Self-Instruct drops these: the seed prompts contain programs, which the model over-copies.
        if not self.code_alpaca and instruction.startswith("Write a program"):
            return "write_a_program"
        if instruction[0] in string.punctuation:
            return "starts_with_punctuation"
        if not instruction[0].isascii():
            return "non_ascii_start"
        return ""


# -- Self-Instruct: numbered-list prompts ----------------------------------------------------

def self_instruct_examples(seeds: list[str], machine: list[str], rng: random.Random,
                           num_instructions: int = 8, num_machine: int = 2) -> list[str]:
    """The in-context instructions: up to `num_machine` machine-made, the rest seeds, shuffled."""
    picked = rng.sample(machine, min(num_machine, len(machine)))
    picked += rng.sample(seeds, min(num_instructions - len(picked), len(seeds)))
    rng.shuffle(picked)
    return picked


def split_numbered(completion: str, first_index: int) -> list[str]:
    """Instructions from a completion that continues a numbered list at item `first_index`.

    The prompt ends with "<first_index>." so the completion starts with the item's text.
    """
    text = f"{first_index}. {completion.lstrip()}"
    parts = _NUMBERED.split("\n" + text)
    items = []
    for part in parts:
        part = re.sub(r"^\d+\s?\.\s*", "", part.strip())
        if part:
            items.append(normalise_instruction(part))
    return items


# -- Code Alpaca: 20-task prompts --------------------------------------------------------------

def alpaca_examples(seeds: list[dict[str, Any]], rng: random.Random, count: int = 3) -> list[dict[str, Any]]:
    """Code Alpaca samples only seed tasks (never machine-generated ones) for its prompts."""
    return rng.sample(seeds, min(count, len(seeds)))


def parse_alpaca_blocks(completion: str, first_index: int) -> list[dict[str, str] | str]:
    """Tasks from a Code Alpaca completion: dicts with instruction/input/output, or a reason string.

    The prompt ends with "<first_index>. Instruction:", so the first block is re-prefixed.
    A block whose split does not give exactly the three fields is reported as "malformed_task".
    """
    text = f"{first_index}. Instruction: {completion.lstrip()}"
    out: list[dict[str, str] | str] = []
    for offset, block in enumerate(re.split(r"###", text)):
        block = block.strip()
        if not block:
            continue
        m = re.match(r"(\d+)\.", block)
        idx = m.group(1) if m else str(first_index + offset)
        pieces = re.split(_ALPACA_FIELD.format(idx=idx), block)
        if len(pieces) != 7:
            out.append("malformed_task")
            continue
        inst, inp, output = pieces[2].strip(), pieces[4].strip(), pieces[6].strip()
        inp = "" if inp.lower() in ("<noinput>", "<no input>", "none", "") else inp
        out.append({"instruction": normalise_instruction(inst), "input": inp, "output": output})
    return out
