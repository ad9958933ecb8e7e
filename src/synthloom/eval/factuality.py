"""Long-form factuality (Wei et al. 2024): LongFact prompt generation, SAFE rating, F1@K.

SAFE, for a (prompt, response) pair, in exactly this order:
  1. split the response into sentences and each sentence into atomic facts (8-shot, "- " list);
  2. revise each fact to be self-contained (4-shot; the code block, else the original fact);
  3. judge relevance of the *revised* fact to the question (a constrained choice "Foo"/"Not Foo";
     unknown = relevant); irrelevant facts are labelled and not rated;
  4. up to `max_steps` times: the model writes one search query (code block), the search backend
     returns the top `k` results, appended to KNOWLEDGE; then the rater reasons step by step and
     gives its verdict as a constrained choice, Supported / Not Supported.
Then F1@K = 2PR/(P+R) with P = S/(S+N), R = min(S/K, 1), and 0 when S = 0.

Two guards keep the numbers about what the response said: every atomic fact must be grounded in
its source sentence (`grounding_problem`; a copied demonstration fact or a fragment is dropped and
counted), and verdicts are constrained choices (synthloom.llm.constrained): only a lone label
counts, so "unsupported" or "cannot be determined" is no verdict. A relevant fact left without a
verdict is `unrated` and counts as not supported in P (SAFE's rater supports a fact or it does not).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from synthloom.errors import BadInputError
from synthloom.eval.calls import render, stable_seed, user_request
from synthloom.eval.search import SearchBackend
from synthloom.llm.base import ChatRequest, ChatResponse, InvalidRequestError, Model
from synthloom.llm.constrained import ChoiceReading, choice_request, read_choice

SUPPORTED, NOT_SUPPORTED, IRRELEVANT, UNRATED = "supported", "not_supported", "irrelevant", "unrated"
RESPONSE_POSTAMBLE = ("Provide as many specific details and examples as possible (such as names of people, "
                      "numbers, events, locations, dates, times, etc.)")


# ---- F1@K ---------------------------------------------------------------------------------
def f1_at_k(supported: int, not_supported: int, k: int) -> float:
    """F1@K of Wei et al. 2024: precision S/(S+N), recall min(S/K, 1); 0 when S = 0."""
    if supported < 0 or not_supported < 0:
        raise BadInputError("fact counts must be non-negative")
    if k < 1:
        raise BadInputError(f"K must be >= 1, got {k}")
    if supported == 0:
        return 0.0
    precision = supported / (supported + not_supported)
    recall = min(supported / k, 1.0)
    return 2 * precision * recall / (precision + recall)


# ---- LongFact prompt generation ----------------------------------------------------------------
PREAMBLES = {
    "objects": ("Write one question about a specific, niche object (a person, place, event, work, organisation "
                "or thing) related to the given TOPIC. Ask about the object as a whole, without asking for a "
                "particular aspect. Put the question in square brackets."),
    "concepts": ("Write one question about a specific, niche concept (never an object) related to the given TOPIC. "
                 "The question should need a long answer with names, numbers and dates. Put the question in "
                 "square brackets."),
}
SEED_EXAMPLES = {
    "objects": [
        {"topic": "Architecture", "question": "What can you tell me about the Sagrada Familia in Barcelona?"},
        {"topic": "Astronomy", "question": "Who was Henrietta Swan Leavitt?"},
        {"topic": "Music", "question": "What is the history of the Stradivarius violin called the Messiah?"},
        {"topic": "Sports", "question": "What happened at the 1966 FIFA World Cup final?"},
    ],
    "concepts": [
        {"topic": "Economics", "question": "How does quantitative easing affect long-term interest rates?"},
        {"topic": "Biology", "question": "What is horizontal gene transfer and why does it matter for bacteria?"},
        {"topic": "Computer security", "question": "How do side-channel attacks such as Spectre leak secrets?"},
        {"topic": "Philosophy", "question": "What is the ship of Theseus problem about identity over time?"},
    ],
}


def bundled_topics() -> list[str]:
    text = resources.files("synthloom.eval").joinpath("data/longfact_topics.txt").read_text(encoding="utf-8")
    return [t.strip() for t in text.splitlines() if t.strip()]


def extract_bracketed(text: str) -> str | None:
    """The text inside the first pair of square brackets, stripped; None if there is none."""
    m = re.search(r"\[([^\[\]]+)\]", text)
    return m.group(1).strip() if m and m.group(1).strip() else None


async def generate_longfact_prompts(
    model: Model, topics: Sequence[str], subtask: Literal["objects", "concepts"] = "objects",
    per_topic: int = 2, window: int = 10, max_rounds: int | None = None, temperature: float = 1.0,
    max_tokens: int = 128, seed: int = 0, rejected: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Unique LongFact-style prompts per topic with the rolling exemplar window.

    Each round asks once for every topic still short of `per_topic`, all with the current window
    (the `window` most recent examples: hand-written seeds first, then every generated prompt is
    appended, so generated prompts progressively replace the seeds). Generations that are not
    kept are appended to `rejected` (when given) with `reject_reason` no_brackets | duplicate and
    the raw text as `detail`.
    """
    if subtask not in PREAMBLES:
        raise BadInputError(f"subtask must be 'objects' or 'concepts', got {subtask!r}")
    if not topics:
        raise BadInputError("no topics given")
    examples: list[dict[str, str]] = list(SEED_EXAMPLES[subtask])
    found: dict[str, list[str]] = {t: [] for t in topics}
    seen: set[str] = set()
    rounds = max_rounds if max_rounds is not None else per_topic * 4
    out: list[dict[str, Any]] = []
    for round_no in range(rounds):
        todo = [t for t in topics if len(found[t]) < per_topic]
        if not todo:
            break
        shown = examples[-window:]
        requests = [user_request(render("eval_longfact.j2", {"preamble": PREAMBLES[subtask], "examples": shown,
                                                             "topic": t}),
                                 temperature=temperature, max_tokens=max_tokens,
                                 seed=stable_seed("longfact", seed, subtask, t, round_no)) for t in todo]
        responses = await model.chat(requests)
        for topic, resp in zip(todo, responses):
            question = extract_bracketed(resp.text)
            if question is None or question.lower() in seen:
                if rejected is not None:
                    rejected.append({"topic": topic, "subtask": subtask, "prompt": question, "round": round_no,
                                     "reject_reason": "no_brackets" if question is None else "duplicate",
                                     "detail": resp.text[:500]})
                continue
            seen.add(question.lower())
            found[topic].append(question)
            examples.append({"topic": topic, "question": question})
            out.append({"topic": topic, "subtask": subtask, "prompt": question, "round": round_no})
    return out


