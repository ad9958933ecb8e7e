"""Instruction hygiene: strip the preambles, labels and sign-offs a chat model wraps around a task.

Asked for "a task", a chat model writes "Sure! Here is a possible task:", "A user might ask:",
"Task: ...", quotes around the whole thing, or "... Let me know if you need more!". Those words
are the model talking about the data, not the data (the Self-Instruct filters, Wang et al. 2022,
drop such malformed generations; a model trained on them learns to emit them). `strip_meta_text`
removes what can be removed and says what it removed; text that is *only* meta-text ("Here's a
possible task within this text:" and nothing after it) is rejected with a reason.

`meta_text` is the same check as a named filter (text -> FilterResult), and the `strip_meta_text`
step applies it to a column of every row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.quality.filters import PASS, FilterResult
from synthloom.records import Row

# "Sure!", "Certainly, " — only with punctuation (or "here" next): "Great Britain" stays.
_INTERJECTION = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|absolutely|alright|no problem|gladly)"
    r"(?:\s*[!.,:;—-]+\s*|\s+(?=here\b)|\s*$)", re.IGNORECASE)
# The head of a line up to its colon: a preamble or a label when it talks *about* the text.
# ... or up to a comma before a quotation: 'If a user asks, "How do I ...?"'
_HEAD = re.compile(r"^\s*(?P<head>[^:：\n]{1,140}?)\s*(?:[:：]|,(?=\s*[\"“«]))\s*")
_NOUNS = r"(?:tasks?|questions?|instructions?|prompts?|requests?|quer(?:y|ies)|examples?|ideas?|one)"
_WHO = r"(?:(?:a|the|one|some|another|any|many|most|this) )?(?:users?|persons?|people|customers?|students?|humans?|clients?)"
_META_HEAD = re.compile(
    r"^(?:[^,.;:]{0,30},\s*)?(?:"  # an optional lead-in: "To better explain, here's a task"
    r"here(?:'s|’s| is| are)\b.*\b" + _NOUNS + r"\b"  # "Here's a possible task within this text"
    r"|here(?:'s|’s| is| are)\s+(?:it|mine|my (?:attempt|answer|try))\b"
    r"|" + _WHO + r"(?: (?:might|could|may|would|can|will|often))? "
    r"(?:ask|asks|asked|say|says|said|want|wants|write|writes|request|requests)\b"
    r"|(?:you|they|someone|one) (?:might|could|may|would|can) ask\b"
    r"|i (?:can|could|will|would|'ll) (?:provide|give|suggest|offer|write|propose)\b.*\b" + _NOUNS + r"\b"
    r"|(?:a |an |one |the |my )?(?:possible|sample|example|potential|suitable|generated)\s+" + _NOUNS + r"\b"
    r"|(?:the |my |your |a |one )?(?:possible |new )?" + _NOUNS + r" (?:is|would be|could be|might be)\s*$"
    r"|(?:below|the following) (?:is|are)\b"
    r"|(?:one|a|another) (?:possible |good |example )?" + _NOUNS + r" (?:that|which|to|for|a user|someone|you)\b"
    r"|what (?:is|would be|could be) (?:a|one|the) (?:good |possible )?" + _NOUNS + r"\b"
    r"|what (?:could|would|might|should|will) (?:the|a|my|your) " + _NOUNS + r" be\b"
    r")", re.IGNORECASE)
# Inside a head (before a colon): talk about a user and their question is about the data, not data.
_TALK_WHO = re.compile(r"\b(?:users?|assistant|ai|chatbot|customers?)\b", re.IGNORECASE)
_TALK_WHAT = re.compile(r"\b(?:ask|asks|asked|asking|pose|poses|questions?|tasks?|prompts?|requests?)\b",
                        re.IGNORECASE)
# Bare labels: "Task:", "Instruction 3:", "User question:", "**Prompt:**".
_LABEL = re.compile(r"^(?:new |user |human |generated |example |sample |your )?"
                    r"(?:task|instruction|question|prompt|request|query|user|human|example|q)\s*\d*$", re.IGNORECASE)
# A sign-off or a comment on the task at a sentence start, cut with everything after it.
_TRAILER = re.compile(
    r"(?:^|(?<=[.!?。)\]\n\"”»'])\s*)(?:"
    r"let me know if|i hope (?:this|that) helps|hope (?:this|that) helps|"
    r"feel free to (?:ask|reach out|let me know|modify|adjust|change|tweak)|"
    r"if you (?:need|have|want|would like) (?:any )?(?:more|further|other|additional|help)|"
    r"is there anything else|would you like (?:me to|more)|do you want me to"
    r").*$"
    # a comment on the task after it ("... rumour?\" The question is sneaky."), never at the start
    r"|(?<=[.!?\"”»'])\s+(?:the|this) (?:question|task|prompt|instruction) "
    r"(?:is|was|would|could|should|tests|asks|aims|will)\b.*$", re.IGNORECASE | re.DOTALL)
_QUOTE_PAIRS = {'"': '"', "“": "”", "'": "'", "«": "»", "„": "“", "‘": "’", "「": "」", "*": "*", "`": "`"}


@dataclass(frozen=True)
class MetaText:
    """What `strip_meta_text` kept (`text`), what it removed, and why it rejects ("" = kept)."""

    text: str
    removed: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


def _is_meta_head(head: str) -> bool:
    """Is `head` (the text before a colon) a label or a preamble?"""
    head = head.strip().strip("*_#> ").strip()
    return bool(_LABEL.match(head) or _META_HEAD.match(head)
                or (_TALK_WHO.search(head) and _TALK_WHAT.search(head)))


def _announces(sentence: str) -> bool:
    """A sentence that only talks about the task ("Here is a task about cooking.", "Users might
    ask what ... ")."""
    sentence = sentence.strip().rstrip(".!:").strip()
    return "\n" not in sentence and bool(_LABEL.match(sentence) or _META_HEAD.match(sentence))


_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s+|$)(.*)$", re.DOTALL)


