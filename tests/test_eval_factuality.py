"""F1@K, LongFact generation, FTS5 search ranking, SAFE parsing, and SAFE end-to-end on the embedded model."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from synthloom.errors import BadInputError
from synthloom.eval.factuality import (
    NOT_SUPPORTED,
    RATING_LABELS,
    RELEVANCE_LABELS,
    SUPPORTED,
    SafeConfig,
    extract_bracketed,
    f1_at_k,
    generate_longfact_prompts,
    grounding_problem,
    parse_fact_list,
    safe_rate_response,
    split_sentences,
)
from synthloom.eval.search import CallableSearch, LocalSearch, fts_query
from synthloom.llm.base import ChatResponse, Choice
from synthloom.llm.constrained import read_choice
from synthloom.llm.scripted import ScriptedModel


def _reply(text: str) -> ChatResponse:
    return ChatResponse([Choice(text, "stop")])


def _prompt(request) -> str:
    """The prompt a scripted model answers: a verdict's follow-up question is about the first turn."""
    return request.messages[0 if request.choice_labels == list(RATING_LABELS) else -1]["content"]


# ---- F1@K ----------------------------------------------------------------------------------------
def test_f1_at_k_zero_when_nothing_supported():
    assert f1_at_k(0, 10, 64) == 0.0
    assert f1_at_k(0, 0, 64) == 0.0


def test_f1_at_k_recall_is_capped_at_one_when_s_exceeds_k():
    # S=80 > K=64: recall 1, precision 80/100 -> F1 = 2*0.8/(1.8)
    assert f1_at_k(80, 20, 64) == pytest.approx(2 * 0.8 * 1.0 / 1.8)
    assert f1_at_k(64, 0, 64) == 1.0


def test_f1_at_k_when_k_exceeds_s():
    # S=10, N=5, K=64: precision 2/3, recall 10/64
    p, r = 10 / 15, 10 / 64
    assert f1_at_k(10, 5, 64) == pytest.approx(2 * p * r / (p + r))
    assert f1_at_k(10, 5, 178) < f1_at_k(10, 5, 64)  # larger K, lower recall


def test_f1_at_k_rejects_bad_counts():
    with pytest.raises(BadInputError):
        f1_at_k(-1, 0, 64)
    with pytest.raises(BadInputError):
        f1_at_k(1, 0, 0)


# ---- parsing -------------------------------------------------------------------------------------
def test_parsers_handle_messy_model_output():
    assert split_sentences("Dr. Smith lives in Paris. He was born in 1950!\n- A list item") == [
        "Dr. Smith lives in Paris.", "He was born in 1950!", "A list item"]
    assert parse_fact_list("- Fact one.\n- Fact two.\nPlease breakdown the following sentence\n- leaked") == [
        "Fact one.", "Fact two."]
    # SAFE's verdicts are constrained choices: only a lone label (brackets allowed) counts
    assert read_choice(_reply("[Supported]"), RATING_LABELS).label == "Supported"
    assert read_choice(_reply("not supported"), RATING_LABELS).label == "Not Supported"
    for text in ("so the answer is supported", "unsupported", "[Unsupported]", "The claim is not supported.",
                 "It cannot be determined from the KNOWLEDGE.", "This is not [Supported]", "[Supported] or [Not",
                 "Maybe [Supported], maybe not", "no verdict here", "[Foo]", ""):
        assert read_choice(_reply(text), RATING_LABELS).label is None, text
    assert read_choice(_reply("[Not Foo]"), RELEVANCE_LABELS).label == "Not Foo"
    for text in ("gibberish", "not [Foo]", "It is unrelated", "[Supported]", "Foo, but not really"):
        assert read_choice(_reply(text), RELEVANCE_LABELS).label is None, text  # unknown: SAFE keeps it relevant
    assert extract_bracketed("QUESTION:\n[Who was Ada Lovelace?] extra [x]") == "Who was Ada Lovelace?"
    assert extract_bracketed("no brackets") is None