# ---- SAFE --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SafeConfig:
    max_steps: int = 5          # search queries per fact
    num_results: int = 3        # results kept per query
    max_facts: int = 64         # cap per response (facts after the cap are not rated)
    temperature: float = 0.1
    max_tokens: int = 512
    rate_retries: int = 1       # extra rating attempts when the verdict cannot be parsed
    ks: tuple[int, ...] = (64, 178)
    seed: int = 0


_ABBREVIATIONS = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|vs|etc|e\.g|i\.e|U\.S|No)\.$")


def split_sentences(text: str) -> list[str]:
    """Sentences of a response (line breaks and list markers split too; common abbreviations do not)."""
    out: list[str] = []
    for line in re.split(r"\n+", text):
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", line).strip()
        if not line:
            continue
        buf = ""
        for piece in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", line):
            buf = f"{buf} {piece}".strip() if buf else piece
            if not _ABBREVIATIONS.search(buf):
                out.append(buf)
                buf = ""
        if buf:
            out.append(buf)
    return out


def parse_fact_list(text: str) -> list[str]:
    """Facts from a "- fact" list; stops at the next demonstration the model may start."""
    facts = []
    for line in text.splitlines():
        if line.lower().startswith("please breakdown"):
            break
        m = re.match(r"^\s*[-*•]\s*(.+?)\s*$", line)
        if m and len(m.group(1)) > 2:
            facts.append(m.group(1))
    return facts


def parse_code_block(text: str) -> str | None:
    m = re.search(r"```(?:\w*\n)?(.*?)```", text, re.DOTALL)
    if m and m.group(1).strip():
        return m.group(1).strip()
    return None


