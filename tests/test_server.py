"""The OpenAI-compatible server: a real subprocess serving the embedded model, queried with raw HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx
import jsonschema
import pytest

from synthloom.llm.base import ChatRequest, ChatResponse, Choice, ModelError, Usage
from synthloom.llm.server import create_app

MSG = [{"role": "user", "content": "Describe a cat in one sentence."}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "synthloom.llm.server", "--model", "embedded?n_slots=4&n_ctx=4096", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early: {proc.stderr.read()}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not start within 90 s")
        time.sleep(0.2)
    with httpx.Client(base_url=base, timeout=120) as client:
        yield client
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


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
        ({"messages": MSG, "stream": True}, "stream"),
        ({"messages": MSG, "response_format": {"type": "xml"}}, "response_format"),
        ({"messages": [{"role": "user", "content": "word " * 3000}]}, "n_ctx"),
    ],
)
def test_bad_requests_get_openai_style_400(server, body, needle):
    r = server.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and needle in err["message"]


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