# ---- local search --------------------------------------------------------------------------------
def test_fts5_bm25_ranks_the_matching_passage_first():
    search = LocalSearch([
        {"id": "a", "title": "Honey bee", "text": "Bees make honey and live in colonies with a queen."},
        {"id": "b", "title": "Whale", "text": "The blue whale eats krill. Whales are mammals."},
        {"id": "c", "title": "Krill", "text": "Krill are small crustaceans. Krill krill krill swarm in oceans."},
    ])
    hits = search.search("What do blue whales eat?", k=3)
    assert hits[0].source == "b"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    krill = search.search("krill", k=2)
    assert [h.source for h in krill] == ["c", "b"]  # more occurrences in a shorter text rank higher
    assert search.search("!!! ??? ...", k=3) == []  # punctuation-only queries are not FTS5 syntax errors
    assert fts_query('the "hello" (AND) NEAR hello') == '"hello" OR "near"'


def test_bundled_corpus_and_bad_corpus(tmp_path):
    search = LocalSearch.bundled()
    assert search.size >= 30
    assert search.search("Who first reached the summit of Mount Everest?", 1)[0].title == "Mount Everest"
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(BadInputError, match=r"c\.jsonl:2: invalid JSON"):
        LocalSearch.from_file(bad)


def test_callable_search_adapter_maps_web_results():
    search = CallableSearch(lambda q, k: [{"title": "T", "snippet": f"about {q}", "link": "http://x"}] * 5)
    hits = search.search("eiffel", 3)
    assert len(hits) == 3 and hits[0].text == "about eiffel" and hits[0].source == "http://x"


# ---- LongFact (control flow with a scripted model) ----------------------------------------------
def test_longfact_window_rolls_and_dedups():
    counter = iter(range(1000))

    def answer(request):
        n = next(counter)
        return "[Same question?]" if n == 1 else f"[Question number {n}?] trailing"

    model = ScriptedModel(answer)
    prompts = asyncio.run(generate_longfact_prompts(model, ["Astronomy", "Music"], per_topic=3, window=4))
    texts = [p["prompt"] for p in prompts]
    assert len(texts) == len(set(texts)) == 6
    assert {p["topic"] for p in prompts} == {"Astronomy", "Music"}
    last_prompt = model.requests[-1].messages[-1]["content"]
    # the window holds the 4 most recent examples: generated prompts replaced the hand-written seeds
    assert "Sagrada Familia" not in last_prompt and "Question number" in last_prompt
    assert last_prompt.count("QUESTION:") == 5  # 4 exemplars + the query


# ---- SAFE control flow ---------------------------------------------------------------------------
def test_safe_pipeline_order_and_counts_with_scripted_model():
    def answer(request):
        text = _prompt(request)
        last = text.rsplit("Please breakdown the following sentence into independent facts:", 1)[-1]
        if "independent facts" in text:
            return "- It is in Paris.\n- It was finished in 1889." if "Tower" in last else "- Bananas are blue."
        if "REVISED STATEMENT" in text:
            fact = text.rsplit("STATEMENT:", 2)[-2].strip().splitlines()[0]
            return "```\n" + fact.replace("It ", "The Eiffel Tower ") + "\n```"
        if "[Not Foo]" in text:
            return "[Not Foo]" if "Bananas" in text.rsplit("STATEMENT:", 1)[-1] else "[Foo]"
        if "QUERY:" in text:
            return "```\n" + text.rsplit("STATEMENT:", 1)[-1].split("\n")[0] + "\n```"
        knowledge = text.split("STATEMENT:")[-2] if text.count("STATEMENT:") > 1 else text
        return "[Supported]" if "1889" in text.rsplit("STATEMENT:", 1)[-1] and "1889" in knowledge else "[Not Supported]"

    cfg = SafeConfig(max_steps=2, ks=(1, 10))
    result = asyncio.run(safe_rate_response(ScriptedModel(answer), LocalSearch.bundled(), "Tell me about the Eiffel Tower.",
                                            "The Tower is in Paris and was finished in 1889. Bananas are blue.", cfg))
    facts = {f["revised"]: f for f in result["facts"]}
    assert set(facts) == {"The Eiffel Tower is in Paris.", "The Eiffel Tower was finished in 1889.", "Bananas are blue."}
    assert facts["Bananas are blue."]["label"] == "irrelevant" and facts["Bananas are blue."]["queries"] == []
    finished = facts["The Eiffel Tower was finished in 1889."]
    assert finished["label"] == SUPPORTED and len(finished["queries"]) == 2 and len(finished["evidence"]) <= 6
    assert (result["num_supported"], result["num_not_supported"], result["num_irrelevant"]) == (1, 1, 1)
    assert result["f1@1"] == pytest.approx(f1_at_k(1, 1, 1)) and result["f1@10"] == pytest.approx(f1_at_k(1, 1, 10))