RELEVANCE_LABELS = ("Foo", "Not Foo")
RATING_LABELS = ("Supported", "Not Supported")
RATING_QUESTION = "So, is the STATEMENT supported by the KNOWLEDGE? Answer Supported or Not Supported."


def parse_query(text: str) -> str | None:
    """The search query: the code block's first line, else the first non-empty line."""
    block = parse_code_block(text)
    if block:
        return block.splitlines()[0].strip()[:200]
    for line in text.splitlines():
        line = re.sub(r"(?i)^\s*query\s*:", "", line).strip().strip("`\"'").strip()
        if line:
            return line[:200]
    return None


# ---- grounding: a fact must be stated by its sentence ------------------------------------------
# The few-shot splitter can copy a demonstration fact ("The Eiffel Tower was completed in 1889.")
# or cut a fragment ("The E") into the list; rating those counts facts the response never stated.
# A fact is kept only when it has a content word and most of its content words occur in its source
# sentence (words compared by a crude stem, so "completed"/"completion" and "studied"/"study" match).
_FUNCTION_WORDS = frozenset("""
a an the of and or but nor to in on at by for from with without into onto about as than then so
is are was were be been being am do does did has have had having will would shall should can could
may might must it its it's this that these those there here he she they them his her hers their
theirs him we us our you your i me my mine who whom whose which what when where why how also very
not no yes all any some each every both either neither one ones such just only more most much many
""".split())
MIN_CONTENT_WORDS = 1
MIN_GROUNDED_SHARE = 2 / 3


def _stem(word: str) -> str:
    """A crude stem: common inflections off, then the first 5 letters ("studied" ~ "study")."""
    if len(word) > 4:
        word = re.sub(r"(?:ies|ied)$", "y", word)
        word = re.sub(r"(?:ing|ed|es|s)$", "", word)
    return word[:5]


def content_words(text: str) -> list[str]:
    """Lowercased content words (letters/digits runs that are not function words), stemmed."""
    return [_stem(w) for w in re.findall(r"[^\W_]+", text.lower()) if w not in _FUNCTION_WORDS]


def grounding_problem(fact: str, source: str) -> str | None:
    """Why `fact` is not grounded in `source` (None when it is): no content word of two or more
    characters (a fragment such as "The E"), or fewer than 2/3 of its content words in the source."""
    words = content_words(fact)
    if len({w for w in words if len(w) > 1 or w.isdigit()}) < MIN_CONTENT_WORDS:
        return "fragment"
    have = set(content_words(source))
    share = sum(1 for w in words if w in have) / len(words)
    return None if share >= MIN_GROUNDED_SHARE else f"ungrounded ({share:.0%} of its content words in the sentence)"


def _normalise_fact(fact: str) -> str:
    return re.sub(r"\W+", " ", fact.lower()).strip()


class _Asker:
    """Seeded single-prompt calls that count tokens and turn refused requests into None."""

    def __init__(self, model: Model, cfg: SafeConfig) -> None:
        self.model, self.cfg = model, cfg
        self.prompt_tokens = self.completion_tokens = self.calls = 0

    async def __call__(self, template: str, variables: Mapping[str, Any], *key: Any, max_tokens: int | None = None,
                       stop: list[str] | None = None) -> ChatResponse | None:
        request = user_request(render(template, variables), temperature=self.cfg.temperature,
                               max_tokens=max_tokens or self.cfg.max_tokens, stop=stop or [],
                               seed=stable_seed("safe", self.cfg.seed, template, *key))
        return await self._send(request)

    async def choose(self, messages: list[dict[str, str]], labels: tuple[str, ...], *key: Any) -> ChoiceReading:
        """A constrained choice among `labels`; a refused request or a non-label answer is unknown."""
        request = choice_request(messages, labels, seed=stable_seed("safe-choice", self.cfg.seed, *key))
        response = await self._send(request)
        return read_choice(response, labels) if response is not None else ChoiceReading(None)

    async def _send(self, request: ChatRequest) -> ChatResponse | None:
        try:
            response = (await self.model.chat([request]))[0]
        except InvalidRequestError:
            return None
        self.calls += 1
        self.prompt_tokens += response.usage.prompt_tokens
        self.completion_tokens += response.usage.completion_tokens
        return response


