"""Heuristic quality filters: each a named pure function text -> (ok, reason).

`reason` is "" when ok, otherwise a short machine-friendly string ("too_short: 2 words < 3") that
the pipeline records on the rejected row and counts in the funnel.
`run_filters` applies a list in order and stops at the first rejection.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import regex

from synthloom.text import ngrams, words


class FilterResult(NamedTuple):
    ok: bool
    reason: str = ""


TextFilter = Callable[[str], FilterResult]
PASS = FilterResult(True, "")


def length_bounds(text: str, min_words: int = 3, max_words: int = 150) -> FilterResult:
    """Word count (text.words) within [min_words, max_words] (Self-Instruct: > 3 and <= 150)."""
    n = len(words(text))
    if n < min_words:
        return FilterResult(False, f"too_short: {n} words < {min_words}")
    if n > max_words:
        return FilterResult(False, f"too_long: {n} words > {max_words}")
    return PASS


def repeated_ngram_ratio(text: str, n: int = 3) -> float:
    """Share of n-gram occurrences that repeat an earlier one: (total - unique) / total."""
    grams = ngrams(words(text), n)
    if not grams:
        return 0.0
    return (len(grams) - len(set(grams))) / len(grams)


def repetition(text: str, n: int = 3, max_ratio: float = 0.3) -> FilterResult:
    """Reject degenerate loops: more than max_ratio of the n-grams are repeats."""
    ratio = repeated_ngram_ratio(text, n)
    if ratio > max_ratio:
        return FilterResult(False, f"repetitive: {ratio:.2f} of {n}-grams repeated > {max_ratio}")
    return PASS


_REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i apologi[sz]e|my apologies|as an ai\b|as a language model|"
    r"i (?:can ?not|can'?t|am unable to|am not able to|won'?t) (?:help|assist|provide|answer|comply|fulfil|do that|create|write)|"
    r"i'?m (?:unable|not able) to (?:help|assist|provide|answer|comply)|"
    r"(?:it is|it's) not (?:appropriate|possible) for me)",
    re.IGNORECASE,
)


def refusal(text: str) -> FilterResult:
    """Reject refusals and apologies ("I'm sorry, but as an AI language model I cannot ...")."""
    m = _REFUSAL.search(text.replace("\u2019", "'"))
    return FilterResult(False, f"refusal: {m.group(0)!r}") if m else PASS


# Non-Latin scripts identify the language directly; Latin text is told apart by stopwords.
_SCRIPTS: list[tuple[str, regex.Pattern[str]]] = [
    ("ja", regex.compile(r"[\p{Hiragana}\p{Katakana}]")),
    ("ko", regex.compile(r"\p{Hangul}")),
    ("zh", regex.compile(r"\p{Han}")),
    ("th", regex.compile(r"\p{Thai}")),
    ("ru", regex.compile(r"\p{Cyrillic}")),
    ("el", regex.compile(r"\p{Greek}")),
    ("ar", regex.compile(r"\p{Arabic}")),
    ("he", regex.compile(r"\p{Hebrew}")),
    ("hi", regex.compile(r"\p{Devanagari}")),
]
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the of and to in is that it for on with as are this be was by not or you from at have".split()),
    "fr": frozenset("le la les de des et est un une du que en pour dans qui pas sur au avec ce il".split()),
    "de": frozenset("der die das und ist nicht ein eine zu den mit von sich auf für dem des im ich".split()),
    "es": frozenset("el la los las de y que en un una es por con para del se no al lo como".split()),
    "it": frozenset("il lo la gli le di e che un una è per non con del della sono in si".split()),
    "pt": frozenset("o a os as de e que em um uma é para com não do da no na se por".split()),
    "nl": frozenset("de het een en van is dat niet in op te voor met zijn er die ik".split()),
}


def detect_language(text: str) -> str:
    """ISO 639-1 code of the dominant language, or "und" when there is no evidence.

    Script first (a text with any kana is Japanese; Han without kana is Chinese), then the Latin
    language whose stopwords cover most tokens. Coarse by design: it guards against a generator
    drifting into another language, not fine dialect calls.
    """
    letters = regex.findall(r"\p{L}", text)
    if not letters:
        return "und"
    counts = {lang: len(p.findall(text)) for lang, p in _SCRIPTS}
    if counts["ja"] and counts["ja"] + counts["zh"] >= 0.3 * len(letters):
        return "ja"
    lang, best = max(((k, v) for k, v in counts.items() if k != "ja"), key=lambda kv: kv[1])
    if best >= 0.3 * len(letters):
        return lang
    toks = Counter(words(text))
    scores = {lg: sum(c for t, c in toks.items() if t in sw) for lg, sw in _STOPWORDS.items()}
    lang, best = max(scores.items(), key=lambda kv: kv[1])
    return lang if best > 0 else "und"


def language(text: str, expected: Sequence[str] = ("en",), min_words: int = 4) -> FilterResult:
    """Reject text detected as a language outside `expected` (short texts are given the benefit)."""
    if len(words(text)) < min_words:
        return PASS
    lang = detect_language(text)
    if lang in expected or lang == "und":
        return PASS
    return FilterResult(False, f"language: {lang} not in {','.join(expected)}")


DEFAULT_TEMPLATE_LEAKS = (
    "{{", "}}", "{%", "%}", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|assistant|>", "<|user|>",
    "[INST]", "[/INST]", "<s>", "</s>", "### Instruction", "### Response", "Instruction:", "Input:", "Output:",
)


def leaked_template(text: str, markers: Sequence[str] = DEFAULT_TEMPLATE_LEAKS) -> FilterResult:
    """Reject text carrying prompt-template or chat-format markers (the generator echoed its prompt)."""
    for m in markers:
        if m in text:
            return FilterResult(False, f"template_leak: {m!r}")
    return PASS


SELF_INSTRUCT_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
                           "draw", "plot", "go to")
CODE_ALPACA_EXTRA = ("video", "audio", "music", "flowchart", "diagram")


def blacklisted_words(text: str, blacklist: Sequence[str] = SELF_INSTRUCT_BLACKLIST) -> FilterResult:
    """Self-Instruct's whole-word, case-insensitive blacklist (tasks a text model cannot do)."""
    lowered = text.lower()
    for w in blacklist:
        if re.search(rf"\b{re.escape(w)}\b", lowered):
            return FilterResult(False, f"blacklisted: {w!r}")
    return PASS


def named(fn: Callable[..., FilterResult], name: str | None = None, **params: object) -> TextFilter:
    """Bind parameters to a filter and give the result a stable name for the funnel."""
    bound = partial(fn, **params)
    bound.__name__ = name or fn.__name__  # type: ignore[attr-defined]
    return bound  # type: ignore[return-value]


DEFAULT_FILTERS: tuple[TextFilter, ...] = (length_bounds, repetition, refusal, leaked_template, language)


def run_filters(text: str, filters: Sequence[TextFilter] = DEFAULT_FILTERS) -> tuple[bool, str, str]:
    """(ok, failing filter name, reason) from the first filter that rejects; (True, "", "") if none."""
    for f in filters:
        res = f(text)
        if not res.ok:
            return False, getattr(f, "__name__", "filter"), res.reason
    return True, "", ""
