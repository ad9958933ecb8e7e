"""Self-Instruct instance generation: parse input-first / output-first completions, filter instances.

Classification tasks are generated output-first (a class label, then an input for it) so labels
stay balanced; other tasks input-first (Wang et al. 2022).

A field label ("Input:", "Output:", "Class label:", "Example 2") counts only at the start of a
line outside fenced code: `print(f(3))  # Output: 9` inside a code answer is part of the answer,
never an instance's label.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from synthloom.quality.meta_text import strip_meta_text

_EXAMPLE = re.compile(r"(?i)^[ \t]*example[ \t]*\d+[ \t]*[:.]?[ \t]*")
_FIELD = re.compile(r"(?i)^(input|output|class\s*label)\s*:[ \t]*(.*)$")
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


def labelled_fields(text: str) -> list[tuple[str, str]]:
    """(label, value) pairs in order: a label starts a line outside a code fence; the lines up to
    the next label are its value ("Example 2" lines are ("example", "")). Text before the first
    label is ignored."""
    fields: list[tuple[str, list[str]]] = []
    in_fence = False
    for line in text.splitlines():
        example = None if in_fence else _EXAMPLE.match(line)
        m = None if in_fence else _FIELD.match(line[example.end():] if example else line.lstrip())
        if line.count("```") % 2:  # opens or closes a fence ("Output: ```python" opens one)
            in_fence = not in_fence
        if example:
            fields.append(("example", [""]))
        if m:
            fields.append((re.sub(r"\s+", " ", m.group(1).lower()), [m.group(2)]))
        elif fields and not example:
            fields[-1][1].append(line)
    return [(label, "\n".join(lines).strip()) for label, lines in fields]


def parse_input_first(completion: str) -> list[Instance]:
    """`Example 1\\nInput: ...\\nOutput: ...` blocks (input optional); each Output closes one instance."""
    out = []
    pending = ""
    for label, value in labelled_fields(completion):
        if label == "input":
            pending = value
        elif label == "output":
            out.append(Instance(_clean_input(pending), value))
            pending = ""
        else:  # a new example: an input without an output is dropped
            pending = ""
    return out


def parse_output_first(completion: str) -> list[Instance]:
    """`Class label: X\\nInput: ...` blocks: the label is the output, the first Input after it the input."""
    out: list[Instance] = []
    inputs: list[str | None] = []
    for label, value in labelled_fields(completion):
        if label == "class label":
            out.append(Instance("", value.split("\n", 1)[0].strip()))
            inputs.append(None)
        elif label == "input" and inputs and inputs[-1] is None:
            inputs[-1] = value
    return [Instance(_clean_input(i or ""), inst.output) for inst, i in zip(out, inputs)]


def instance_reason(inst: Instance) -> str:
    """"" if kept, else the name of the first Self-Instruct instance filter that rejects it."""
    if not inst.output:
        return "empty_output"
    if inst.input and inst.input == inst.output:
        return "input_equals_output"
    if inst.input.endswith(":") or inst.output.endswith(":"):
        return "ends_with_colon"
    if not strip_meta_text(inst.output).ok:
        return "only_meta_text"  # "Output: Sure! Here is an example." carries no answer
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
