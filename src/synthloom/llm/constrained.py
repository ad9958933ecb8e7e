"""Constrained verdicts: ask a model for exactly one of a few labels and read it without guessing.

A judge that is free to write prose ("The answer is A", "A: When you...", "unsupported") is read by
parsers that mistake echoes and negations for verdicts. Every model verdict in synthloom is asked
as a constrained choice instead:

* the request carries `choice_labels`; the embedded engine turns them into a grammar whose only
  sentences are the labels (so the label is the first generated token); OpenAI-compatible servers
  get a JSON schema whose one property is an enum of the labels; a server that supports neither
  is asked for a lone label and read by `strict_label`, which accepts nothing else;
* preference probabilities come from the log-probabilities at the position where the label was
  generated (not at the first token, which in a JSON answer is `{`), normalised over the labels;
  `preference_source` says how the verdict was read.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from synthloom.llm.base import ChatRequest, ChatResponse

LABEL_KEY = "label"
# Wrappers a lone label may carry and still be a lone label: quotes, markdown emphasis, brackets, a
# final full stop. Nothing else (no "Answer:", no explanation) is stripped.
_WRAP = re.compile(r"""^[\s"'`*_(\[{<]*(.*?)[\s"'`*_)\]}>.!]*$""", re.DOTALL)


def label_schema(labels: list[str]) -> dict[str, Any]:
    """JSON schema of a constrained choice for servers: {"label": <one of labels>}."""
    return {"type": "object", "properties": {LABEL_KEY: {"type": "string", "enum": list(labels)}},
            "required": [LABEL_KEY], "additionalProperties": False}


def label_grammar(labels: list[str]) -> str:
    """GBNF whose only sentences are the labels themselves."""
    def literal(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    return "root ::= " + " | ".join(literal(label) for label in labels)


def lone_label_instruction(labels: list[str]) -> str:
    """What a model without constrained decoding is told (appended to the last user message)."""
    return "Reply with exactly one of: " + ", ".join(labels) + ". Write nothing else."


def strict_label(text: str, labels: list[str] | tuple[str, ...]) -> str | None:
    """The label when `text` is that label alone (case-insensitive, optionally quoted, bolded,
    bracketed or followed by a full stop) or the JSON `{"label": ...}`; None otherwise.

    Echoes of the prompt ("Your Judgement (just answer: Equal"), labels inside sentences
    ("A: When you"), negations ("unsupported", "not supported") and hedges are all None.
    """
    if not isinstance(text, str):
        return None
    body = text.strip()
    if body.startswith("{"):
        try:
            obj = json.loads(body)
        except ValueError:
            return None
        value = obj.get(LABEL_KEY) if isinstance(obj, dict) and len(obj) == 1 else None
        return value if isinstance(value, str) and value in labels else None
    m = _WRAP.match(body)
    core = m.group(1).strip() if m else body
    exact = [label for label in labels if label.strip() == core]
    if exact:
        return exact[0]
    folded = [label for label in labels if label.strip().lower() == core.lower()]
    return folded[0] if len(folded) == 1 else None  # "m" vs "M" labels: only an exact match decides


@dataclass
class ChoiceReading:
    """What one constrained-choice answer says.

    label: the chosen label, or None (unknown: no lone label).
    probs: {label: probability} read at the label position, normalised over the labels (empty when
    the backend gave no log-probabilities there).
    preference_source: "logprobs@label" (probabilities at the label position), "label" (the
    constrained label only), "strict_label" (a lone label parsed from free text) or "none".
    """

    label: str | None
    probs: dict[str, float] = field(default_factory=dict)
    preference_source: str = "none"
    raw: str = ""
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.label is not None


def _label_offset(text: str, label: str) -> int | None:
    """Character offset in `text` where the label starts: after the JSON key of a server's answer, or
    inside a lone (possibly wrapped, "(A)") label — `text` is known to be one of those."""
    m = re.search(r'"%s"\s*:\s*"' % LABEL_KEY, text)
    if m and text.startswith(label, m.end()):
        return m.end()
    i = text.lower().find(label.lower())
    return i if i >= 0 else None


def _norm_piece(token: str) -> str:
    return token.strip().strip('"\'').strip()


def _probs_at(response: ChatResponse, offset: int, labels: list[str]) -> dict[str, float]:
    """Probabilities of the labels from the top alternatives of the token covering `offset`."""
    choice = response.choices[0]
    if not choice.logprobs:
        return {}
    pos = 0
    for item in choice.logprobs:
        end = pos + len(item.token)
        if end > offset:
            alternatives = item.top or [(item.token, item.logprob)]
            mass = {label: 0.0 for label in labels}
            for token, logprob in alternatives:
                piece = _norm_piece(token)
                if not piece:
                    continue
                # a piece that starts exactly one label counts for it; pieces shared by several
                # labels ("Not" in "Not A"/"Not B") say nothing about which one
                owners = [label for label in labels if label.startswith(piece)]
                if len(owners) == 1:
                    mass[owners[0]] += math.exp(logprob)
            total = sum(mass.values())
            return {k: v / total for k, v in mass.items()} if total > 0 else {}
        pos = end
    return {}


def read_choice(response: ChatResponse, labels: list[str] | tuple[str, ...]) -> ChoiceReading:
    """Read a constrained-choice (or lone-label) answer; never guesses a label from prose."""
    labels = list(labels)
    if not response.choices:
        return ChoiceReading(None, raw="")
    choice = response.choices[0]
    text = choice.text
    truncated = choice.finish_reason == "length" and strict_label(text, labels) is None
    label = strict_label(text, labels)
    if label is None:
        return ChoiceReading(None, raw=text, truncated=truncated)
    offset = _label_offset(text, label)
    probs = _probs_at(response, offset, labels) if offset is not None else {}
    if probs:
        source = "logprobs@label"
    elif offset is not None:
        source = "label"
    else:
        source = "strict_label"
    return ChoiceReading(label, probs, source, text)


def choice_request(messages: list[dict[str, str]], labels: list[str] | tuple[str, ...], *,
                   seed: int | None = None, top_logprobs: int = 10, max_tokens: int = 16,
                   temperature: float = 0.0) -> ChatRequest:
    """A constrained-choice request over `labels` (greedy by default; log-probabilities asked for)."""
    return ChatRequest(messages=messages, temperature=temperature, top_p=1.0, max_tokens=max_tokens,
                       seed=seed, logprobs=top_logprobs > 0, top_logprobs=top_logprobs,
                       choice_labels=[str(x) for x in labels])


def as_lone_label_request(request: ChatRequest) -> ChatRequest:
    """The same request for a backend without constrained decoding: labels spelled out in the
    prompt, read back with `strict_label`."""
    import dataclasses

    assert request.choice_labels is not None
    messages = [dict(m) for m in request.messages]
    note = lone_label_instruction(request.choice_labels)
    if messages and messages[-1]["role"] == "user":
        messages[-1]["content"] = messages[-1]["content"].rstrip() + "\n\n" + note
    else:
        messages.append({"role": "user", "content": note})
    return dataclasses.replace(request, messages=messages, choice_labels=None)


__all__ = ["ChoiceReading", "as_lone_label_request", "choice_request", "label_grammar", "label_schema",
           "read_choice", "strict_label"]