# ---- SAFE on a planted-fact corpus: F1@K known in advance ------------------------------------------
PLANTED_CORPUS = [
    {"title": "Marie Curie", "text": "Marie Curie was born in Warsaw in 1867."},
    {"title": "Marie Curie", "text": "Marie Curie won the Nobel Prize in Physics in 1903."},
    {"title": "Marie Curie", "text": "Marie Curie won the Nobel Prize in Chemistry in 1911."},
    {"title": "Marie Curie", "text": "Marie Curie discovered polonium and radium."},
    {"title": "Eiffel Tower", "text": "The Eiffel Tower was completed in 1889."},
]
PLANTED_RESPONSE = ("Marie Curie was born in Warsaw in 1867 and won the Nobel Prize in Physics in 1903. "
                    "She was born in Brazil. Marie Curie discovered polonium. "
                    "She won the Nobel Prize in Chemistry in 1911. Marie Curie invented the telephone.")


def _planted_safe_model(request):
    """Splits like a few-shot splitter that copies a demonstration and cuts a fragment; rates by
    whether the retrieved KNOWLEDGE states every word of the statement; hedges on one fact."""
    text = _prompt(request)
    tail = text.rsplit("STATEMENT:", 1)[-1].split("\n")[0].strip()
    if "independent facts" in text:
        sentence = text.rsplit("independent facts:", 1)[-1].strip().splitlines()[0]
        if sentence.startswith("Marie Curie was born in Warsaw"):
            return ("- Marie Curie was born in Warsaw.\n- Marie Curie was born in 1867.\n"
                    "- Marie Curie won the Nobel Prize in Physics in 1903.\n"
                    "- The Eiffel Tower was completed in 1889.\n- The E")
        return "- " + sentence
    if "REVISED STATEMENT" in text:
        fact = text.rsplit("STATEMENT:", 2)[-2].strip().splitlines()[0]
        return "```\n" + fact.replace("She ", "Marie Curie ") + "\n```"
    if "[Not Foo]" in text:
        return "[Foo]"
    if "QUERY:" in text:
        return "```\n" + tail + "\n```"
    if "telephone" in tail:  # the verdict itself is a hedge, also when asked for a lone label
        return "The KNOWLEDGE says nothing about it, so the statement is unsupported."
    knowledge = " ".join(line for line in text.split("STATEMENT:")[-2].splitlines() if line.startswith("- ")).lower()
    words = [w for w in re.findall(r"\w+", tail.lower()) if len(w) > 3]
    verdict = "[Supported]" if all(w in knowledge for w in words) else "[Not Supported]"
    return verdict if request.choice_labels else "Checking each part.\n" + verdict


