"""MetaMath backward questions (FOBAR and Self-Verification): deterministic, no model involved.

Masking (Yu et al. 2023, MetaMath; Weng et al. 2023 for self-verification):

* the question is split on single spaces; a token is a *number token* if it contains a digit, no
  letter and none of ``\\n : ( ) - * " + –`` (so negatives, ranges, times and formulas are left
  alone); for GSM8K the words one … twelve, sixteen, fifth and half count too;
* each number token gives **one** backward question with that token (only) replaced by ``x``
  (GSM8K) or ``X`` (MATH), keeping a leading ``$`` and the trailing punctuation
  (``, . ? ; ” ' ! " %``): ``$12.`` → ``$x.``, ``50%,`` → ``x%,``. (MetaMath's code drops the ``$``
  when punctuation follows; we keep both, which is what its prose intends.)

FOBAR appends the forward answer as a given; SV instead turns the question sentence into a
declarative statement and asks for x. They are different templates and stay separate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from synthloom.verdicts import Verdict

Dataset = Literal["gsm8k", "math"]

NUMBER_WORDS: dict[str, str] = {
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "sixteen": "16",
    "fifth": "5",
    "half": "50%",
}  # MetaMath's list and values, kept as is ("half" masks to 50%, "fifth" to 5)
TRAILING_PUNCTUATION = frozenset(",.?;”'!\"%")
_FORBIDDEN = re.compile(r"[\n:()\-*\"+–]")
_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"\d")


@dataclass(frozen=True)
class BackwardQuestion:
    """One masked question: the text with one number replaced by the variable, and that number."""

    question: str
    masked_value: str  # the number that was masked, cleaned: "1,000" -> "1000", "five" -> "5"
    token_index: int  # position of the masked token in question.split(" ")


def unknown_variable(dataset: Dataset) -> str:
    return "X" if dataset == "math" else "x"


def _bare_word(token: str) -> str:
    return token.rstrip("".join(TRAILING_PUNCTUATION)).lower()


def is_number_token(token: str, dataset: Dataset = "gsm8k") -> bool:
    """MetaMath's number-token rule (number words count for GSM8K only)."""
    if dataset == "gsm8k" and _bare_word(token) in NUMBER_WORDS:
        return True
    return bool(_DIGIT.search(token)) and not _LETTER.search(token) and not _FORBIDDEN.search(token)


def _split_affixes(token: str, dataset: Dataset) -> tuple[str, str, str]:
    """(prefix kept, number core, suffix kept) for a number token."""
    trailing = TRAILING_PUNCTUATION | ({"$"} if dataset == "math" else set())
    prefix = "$" if token.startswith("$") else ""
    core = token[len(prefix) :]
    end = len(core)
    while end > 0 and core[end - 1] in trailing:
        end -= 1
    return prefix, core[:end], core[end:]


def _clean_value(core: str, dataset: Dataset) -> str:
    word = core.lower()
    if dataset == "gsm8k" and word in NUMBER_WORDS:
        return NUMBER_WORDS[word]
    return core.replace(",", "")


def mask_token(token: str, dataset: Dataset = "gsm8k") -> tuple[str, str]:
    """(replacement text, masked value) for one number token."""
    prefix, core, suffix = _split_affixes(token, dataset)
    # "25%" masks to "x%" with value 25: the sign stays in the text, so x is the number itself.
    value = _clean_value(core, dataset)
    return f"{prefix}{unknown_variable(dataset)}{suffix}", value


def backward_questions(question: str, dataset: Dataset = "gsm8k") -> list[BackwardQuestion]:
    """One masked question per number token, in order of appearance."""
    tokens = question.split(" ")
    results = []
    for index, token in enumerate(tokens):
        if not token or not is_number_token(token, dataset):
            continue
        replacement, value = mask_token(token, dataset)
        masked = tokens[:index] + [replacement] + tokens[index + 1 :]
        results.append(BackwardQuestion(" ".join(masked), value, index))
    return results


