"""Evol-Instruct / Code Evol-Instruct: evolution operations and the four elimination rules.

Operations (Xu et al. 2023, WizardLM; Luo et al. 2023, WizardCoder): WizardLM's five in-depth methods
share one rewriting wrapper that
caps growth at 10-20 words; in-breadth writes a brand-new, rarer prompt in the same domain.
WizardCoder uses a single "increase the difficulty" template with five code heuristics.
An evolution is eliminated when any rule below holds; the caller then keeps the *original*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Mode = Literal["general", "code"]


@dataclass(frozen=True)
class Operation:
    name: str
    template: str  # a templates/*.j2 file, rendered with `instruction` and `method`
    method: str = ""


# The METHOD strings are paraphrased from the papers' in-depth prompts.
_DEPTH = "evol_depth.j2"
GENERAL_OPERATIONS: tuple[Operation, ...] = (
    Operation("add_constraints", _DEPTH, "Please add one more constraint or requirement into #The Given Prompt#."),
    Operation("deepening", _DEPTH, "If #The Given Prompt# contains inquiries about certain issues, "
                                   "the depth and breadth of the inquiry can be increased."),
    Operation("concretizing", _DEPTH, "Please replace general concepts with more specific concepts."),
    Operation("increase_reasoning", _DEPTH, "If #The Given Prompt# can be solved with just a few simple thinking "
                                            "processes, you can rewrite it to explicitly request multiple-step "
                                            "reasoning."),
    Operation("complicate_input", _DEPTH, "Add structured input data to the prompt, such as a JSON object, an XML "
                                          "fragment, an SQL table, a code snippet, an HTML page or a shell command, "
                                          "and make the task depend on it."),
    Operation("breadth", "evol_breadth.j2"),
)

# WizardCoder's five heuristics for its unified template.
CODE_OPERATIONS: tuple[Operation, ...] = (
    Operation("code_constraints", "evol_code.j2",
              "Add new constraints and requirements to the original problem, adding approximately 10 additional words."),
    Operation("code_less_common", "evol_code.j2",
              "Replace a commonly used requirement in the programming task with a less common and more specific one."),
    Operation("code_reasoning", "evol_code.j2",
              "If the original problem can be solved with only a few logical steps, please add more reasoning steps."),
    Operation("code_erroneous", "evol_code.j2",
              "Provide a piece of erroneous code as a reference to increase misdirection."),
    Operation("code_complexity", "evol_code.j2",
              "Propose higher time or space complexity requirements, but please refrain from doing so frequently."),
)


def operations(mode: Mode, names: list[str] | None = None) -> tuple[Operation, ...]:
    """The operations of a mode, optionally restricted to `names` (unknown names are errors)."""
    from synthloom.errors import ConfigError

    ops = GENERAL_OPERATIONS if mode == "general" else CODE_OPERATIONS
    if not names:
        return ops
    by_name = {op.name: op for op in ops}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"unknown {mode} evolution operation(s) {unknown}; known: {', '.join(by_name)}")
    return tuple(by_name[n] for n in names)


# -- elimination ---------------------------------------------------------------------------------

# Rule 4: the evolved prompt copied words of the evolving prompt.
PROMPT_LEAKS = ("#the given prompt#", "#given prompt#", "#rewritten prompt#", "#created prompt#",
                "given prompt", "rewritten prompt", "created prompt")

# Rule 3: English function words; a response made only of these (and punctuation) says nothing.
STOP_WORDS = frozenset(["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "aren't",
                        "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can",
                        "can't", "cannot", "could", "couldn't", "did", "didn't", "do", "does", "doesn't", "doing", "don't",
                        "down", "during", "each", "few", "for", "from", "further", "had", "hadn't", "has", "hasn't", "have",
                        "haven't", "having", "he", "he'd", "he'll", "he's", "her", "here", "here's", "hers", "herself", "him",
                        "himself", "his", "how", "how's", "i", "i'd", "i'll", "i'm", "i've", "if", "in", "into", "is", "isn't",
                        "it", "it's", "its", "itself", "just", "let's", "me", "more", "most", "mustn't", "my", "myself", "no",
                        "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "ought", "our", "ours",
                        "ourselves", "out", "over", "own", "same", "shan't", "she", "she'd", "she'll", "she's", "should",
                        "shouldn't", "so", "some", "such", "than", "that", "that's", "the", "their", "theirs", "them",
                        "themselves", "then", "there", "there's", "these", "they", "they'd", "they'll", "they're", "they've",
                        "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "wasn't", "we", "we'd",
                        "we'll", "we're", "we've", "were", "weren't", "what", "what's", "when", "when's", "where", "where's",
                        "which", "while", "who", "who's", "whom", "why", "why's", "will", "with", "won't", "would", "wouldn't",
                        "you", "you'd", "you'll", "you're", "you've", "your", "yours", "yourself", "yourselves", "ok", "okay",
                        "yes", "yeah", "sure", "well"])

_WORD = re.compile(r"\w+(?:'\w+)?")


def copies_prompt_words(evolved: str) -> str:
    """The leaked marker if the evolved instruction copies words from the evolving prompt, else ""."""
    lowered = evolved.lower()
    return next((m for m in PROMPT_LEAKS if m in lowered), "")


def struggled(response: str, max_words: int = 80) -> bool:
    """Rule 2: the response apologises ("sorry") and is short (< 80 words)."""
    return "sorry" in response.lower() and len(response.split()) < max_words


def only_stopwords(response: str) -> bool:
    """Rule 3: nothing but punctuation and stop words (an empty response counts)."""
    return all(t in STOP_WORDS for t in _WORD.findall(response.lower()))


EQUALITY_LABELS = ("Equal", "Not Equal")


def parse_equality(verdict: str) -> bool | None:
    """Rule 1's judge answer: True = "Equal" (no information gain), False = "Not Equal", None = not a
    lone label (an echo of the prompt, a sentence, a hedge: unknown, never a guess)."""
    from synthloom.llm.constrained import strict_label

    label = strict_label(verdict, EQUALITY_LABELS)
    return None if label is None else label == "Equal"


EliminationReason = Literal["empty_evolution", "copied_prompt_words", "struggled_response", "stopwords_only",
                            "no_information_gain", "judge_unreadable"]


def cheap_elimination(original: str, evolved: str, response: str | None) -> str:
    """Rules 2-4 (no model call) plus an empty or unchanged evolution; "" when none applies.

    With `response=None` only the checks on the evolved instruction run (before asking for a response).
    """
    if not evolved.strip():
        return "empty_evolution"
    if copies_prompt_words(evolved):
        return "copied_prompt_words"
    if evolved.strip() == original.strip():
        return "no_information_gain"  # textually identical: no need to ask the judge
    if response is None:
        return ""
    if struggled(response):
        return "struggled_response"
    if only_stopwords(response):
        return "stopwords_only"
    return ""


def clean_evolved(text: str) -> str:
    """Strip code-fence-free wrapper noise that is not part of the prompt (quotes, blank edges)."""
    return text.strip().strip('"').strip()
