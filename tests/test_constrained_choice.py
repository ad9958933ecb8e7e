"""Constrained verdicts: the label is the whole answer on every backend, and nothing else reads as one."""

from __future__ import annotations

import math

import httpx
import pytest

from synthloom.llm.base import ChatRequest, ChatResponse, Choice, InvalidRequestError, TokenLogprob
from synthloom.llm.constrained import (
    as_lone_label_request,
    choice_request,
    label_grammar,
    read_choice,
    strict_label,
)
from synthloom.llm.openai_compat import OpenAIModel
from tests.embedded_server import serve_embedded
from tests.fakes.openai_server import FakeOpenAIServer

PROMPT = [{"role": "user", "content": "Is the sky blue on a clear day? Reply with Yes or No."}]


@pytest.mark.parametrize("text,label", [
    ("A", "A"), (" B\n", "B"), ("(A)", "A"), ("**B**", "B"), ('"A"', "A"), ("b.", "B"),
    ('{"label": "A"}', "A"), ("Not Equal", "Not Equal"), ("equal", "Equal"),
])
def test_strict_label_accepts_a_lone_label(text, label):
    assert strict_label(text, ["A", "B", "Equal", "Not Equal"]) == label


@pytest.mark.parametrize("text", [
    "", "A: When you", "Answer A", "A or B", "A and B", "The answer is A", "I think B", "B is wrong", "Neither",
    "Your Judgement (just answer: Equal", "Equal or Not Equal", "They are not equal", "AB",
    '{"label": "C"}', '{"label": "A", "why": "x"}', '{"label": "A"', "A\nB", "(A) because it is longer",
])
def test_strict_label_rejects_everything_that_is_not_a_lone_label(text):
    assert strict_label(text, ["A", "B", "Equal", "Not Equal"]) is None


def test_negations_never_read_as_support():
    labels = ["Supported", "Not Supported"]
    for text in ("unsupported", "not supported.", "Not Supported", "cannot be determined", "Supported?no"):
        assert strict_label(text, labels) != "Supported"
    assert strict_label("Not Supported", labels) == "Not Supported"


def _response(tokens: list[tuple[str, float, list[tuple[str, float]]]], finish: str = "stop") -> ChatResponse:
    lps = [TokenLogprob(t, lp, top) for t, lp, top in tokens]
    return ChatResponse([Choice("".join(t for t, _, _ in tokens), finish, lps)])


def test_preference_is_read_at_the_label_position_not_the_first_token():
    # a server's JSON answer: the first token is "{"; the label is the fourth token
    resp = _response([('{"', -0.01, [('{"', -0.01)]), ("label", -0.01, []), ('":"', -0.01, []),
                      ("B", math.log(0.7), [("B", math.log(0.7)), ("A", math.log(0.2)), ("The", math.log(0.1))]),
                      ('"}', -0.01, [])])
    reading = read_choice(resp, ["A", "B"])
    assert reading.label == "B" and reading.preference_source == "logprobs@label"
    assert reading.probs["B"] == pytest.approx(0.7 / 0.9) and reading.probs["A"] == pytest.approx(0.2 / 0.9)


def test_prose_answer_is_unknown_even_with_logprobs_of_a_label():
    resp = _response([("The", math.log(0.5), [("The", math.log(0.5)), ("A", math.log(0.3)), ("B", math.log(0.2))]),
                      (" answer", -0.1, []), (" is", -0.1, []), (" A", -0.1, [])])
    reading = read_choice(resp, ["A", "B"])
    assert reading.label is None and reading.probs == {} and reading.preference_source == "none"


def test_truncated_choice_is_unknown():
    reading = read_choice(_response([('{"label": "No', -0.1, [])], finish="length"), ["No", "Not sure"])
    assert reading.label is None and reading.truncated


def test_choice_labels_are_validated_and_rendered_as_a_grammar():
    with pytest.raises(InvalidRequestError):
        ChatRequest(messages=PROMPT, choice_labels=["A"]).validate()
    with pytest.raises(InvalidRequestError):
        ChatRequest(messages=PROMPT, choice_labels=["A", "A "]).validate()
    assert label_grammar(['Say "yes"', "No"]) == 'root ::= "Say \\"yes\\"" | "No"'
    plain = as_lone_label_request(choice_request(PROMPT, ["Yes", "No"]))
    assert plain.choice_labels is None and plain.messages[-1]["content"].endswith("Reply with exactly one of: Yes, No. "
                                                                                   "Write nothing else.")


def test_choice_requests_have_their_own_cache_key():
    from synthloom.llm.base import request_key

    plain = ChatRequest(messages=PROMPT, temperature=0.0)
    assert "choice_labels" not in plain.canonical()  # keys of older cached requests are unchanged
    assert request_key("m", plain) != request_key("m", choice_request(PROMPT, ["Yes", "No"]))


@pytest.fixture(scope="module")
def embedded():
    from synthloom.llm.embedded import EmbeddedModel

    return EmbeddedModel(n_slots=4, n_ctx=2048, n_threads=2)


@pytest.mark.parametrize("labels", [("Yes", "No"), ("A", "B"), ("Equal", "Not Equal"), ("Supported", "Not Supported",
                                                                                          "Irrelevant")])
async def test_embedded_model_answers_exactly_one_label_with_probabilities(embedded, labels):
    requests = [choice_request(PROMPT, labels, seed=s) for s in range(3)]
    for response in await embedded.chat(requests):
        assert response.text in labels  # the grammar leaves no room for prose
        reading = read_choice(response, labels)
        assert reading.label == response.text
        assert reading.preference_source == "logprobs@label"
        assert sum(reading.probs.values()) == pytest.approx(1.0) and reading.probs[reading.label] > 0


@pytest.fixture(scope="module")
def served():
    with serve_embedded("embedded?n_slots=2&n_ctx=2048") as base:
        yield f"{base}/v1", httpx.get(f"{base}/v1/models").json()["data"][0]["id"]


async def test_a_real_server_is_constrained_through_a_json_enum_and_read_at_the_label(served):
    url, model_id = served
    model = OpenAIModel(url, model_id)
    try:
        [response] = await model.chat([choice_request(PROMPT, ["Yes", "No"], seed=1)])
    finally:
        await model.aclose()
    reading = read_choice(response, ["Yes", "No"])
    assert response.text.lstrip().startswith("{") and reading.label in ("Yes", "No")
    assert reading.preference_source == "logprobs@label"
    assert sum(reading.probs.values()) == pytest.approx(1.0)


async def test_a_server_without_schemas_gets_a_lone_label_prompt_read_strictly():
    def answer(payload):
        assert "response_format" not in payload
        return "Yes, definitely." if "clear day" in payload["messages"][-1]["content"] else "No"

    with FakeOpenAIServer(schema_mode="reject", responder=answer) as srv:
        model = OpenAIModel(srv.url, "fake")
        try:
            responses = await model.chat([choice_request(PROMPT, ["Yes", "No"]),
                                          choice_request([{"role": "user", "content": "Is fire cold?"}], ["Yes", "No"])])
        finally:
            await model.aclose()
    first, second = (read_choice(r, ["Yes", "No"]) for r in responses)
    assert first.label is None  # "Yes, definitely." is prose, not a lone label
    assert second.label == "No" and second.preference_source in ("logprobs@label", "label")