# ---------------------------------------------------------------------------------------------
# FOBAR
# ---------------------------------------------------------------------------------------------


def fobar_question(masked_question: str, answer: str, dataset: Dataset = "gsm8k") -> str:
    """The masked question followed by the forward answer given as known."""
    variable = "$X$" if dataset == "math" else "x"
    lead = "### " if dataset == "math" else ""
    return (
        f"{masked_question}\n{lead}If we know the answer to the above question is {answer}, "
        f"what is the value of unknown variable {variable}?"
    )


# ---------------------------------------------------------------------------------------------
# Self-Verification
# ---------------------------------------------------------------------------------------------

# A sentence boundary is '.', ',' (MetaMath turns commas into full stops first), '?' or '!'
# followed by whitespace. Unlike MetaMath's plain split, decimals ("2.50") and thousands
# separators ("1,000") are never boundaries.
_BOUNDARY = re.compile(r"[.,?!](?=\s)")


def sv_split(masked_question: str) -> tuple[str, str]:
    """(context, question sentence): the last sentence is the one to rewrite declaratively."""
    text = masked_question.strip()
    boundaries = [m.end() for m in _BOUNDARY.finditer(text)]
    if not boundaries:
        return "", text
    cut = boundaries[-1]
    context, sentence = text[:cut].strip(), text[cut:].strip()
    if context.endswith(","):
        context = context[:-1] + "."
    return context, sentence


def sv_rewrite_input(question_sentence: str, answer: str) -> str:
    """What the few-shot rewriter sees: 'How many …? The answer is 5.'"""
    return f"{question_sentence} The answer is {answer}."


def sv_question(context: str, declarative: str, dataset: Dataset = "gsm8k") -> str:
    """Context + declarative statement + the request for the unknown variable."""
    variable = "$X$" if dataset == "math" else "x"
    body = f"{context} {declarative.strip()}".strip()
    return f"{body} What is the value of unknown variable {variable}?"


_PRESENT = {"have": "has", "do": "does"}
_PAST = {
    "spend": "spent",
    "pay": "paid",
    "make": "made",
    "get": "got",
    "have": "had",
    "buy": "bought",
    "sell": "sold",
    "give": "gave",
    "eat": "ate",
    "read": "read",
    "win": "won",
    "take": "took",
    "find": "found",
    "lose": "lost",
    "bring": "brought",
    "keep": "kept",
    "put": "put",
}


def _third_person(verb: str) -> str:
    if verb in _PRESENT:
        return _PRESENT[verb]
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _past(verb: str) -> str:
    if verb in _PAST:
        return _PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


def declarative_statement(question_sentence: str, answer: str) -> str | None:
    """Rule-based SV rewrite for common question shapes; None when the LLM rewrite is needed.

    "How many apples does Bob have?" + 5 -> "Bob has 5 apples."
    """
    q = question_sentence.strip().rstrip("?").strip()
    patterns: list[tuple[str, object]] = [
        (
            r"How many (?P<noun>.+?) are there(?P<rest>.*)",
            lambda m: f"There are {answer} {m['noun']}{m['rest']}.",
        ),
        (
            r"How many (?P<noun>.+?) (?P<aux>does|did) (?P<subj>.+?) (?P<verb>[a-z]+)(?P<rest>(?: .*)?)",
            lambda m: (
                f"{m['subj']} {(_third_person if m['aux'] == 'does' else _past)(m['verb'])} {answer} {m['noun']}{m['rest']}."
            ),
        ),
        (
            r"How many (?P<noun>.+?) do (?P<subj>.+?) (?P<verb>[a-z]+)(?P<rest>(?: .*)?)",
            lambda m: f"{m['subj']} {m['verb']} {answer} {m['noun']}{m['rest']}.",
        ),
        (
            r"How much (?:money )?(?P<aux>does|did) (?P<subj>.+?) (?P<verb>[a-z]+)(?P<rest>(?: .*)?)",
            lambda m: (
                f"{m['subj']} {(_third_person if m['aux'] == 'does' else _past)(m['verb'])} {answer}{m['rest']}."
            ),
        ),
        (
            r"What (?:is|was) (?P<thing>.+)",
            lambda m: f"{m['thing'][:1].upper()}{m['thing'][1:]} is {answer}.",
        ),
    ]
    for pattern, build in patterns:
        match = re.fullmatch(pattern, q)
        if match:
            return build(match)  # type: ignore[operator]
    return None