def test_safe_on_planted_facts_gives_the_known_f1(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(p) + "\n" for p in PLANTED_CORPUS))
    cfg = SafeConfig(max_steps=1, num_results=3, ks=(3, 10))
    model = ScriptedModel(_planted_safe_model)
    result = asyncio.run(safe_rate_response(model, LocalSearch.from_file(corpus), "Who was Marie Curie?",
                                            PLANTED_RESPONSE, cfg))
    verdict_calls = [r for r in model.requests if r.choice_labels == list(RATING_LABELS)]
    assert len(verdict_calls) == 6 + 2  # one per rated fact, the hedged one asked again (rate_retries=1)
    assert sum(r.choice_labels == list(RELEVANCE_LABELS) for r in model.requests) == 7
    labels = {f["revised"]: f["label"] for f in result["facts"]}
    assert labels == {
        "Marie Curie was born in Warsaw.": SUPPORTED, "Marie Curie was born in 1867.": SUPPORTED,
        "Marie Curie won the Nobel Prize in Physics in 1903.": SUPPORTED,
        "Marie Curie discovered polonium.": SUPPORTED, "Marie Curie won the Nobel Prize in Chemistry in 1911.": SUPPORTED,
        "Marie Curie was born in Brazil.": NOT_SUPPORTED,
        "Marie Curie invented the telephone.": "unrated",  # "unsupported" is prose, not a verdict
    }
    # the copied demonstration fact and the fragment were never stated by the response: dropped, counted
    assert result["num_dropped"] == 2
    assert {d["fact"]: d["reason"].split()[0] for d in result["dropped_facts"]} == {
        "The Eiffel Tower was completed in 1889.": "ungrounded", "The E": "fragment"}
    # S = 5, N = 1, unrated = 1 counts against precision: P = 5/7
    assert result["precision"] == pytest.approx(5 / 7)
    assert result["f1@3"] == pytest.approx(2 * (5 / 7) * 1 / (5 / 7 + 1))     # R = min(5/3, 1) = 1 -> 0.8333
    assert result["f1@10"] == pytest.approx(2 * (5 / 7) * 0.5 / (5 / 7 + 0.5))  # R = 0.5 -> 0.5882


def test_grounding_keeps_stated_facts_and_drops_copies_and_fragments():
    sentence = "She was born in Warsaw in 1867 and later moved to Paris to study physics."
    for fact in ("She was born in Warsaw.", "She moved to Paris.", "She studied physics.", "She was born in 1867."):
        assert grounding_problem(fact, sentence) is None, fact
    for fact, reason in (("The Eiffel Tower was completed in 1889.", "ungrounded"), ("The E", "fragment"),
                         ("She was born in Brazil in 1900.", "ungrounded"), ("It is.", "fragment"),
                         ("The Wars", "ungrounded")):
        assert (grounding_problem(fact, sentence) or "").startswith(reason), fact


# ---- SAFE end to end on the embedded model ---------------------------------------------------------
@pytest.fixture(scope="module")
def embedded():
    from synthloom.llm.embedded import EmbeddedModel

    model = EmbeddedModel(n_ctx=8192, n_slots=8)
    yield model
    model.close()


@pytest.mark.slow
def test_safe_end_to_end_on_embedded_model_with_bundled_corpus(embedded):
    cfg = SafeConfig(max_steps=1, num_results=2, max_facts=1, max_tokens=32, ks=(1, 64))
    result = asyncio.run(safe_rate_response(embedded, LocalSearch.bundled(), "Tell me about Marie Curie.",
                                            "Marie Curie won the Nobel Prize in Chemistry in 1911.", cfg))
    assert result["num_facts"] == 1
    labels = {f["label"] for f in result["facts"]}
    assert labels <= {"supported", "not_supported", "irrelevant", "unrated"}
    rated = [f for f in result["facts"] if f["relevant"]]
    for fact in rated:  # every relevant fact was searched: one query, evidence from the bundled corpus
        assert len(fact["queries"]) == 1 and fact["revised"]
        assert all(e["source"].startswith("wiki-") for e in fact["evidence"])
    s, n = result["num_supported"], result["num_not_supported"]
    assert result["f1@64"] == pytest.approx(f1_at_k(s, n, 64))
    assert result["model_calls"] >= 3 and result["completion_tokens"] > 0