_DOUBLE_QUOTES = "\"“”«»"


def _unquote(text: str, removed: list[str]) -> str:
    """Remove quotes (or bold/code marks) that wrap the whole text, repeatedly (noted in `removed`),
    and a lone double quote at either end (the other half was cut off)."""
    for end in (0, -1):
        if text and text[end] in _DOUBLE_QUOTES and sum(text.count(q) for q in _DOUBLE_QUOTES) == 1:
            removed.append(text[end])
            text = (text[1:] if end == 0 else text[:-1]).strip()
    while len(text) >= 2 and text[0] in _QUOTE_PAIRS and text.endswith(_QUOTE_PAIRS[text[0]]):
        mark = text[0]
        if mark in "*`":
            inner = text.strip(mark)
        else:
            inner = text[1:-1]
            if mark in inner and mark == _QUOTE_PAIRS[mark]:
                break  # '"a" or "b"' is two quotations, not one wrapping pair
        removed.append(f"{mark}…{_QUOTE_PAIRS[mark]}")
        text = inner.strip()
    return text


def strip_meta_text(text: str) -> MetaText:
    """`text` without leading preambles/labels, wrapping quotes and trailing sign-offs.

    Rejects (reason "only_meta_text") when nothing but meta-text is left, including a preamble
    with nothing after it and a lone "Here is a task for you." sentence.
    """
    removed: list[str] = []
    out = text.strip()
    for _ in range(4):  # "Sure! Here is a task:\nTask: ..." peels in several steps
        before = out
        m = _INTERJECTION.match(out)
        if m and m.end() < len(out):
            removed.append(out[:m.end()].strip())
            out = out[m.end():].lstrip()
        m = _HEAD.match(out)
        if m and _is_meta_head(m.group("head")):
            removed.append(out[:m.end()].strip())
            out = out[m.end():].lstrip().lstrip("*_").lstrip()
        first, newline, rest = out.partition("\n")
        m = None if newline else _SENTENCE.match(out)
        if m and m.group(2).strip():
            first, rest = m.group(1), m.group(2)
        if rest.strip() and _announces(first):  # "Here is a question for you. <question>"
            removed.append(first.strip())
            out = rest.strip()
        out = _unquote(out.strip(), removed)
        if out == before:
            break
    m = _TRAILER.search(out)
    if m:
        removed.append(out[m.start():].strip())
        out = out[:m.start()].rstrip()
    out = _unquote(out.strip(), removed)
    if not out or _INTERJECTION.fullmatch(out) or out.endswith((":", "：")):
        # a trailing colon announces content that never came ("... how a user can ask for a task:")
        return MetaText("", removed, f"only_meta_text: {text.strip()[:120]!r}")
    if _announces(out):
        return MetaText("", removed + [out], f"only_meta_text: {text.strip()[:120]!r}")
    return MetaText(out, removed)


def meta_text(text: str) -> FilterResult:
    """The filter form: rejects text that is only meta-text; text with removable meta-text passes
    here (use `strip_meta_text` or the step to clean it)."""
    result = strip_meta_text(text)
    return PASS if result.ok else FilterResult(False, result.reason)


@register_step("strip_meta_text")
class StripMetaText(Step):
    """Rewrite `column` without preambles, labels, wrapping quotes and sign-offs; reject rows whose
    text is only meta-text (reason `only_meta_text`). What was removed goes to `_meta.meta_text`."""

    column: str

    def input_columns(self) -> set[str]:
        return {self.column}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            result = strip_meta_text(str(row.get(self.column) or ""))
            if not result.ok:
                out.append(Rejected("only_meta_text", row, result.reason.split(": ", 1)[-1]))
            elif result.removed:
                out.append(ctx.derive(row, {self.column: result.text}, meta_text=result.removed))
            else:
                out.append(row)
        return out


__all__ = ["MetaText", "StripMetaText", "meta_text", "strip_meta_text"]