# ---------------------------------------------------------------------------------------------
# Checking the model's declarative statement (SV)
# ---------------------------------------------------------------------------------------------

_SV_NUMBER = re.compile(r"\$?\d[\d,]*(?:\.\d+)?%?")
_META_WORDS = re.compile(r"\b(?:answers?|questions?|statements?|rewrite|input|unknown)\b", re.IGNORECASE)
_STOPWORDS = frozenset(
    "a an the of in on at to for by with from and or is are was were be been will would does did do has "
    "have had how many much what which who when where there it its he she they them his her their this "
    "that each every all total per than then now".split()
)


def _quantities(text: str, dataset: Dataset) -> list[str]:
    """The numbers a text states, normalised ('$12.50' -> '12.5'), number words included (GSM8K)."""
    from synthloom.verify.math import normalize_answer

    values = [normalize_answer(m.group(0).rstrip("%")) for m in _SV_NUMBER.finditer(text)]
    if dataset == "gsm8k":
        values += [NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower())
                   if w in NUMBER_WORDS and w not in ("half", "fifth")]
    return sorted(values)


def _content_words(text: str) -> set[str]:
    words = re.findall(r"[a-z]+", text.lower())
    return {w[:-1] if w.endswith("s") and len(w) > 3 else w for w in words if w not in _STOPWORDS and len(w) > 1}


def check_declarative(question_sentence: str, answer: str, statement: str,
                      dataset: Dataset = "gsm8k") -> Verdict:
    """Is `statement` a faithful declarative rewrite of `question_sentence` with `answer` filled in?

    MetaMath's SV question is "{context} {statement} What is x?": a statement that does not state the
    forward answer, drops or invents a number, loses the masked variable or talks about "the answer"
    instead of the quantity ("The answer for all the questions is 15.") makes x underivable or wrong.
    Checked: the numbers (those of the sentence plus the answer, no more, no fewer), the variable,
    and the content words — against the rule-based rewrite where one applies, else the sentence.
    """
    from synthloom.verdicts import Verdict
    from synthloom.verify.math import normalize_answer

    said = " ".join(statement.split())
    reference = declarative_statement(question_sentence, answer)
    method = "sv_declarative:" + ("rule_reference" if reference else "question_sentence")
    if not said:
        return Verdict.failed(method, "empty statement")
    if "?" in said:
        return Verdict.failed(method, f"a question, not a statement: {said[:120]!r}")
    if meta := _META_WORDS.search(said):
        return Verdict.failed(method, f"talks about the {meta.group(0)!r}, not the quantity: {said[:120]!r}")
    expected = sorted(_quantities(question_sentence, dataset) + [normalize_answer(answer)])
    stated = _quantities(said, dataset)
    if stated != expected:
        return Verdict.failed(method, f"numbers {stated} where {expected} were expected: {said[:120]!r}")
    variable = unknown_variable(dataset)
    pattern = rf"(?<![A-Za-z]){variable}(?![A-Za-z])"
    if bool(re.search(pattern, question_sentence)) != bool(re.search(pattern, said)):
        return Verdict.failed(method, f"the variable {variable} is lost or added: {said[:120]!r}")
    base = reference or question_sentence
    wanted = _content_words(base)
    shared = wanted & _content_words(said)
    need = 2 / 3 if reference else 1 / 2
    if wanted and len(shared) < need * len(wanted):
        return Verdict.failed(method, f"shares {sorted(shared)} of {sorted(wanted)} with {base!r}: {said[:120]!r}")
    return Verdict.passed(method, f"{said[:120]!r} states {answer!r} like {base!r}")
