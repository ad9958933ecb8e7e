"""Self-Instruct instance generation: parse input-first / output-first completions, filter instances.

Classification tasks are generated output-first (a class label, then an input for it) so labels
stay balanced; other tasks input-first (TECHNIQUES.md §2, pitfall ii).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_EXAMPLE_SPLIT = re.compile(r"(?i)\bexample\s*\d+\s*:?")
_LABEL_SPLIT = re.compile(r"(?i)class\s*label\s*:")
_INPUT = re.compile(r"(?is)\binput\s*:\s*(.*?)(?=\boutput\s*:|\Z)")
_OUTPUT = re.compile(r"(?is)\boutput\s*:\s*(.*)")
_NO_INPUT = {"", "none", "n/a", "not applicable", "<noinput>", "<no input>", "no input"}

_YES = re.compile(r"(?i)^\W*yes\b")
_NO = re.compile(r"(?i)^\W*no\b")
# Used only when the model's Yes/No answer is unreadable (small models often ramble).
_CLASSIFICATION_CUES = re.compile(
    r"(?i)\b(classify|classification|categori[sz]e|which (category|class|label)|true or false|"
    r"yes or no|determine whether|decide whether|is it (a|an)?\b|label (the|each|whether))")


@dataclass(frozen=True)
class Instance:
    input: str
    output: str


def parse_yes_no(text: str) -> bool | None:
    """True/False for a Yes/No answer, None when the answer is neither."""
    if _YES.match(text):
        return True
    if _NO.match(text):
        return False
    return None


def looks_like_classification(instruction: str) -> bool:
    """Keyword fallback for the classification question."""
    return bool(_CLASSIFICATION_CUES.search(instruction))


def _clean_input(text: str) -> str:
    text = text.strip()
    return "" if text.lower().strip(".") in _NO_INPUT else text


def parse_input_first(completion: str) -> list[Instance]:
    """`Example 1\\nInput: ...\\nOutput: ...` blocks (input optional)."""
    out = []
    for block in _EXAMPLE_SPLIT.split(completion):
        if not block or not block.strip():
            continue
        m_out = _OUTPUT.search(block)
        if not m_out:
            continue
        m_in = _INPUT.search(block)
        out.append(Instance(_clean_input(m_in.group(1)) if m_in else "", m_out.group(1).strip()))
    return out


def parse_output_first(completion: str) -> list[Instance]:
    """`Class label: X\\nInput: ...` blocks: the label is the output, the text after Input the input."""
    out = []
    for block in _LABEL_SPLIT.split(completion)[1:]:
        label, _, rest = block.partition("\n")
        m_in = _INPUT.search(rest) or _INPUT.search(block)
        label = label.strip()
        if m_in is None:
            out.append(Instance("", label))
            continue
        out.append(Instance(_clean_input(m_in.group(1)), label))
    return out


def instance_reason(inst: Instance) -> str:
    """"" if kept, else the name of the first Self-Instruct instance filter that rejects it."""
    if not inst.output:
        return "empty_output"
    if inst.input and inst.input == inst.output:
        return "input_equals_output"
    if inst.input.endswith(":") or inst.output.endswith(":"):
        return "ends_with_colon"
    return ""


def filter_instances(instances: list[Instance], rng: random.Random, max_instances: int = 5,
                     truncated: bool = False) -> tuple[list[Instance], dict[str, int]]:
    """Self-Instruct's instance filters; returns the kept instances and rejection counts by reason."""
    dropped: dict[str, int] = {}

    def drop(reason: str, n: int = 1) -> None:
        dropped[reason] = dropped.get(reason, 0) + n

    if truncated and instances:  # the last instance was cut off by max_tokens
        instances = instances[:-1]
        drop("truncated")
    kept = []
    for inst in instances:
        reason = instance_reason(inst)
        if reason:
            drop(reason)
        else:
            kept.append(inst)
    outputs_by_input: dict[str, set[str]] = {}
    for inst in kept:
        if inst.input:
            outputs_by_input.setdefault(inst.input, set()).add(inst.output)
    if any(len(v) > 1 for v in outputs_by_input.values()):
        # the same input with different outputs means the task is ill-defined: drop all of it
        drop("conflicting_outputs", len(kept))
        return [], dropped
    unique = list(dict.fromkeys(kept))
    if len(unique) < len(kept):
        drop("duplicate_instance", len(kept) - len(unique))
    if len(unique) > max_instances:
        drop("over_limit", len(unique) - max_instances)
        unique = rng.sample(unique, max_instances)
    return unique, dropped