@dataclass
class FactResult:
    sentence: str
    atomic: str
    revised: str = ""
    relevant: bool = True
    queries: list[str] = field(default_factory=list)
    evidence: list[dict[str, str]] = field(default_factory=list)
    label: str = UNRATED
    detail: str = ""
    probs: dict[str, float] = field(default_factory=dict)  # the rater's label probabilities, when given


async def _split(ask: _Asker, response: str) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """(sentence, atomic fact) pairs grounded in their sentence, and the facts dropped with why."""
    sentences = split_sentences(response)
    replies = await asyncio.gather(*(ask("eval_safe_split.j2", {"sentence": s}, "split", s, stop=["Please breakdown"])
                                     for s in sentences))
    pairs: list[tuple[str, str]] = []
    dropped: list[dict[str, str]] = []
    for sentence, reply in zip(sentences, replies):
        facts = parse_fact_list(reply.text) if reply is not None else []
        kept = []
        for fact in facts:
            why = grounding_problem(fact, sentence)
            if why is None:
                kept.append(fact)
            else:
                dropped.append({"sentence": sentence, "fact": fact, "reason": why})
        pairs.extend((sentence, f) for f in (kept or [sentence]))  # nothing usable: the sentence is one fact
    return pairs, dropped


async def _revise(ask: _Asker, response: str, fact: FactResult) -> None:
    reply = await ask("eval_safe_revise.j2", {"response": response, "fact": fact.atomic}, "revise", fact.atomic,
                      stop=["RESPONSE:"])
    revised = parse_code_block(reply.text) if reply is not None else None
    revised = revised.splitlines()[0].strip() if revised else None
    # the revision may only replace references by entities of the response, never add claims
    fact.revised = revised if revised and grounding_problem(revised, f"{fact.atomic} {response}") is None else fact.atomic


async def _relevance(ask: _Asker, prompt: str, response: str, fact: FactResult) -> None:
    text = render("eval_safe_relevance.j2", {"prompt": prompt, "response": response, "fact": fact.revised})
    reading = await ask.choose([{"role": "user", "content": text}], RELEVANCE_LABELS, "relevance", prompt, fact.revised)
    fact.relevant = reading.label != "Not Foo"  # unknown = relevant, as in SAFE; a negation is never "Foo"
    if not fact.relevant:
        fact.label = IRRELEVANT


async def _rate(ask: _Asker, search: SearchBackend, fact: FactResult) -> None:
    cfg = ask.cfg
    knowledge: list[str] = []
    for step in range(cfg.max_steps):
        reply = await ask("eval_safe_query.j2", {"knowledge": knowledge, "fact": fact.revised}, "query", fact.revised,
                          step, max_tokens=min(cfg.max_tokens, 48), stop=["STATEMENT:", "KNOWLEDGE:"])
        query = (parse_query(reply.text) if reply is not None else None) or fact.revised
        fact.queries.append(query)
        results = await asyncio.to_thread(search.search, query, cfg.num_results)
        for r in results[: cfg.num_results]:
            fact.evidence.append({"query": query, "title": r.title, "text": r.text, "source": r.source})
            if r.text not in knowledge:
                knowledge.append(r.text)
    variables = {"knowledge": knowledge, "fact": fact.revised}
    for attempt in range(cfg.rate_retries + 1):
        # SAFE's rater reasons step by step first; the verdict is then asked as a constrained
        # choice on that reasoning, so it is never read from prose ("unsupported", "cannot be
        # determined" and the like are no verdict).
        reply = await ask("eval_safe_rate.j2", variables, "rate", fact.revised, attempt, stop=["STATEMENT:", "KNOWLEDGE:"])
        reasoning = reply.text.strip() if reply is not None else ""
        messages = [{"role": "user", "content": render("eval_safe_rate.j2", variables)},
                    {"role": "assistant", "content": reasoning or "(no reasoning)"},
                    {"role": "user", "content": RATING_QUESTION}]
        reading = await ask.choose(messages, RATING_LABELS, "rate", fact.revised, attempt)
        if reading.label is not None:
            fact.label = SUPPORTED if reading.label == "Supported" else NOT_SUPPORTED
            fact.probs = reading.probs
            fact.detail = reasoning[-300:]
            return
    fact.label, fact.detail = UNRATED, "the rater gave no lone Supported / Not Supported verdict"


