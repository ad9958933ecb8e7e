"""JSON extraction, schema validation, and the prompt + parse + repair loop."""

from __future__ import annotations

import json

import pytest

from synthloom.errors import ConfigError
from synthloom.llm.base import ChatRequest
from synthloom.llm.scripted import ScriptedModel
from synthloom.llm.structured import (
    StructuredOutputError,
    complete_structured,
    generate_json,
    parse_json_output,
)

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


@pytest.mark.parametrize("text, expected", [
    ('{"a": 1}', {"a": 1}),
    ('  [1, 2, 3]\n', [1, 2, 3]),
    ('Here is the JSON you asked for:\n{"a": {"b": [1, "x}"]}}\nHope it helps!', {"a": {"b": [1, "x}"]}}),
    ('```json\n{"a": 1}\n```', {"a": 1}),
    ('Sure.\n```\n{"a": 1}\n```\nAnything else?', {"a": 1}),
    ('{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}),
    ("{'name': 'Ada', 'tags': ['x']}", {"name": "Ada", "tags": ["x"]}),
    ('{"quote": "it\'s {fine}"}', {"quote": "it's {fine}"}),
    ('Note [draft]: {"a": 1}', {"a": 1}),
    ('"just a string"', "just a string"),
])
def test_json_is_extracted_from_typical_model_text(text, expected):
    assert parse_json_output(text) == expected


@pytest.mark.parametrize("text, reason", [
    ('{"name": "Ada", "age": 3', "truncated"),
    ('```json\n{"name": "Ada", "items": [1, 2', "truncated"),
    ("", "empty output"),
    ("I cannot help with that.", "no JSON"),
    ('{"a": 1 "b": 2}', "invalid JSON"),
])
def test_unusable_text_is_rejected_with_a_reason(text, reason):
    with pytest.raises(StructuredOutputError) as info:
        parse_json_output(text)
    assert reason in info.value.reason and "\n" not in info.value.reason


def test_schema_violations_name_the_failing_field():
    assert parse_json_output('{"name": "Ada", "age": 36}', PERSON) == {"name": "Ada", "age": 36}
    with pytest.raises(StructuredOutputError, match="at age") as info:
        parse_json_output('{"name": "Ada", "age": -1}', PERSON)
    assert "minimum" in info.value.reason or "less than" in info.value.reason
    with pytest.raises(StructuredOutputError, match="'age' is a required property"):
        parse_json_output('{"name": "Ada"}', PERSON)


def test_an_invalid_schema_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="invalid JSON schema") as info:
        parse_json_output("{}", {"type": "objekt"})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError):
        parse_json_output("{}", ["not", "a", "schema"])  # type: ignore[arg-type]


async def test_generate_json_repairs_by_feeding_the_error_back():
    model = ScriptedModel(['{"name": "Ada", "age": "36"}', '{"name": "Ada", "age": 36}'])
    request = ChatRequest([{"role": "user", "content": "Invent a person."}], seed=3)
    value = await generate_json(model, request, PERSON)
    assert value == {"name": "Ada", "age": 36}
    assert model.calls == 2
    first, repair = model.requests
    assert first.json_schema is None and '"required":["name","age"]' in first.messages[-1]["content"]
    assert repair.messages[-2] == {"role": "assistant", "content": '{"name": "Ada", "age": "36"}'}
    assert "schema violation at age" in repair.messages[-1]["content"]


async def test_generate_json_gives_up_after_the_repair_rounds():
    model = ScriptedModel(["no idea", "still no idea", "nope", "never reached"])
    request = ChatRequest([{"role": "user", "content": "Invent a person."}])
    with pytest.raises(StructuredOutputError, match="no JSON"):
        await generate_json(model, request, PERSON, repair_rounds=2)
    assert model.calls == 3  # the first answer + 2 repairs, no more


async def test_truncated_output_is_rejected_without_a_pointless_repair():
    class Truncating(ScriptedModel):
        async def chat(self, requests):
            responses = await super().chat(requests)
            for r in responses:
                r.choices[0].finish_reason = "length"
            return responses

    model = Truncating(['{"name": "Ada", "age": 3'])
    with pytest.raises(StructuredOutputError, match="max_tokens"):
        await generate_json(model, ChatRequest([{"role": "user", "content": "x"}]), PERSON)
    assert model.calls == 1


async def test_complete_structured_repairs_each_bad_sample_separately():
    model = ScriptedModel(['{"name": "A", "age": 1}', "oops", '{"name": "C", "age": 3}',
                           '{"name": "B", "age": 2}'])

    async def send(r):
        return (await model.chat([r]))[0]

    request = ChatRequest([{"role": "user", "content": "Three people."}], n=3)
    response, reasons = await complete_structured(send, request, PERSON, repair_rounds=1)
    assert reasons == [None, None, None]
    assert [json.loads(c.text)["name"] for c in response.choices] == ["A", "B", "C"]
    assert model.calls == 2 and model.requests[1].n == 1
    assert response.usage.completion_tokens > 0


async def test_scripted_model_honours_n_logprobs_and_functions():
    model = ScriptedModel(lambda r: [f"{r.messages[-1]['content']} #{i}" for i in range(2)])
    [resp] = await model.chat([ChatRequest([{"role": "user", "content": "hi"}], n=3,
                                           logprobs=True, top_logprobs=2)])
    assert [c.text for c in resp.choices] == ["hi #0", "hi #1", "hi #0"]
    assert resp.choices[0].logprobs is not None and len(resp.choices[0].logprobs[0].top) == 2
    assert model.calls == 1 and resp.usage.prompt_tokens == 1
