"""The OpenAI-compatible server: a real subprocess serving the embedded model, queried with raw HTTP."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import jsonschema
import pytest

from synthloom.llm.base import ChatRequest, ChatResponse, Choice, ModelError, TextDelta, Usage
from synthloom.llm.server import create_app
from tests.embedded_server import serve_embedded

MSG = [{"role": "user", "content": "Describe a cat in one sentence."}]


@pytest.fixture(scope="module")
def server():
    with serve_embedded("embedded?n_slots=4&n_ctx=4096") as base, httpx.Client(base_url=base, timeout=120) as client:
        yield client


def chat(client: httpx.Client, **body) -> httpx.Response:
    body.setdefault("messages", MSG)
    body.setdefault("max_tokens", 12)
    return client.post("/v1/chat/completions", json=body)


def test_models_lists_the_served_model(server):
    data = server.get("/v1/models").json()
    assert data["object"] == "list"
    assert data["data"][0]["id"].endswith(".gguf")


def test_chat_completion_has_openai_shape(server):
    r = chat(server, temperature=0, seed=1)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    assert choice["logprobs"] is None
    u = body["usage"]
    assert u["prompt_tokens"] > 10 and 1 <= u["completion_tokens"] <= 12
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


@pytest.mark.slow
def test_seed_n_logprobs_and_stop_over_http(server):
    a = chat(server, temperature=1.0, seed=5, n=2, logprobs=True, top_logprobs=2).json()
    b = chat(server, temperature=1.0, seed=5, n=2, logprobs=True, top_logprobs=2).json()
    assert [c["message"]["content"] for c in a["choices"]] == [c["message"]["content"] for c in b["choices"]]
    assert len(a["choices"]) == 2
    content = a["choices"][0]["logprobs"]["content"]
    assert content and all(t["logprob"] <= 0 and len(t["top_logprobs"]) == 2 for t in content)
    assert bytes(content[0]["bytes"]).decode() == content[0]["token"]

    full = chat(server, temperature=0, max_tokens=20).json()["choices"][0]["message"]["content"]
    stop = full[8:12]
    cut = chat(server, temperature=0, max_tokens=20, stop=stop).json()["choices"][0]
    assert cut["message"]["content"] == full[: full.index(stop)] and cut["finish_reason"] == "stop"


def test_json_schema_response_format(server):
    schema = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
              "required": ["colour"]}
    r = chat(
        server,
        messages=[{"role": "user", "content": "Pick a colour and answer in JSON."}],
        max_tokens=32,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert r.status_code == 200
    jsonschema.validate(json.loads(r.json()["choices"][0]["message"]["content"]), schema)


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"messages": []}, "messages"),
        ({"messages": MSG, "temperature": "hot"}, "temperature"),
        ({"messages": MSG, "n": 0}, "n must be"),
        ({"messages": MSG, "stream": True, "logprobs": True}, "logprobs"),
        ({"messages": MSG, "stream": "yes"}, "stream"),
        ({"messages": MSG, "response_format": {"type": "xml"}}, "response_format"),
        ({"messages": [{"role": "user", "content": "word " * 3000}]}, "n_ctx"),
    ],
)
def test_bad_requests_get_openai_style_400(server, body, needle):
    r = server.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and needle in err["message"]


def sse_events(response: httpx.Response) -> list[dict | str]:
    """The `data:` payloads of a server-sent-events body ("[DONE]" kept as a string)."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_streaming_with_the_official_openai_client(server):
    import openai

    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
    params = dict(model="m", messages=MSG, max_tokens=32, temperature=0.8, seed=4)
    whole = client.chat.completions.create(**params)
    pieces, finish, usage = [], None, None
    for chunk in client.chat.completions.create(**params, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            finish = c.finish_reason or finish
    assert len(pieces) > 3  # token by token, not one lump at the end
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens


def test_streamed_samples_and_stop_strings_over_raw_http(server):
    body = {"messages": MSG, "max_tokens": 32, "temperature": 0.9, "seed": 11, "n": 2}
    whole = chat(server, **body).json()["choices"]
    stop = whole[0]["message"]["content"][8:12]
    whole = chat(server, **body, stop=[stop]).json()["choices"]
    with server.stream("POST", "/v1/chat/completions", json={**body, "stop": [stop], "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events if isinstance(e, dict)]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = {0: "", 1: ""}
    finish = {}
    for c in chunks:
        for ch in c["choices"]:
            text[ch["index"]] += ch["delta"].get("content") or ""
            if ch["finish_reason"]:
                finish[ch["index"]] = ch["finish_reason"]
    for i in (0, 1):
        assert text[i] == whole[i]["message"]["content"]
        assert finish[i] == whole[i]["finish_reason"]
    assert stop not in text[0] and finish[0] == "stop"


def test_malformed_json_body_is_400(server):
    r = server.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]


def test_stats_count_every_chat_request(server):
    before = server.get("/v1/stats").json()["chat_requests"]
    chat(server, max_tokens=2)
    server.post("/v1/chat/completions", content=b"junk")
    after = server.get("/v1/stats").json()
    assert after["chat_requests"] - before == 2
    assert after["identity"].startswith("embedded:")


def test_bad_model_spec_exits_with_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "synthloom.llm.server", "--model", f"embedded:{tmp_path}/none.gguf", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr


class _FailingModel:
    """Scripted model for the error paths a real model rarely takes."""

    identity = "scripted:failing"
    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        self.calls += 1
        if self.calls == 1:
            raise ModelError("backend exploded")
        return [ChatResponse([Choice("ok", "stop")], Usage(3, 1), "failing") for _ in requests]

    async def aclose(self) -> None:
        pass


async def test_any_model_can_be_served_and_model_errors_are_500():
    model = _FailingModel()
    transport = httpx.ASGITransport(app=create_app(model))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r1 = await client.post("/v1/chat/completions", json={"messages": MSG})
        r2 = await client.post("/v1/chat/completions", json={"messages": MSG})
        models = (await client.get("/v1/models")).json()
    assert r1.status_code == 500 and r1.json()["error"]["message"] == "backend exploded"
    assert r2.status_code == 200 and r2.json()["choices"][0]["message"]["content"] == "ok"
    assert models["data"][0]["id"] == "failing"


async def test_a_model_without_streaming_is_streamed_as_one_piece():
    model = _FailingModel()
    transport = httpx.ASGITransport(app=create_app(model))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        failed = await client.post("/v1/chat/completions", json={"messages": MSG, "stream": True})
        ok = await client.post("/v1/chat/completions", json={"messages": MSG, "stream": True})
    assert failed.status_code == 500  # the answer is computed before the stream opens
    events = [line[6:] for line in ok.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    deltas = [json.loads(e)["choices"] for e in events[:-1]]
    assert [c[0]["delta"] for c in deltas] == [{"role": "assistant", "content": ""}, {"content": "ok"}, {}]
    assert deltas[-1][0]["finish_reason"] == "stop"


class _BreaksMidStream(_FailingModel):
    def stream(self, request: ChatRequest):
        async def events():
            yield TextDelta(0, "partial ")
            raise ModelError("engine died")

        return events()


async def test_an_error_after_the_stream_opened_is_reported_in_band():
    app = create_app(_BreaksMidStream())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.post("/v1/chat/completions", json={"messages": MSG, "stream": True})
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert r.status_code == 200 and events[-1] == "[DONE]"
    assert json.loads(events[1])["choices"][0]["delta"] == {"content": "partial "}
    assert json.loads(events[2]) == {"error": {"message": "engine died", "type": "server_error"}}
    assert app.state.stats.chat_failed == 1


def test_remote_scoring_through_the_openai_client_matches_the_engine(server):
    import asyncio

    from synthloom.errors import ConfigError
    from synthloom.llm.embedded import EmbeddedModel
    from synthloom.llm.openai_compat import OpenAIModel

    texts = ["The cat sat on the mat.", "mat the on sat cat The"]

    async def remote_scores():
        remote = OpenAIModel(f"{server.base_url}/v1", "m", api_key_env=None, score=True)
        try:
            return await remote.score(texts), await remote.score(["on the mat."], prefixes=["The cat sat "])
        finally:
            await remote.aclose()

    scores, after_prefix = asyncio.run(remote_scores())
    local = EmbeddedModel(n_slots=2, n_ctx=2048)
    try:
        expected = asyncio.run(local.score(texts))
    finally:
        local.close()
    for got, want in zip(scores, expected):
        assert [t.token for t in got.tokens] == [t.token for t in want.tokens]
        assert [t.logprob for t in got.tokens] == pytest.approx([t.logprob for t in want.tokens], abs=1e-3)
    assert scores[1].perplexity > scores[0].perplexity
    joined = "".join(t.token for t in after_prefix[0].tokens)
    assert joined.endswith("on the mat.") and len(joined) <= len(" on the mat.")  # only the text's tokens

    plain = OpenAIModel(f"{server.base_url}/v1", "m", api_key_env=None)
    with pytest.raises(ConfigError, match="score=true"):
        asyncio.run(plain.score(["x"]))


def test_completions_endpoint_only_scores_and_needs_a_scoring_model(server):
    r = server.post("/v1/completions", json={"prompt": "Hello there", "max_tokens": 10})
    assert r.status_code == 400 and "echo" in r.json()["error"]["message"]
    r = server.post("/v1/completions", json={"prompt": "Hello there", "echo": True, "logprobs": 0, "max_tokens": 0})
    lp = r.json()["choices"][0]["logprobs"]
    assert "".join(lp["tokens"]) == "Hello there" and lp["text_offset"][0] == 0
    assert all(v is None or v <= 0 for v in lp["token_logprobs"])


async def test_a_model_that_cannot_score_answers_501():
    app = create_app(_FailingModel())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.post("/v1/completions", json={"prompt": "x", "echo": True, "logprobs": 0, "max_tokens": 1})
    assert r.status_code == 501 and "cannot score" in r.json()["error"]["message"]