async def safe_rate_response(model: Model, search: SearchBackend, prompt: str, response: str,
                             cfg: SafeConfig = SafeConfig()) -> dict[str, Any]:
    """SAFE on one response: per-fact records, label counts, precision and F1@K for each K."""
    if not response.strip():
        raise BadInputError("SAFE needs a non-empty response")
    ask = _Asker(model, cfg)
    pairs, dropped = await _split(ask, response)
    facts = [FactResult(sentence, atomic) for sentence, atomic in pairs[: cfg.max_facts]]
    await asyncio.gather(*(_revise(ask, response, f) for f in facts))
    # F1@K assumes no repeated facts: rate each distinct revised fact once.
    seen: set[str] = set()
    duplicates = 0
    unique: list[FactResult] = []
    for f in facts:
        key = _normalise_fact(f.revised)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        unique.append(f)
    await asyncio.gather(*(_relevance(ask, prompt, response, f) for f in unique))
    await asyncio.gather(*(_rate(ask, search, f) for f in unique if f.relevant))
    counts = {label: sum(1 for f in unique if f.label == label) for label in (SUPPORTED, NOT_SUPPORTED, IRRELEVANT, UNRATED)}
    # A relevant fact SAFE could not rate as Supported is not supported: unrated facts count
    # against precision (they are still reported separately).
    s, n = counts[SUPPORTED], counts[NOT_SUPPORTED] + counts[UNRATED]
    return {
        "prompt": prompt, "response": response,
        "facts": [f.__dict__ for f in unique], "dropped_facts": dropped,
        "num_facts": len(unique), "num_dropped": len(dropped), "duplicate_facts": duplicates,
        "facts_over_cap": max(0, len(pairs) - cfg.max_facts),
        **{f"num_{k}": v for k, v in counts.items()},
        "precision": s / (s + n) if s + n else 0.0,
        **{f"f1@{k}": f1_at_k(s, n, k) for k in cfg.ks},
        "model_calls": ask.calls, "prompt_tokens": ask.prompt_tokens, "completion_tokens": ask.completion_tokens,
    }


async def safe_evaluate(model: Model, search: SearchBackend, items: Sequence[Mapping[str, Any]],
                        cfg: SafeConfig = SafeConfig(), concurrency: int = 8) -> list[dict[str, Any]]:
    """SAFE over many {prompt, response} items (responses that fail get `error`, never dropped)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(item: Mapping[str, Any]) -> dict[str, Any]:
        for key in ("prompt", "response"):
            if key not in item:
                raise BadInputError(f"factuality item needs {key!r}")
        async with sem:
            try:
                return {**dict(item), **await safe_rate_response(model, search, str(item["prompt"]),
                                                                  str(item["response"]), cfg)}
            except BadInputError as e:
                return {**dict(item), "error": str(e)}

    return list(await asyncio.gather(*(one(i) for i in items)))


def summarize_factuality(results: Sequence[Mapping[str, Any]], ks: Sequence[int]) -> dict[str, Any]:
    """Means over rated responses: F1@K for each K, precision, and fact label totals."""
    rated = [r for r in results if "error" not in r]
    summary: dict[str, Any] = {"responses": len(results), "rated": len(rated), "errors": len(results) - len(rated)}
    for label in (SUPPORTED, NOT_SUPPORTED, IRRELEVANT, UNRATED, "dropped"):
        summary[f"total_{label}"] = sum(int(r.get(f"num_{label}", 0)) for r in rated)
    if rated:
        summary["mean_precision"] = sum(r["precision"] for r in rated) / len(rated)
        for k in ks:
            summary[f"mean_f1@{k}"] = sum(r[f"f1@{k}"] for r in rated) / len(rated)
    return summary


def sample_topics(topics: Sequence[str], n: int, seed: int = 0) -> list[str]:
    return random.Random(seed).sample(list(topics), min(n, len(topics)))
