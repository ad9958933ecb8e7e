"""`synthloom serve` against clients that try to knock it over (issue 18): huge bodies, clients
that give up, more requests than the queue holds, and signals. Every case runs against a real
`synthloom serve` subprocess on the embedded model and checks /health stays fast throughout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

MSG = [{"role": "user", "content": "Tell me a long story about the sea."}]
# ignore_eos: every request really generates its max_tokens, so abandoned work is measurable
SPEC = "embedded?n_slots=4&n_ctx=4096&n_threads=1&ignore_eos=true"
MAX_QUEUE = 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*options: str) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    cli = os.path.join(os.path.dirname(sys.executable), "synthloom")
    proc = subprocess.Popen([cli, "serve", "--model", SPEC, "--port", str(port), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early: {proc.stderr.read()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start within 120 s")


@pytest.fixture(scope="module")
def server():
    proc, base = start_server("--max-queue", str(MAX_QUEUE), "--max-body-mb", "1")
    with httpx.Client(base_url=base, timeout=60) as client:
        yield client
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


class HealthWatch:
    """Polls /health in a thread; `worst` is the slowest answer seen (a failure counts as inf)."""

    def __init__(self, base: str) -> None:
        self.base, self.worst, self.polls = base, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=5) as client:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    ok = client.get("/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.worst = max(self.worst, time.monotonic() - t0 if ok else float("inf"))
                self.polls += 1
                self._stop.wait(0.1)

    def __enter__(self) -> "HealthWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def chat(client: httpx.Client, **body) -> httpx.Response:
    body.setdefault("messages", MSG)
    body.setdefault("max_tokens", 8)
    return client.post("/v1/chat/completions", json=body)


def answered_promptly(client: httpx.Client, within: float = 15.0) -> None:
    t0 = time.monotonic()
    r = chat(client, max_tokens=8, temperature=0)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 8
    assert time.monotonic() - t0 < within


def test_huge_bodies_get_413_without_being_read_or_tokenised(server):
    big = json.dumps({"messages": [{"role": "user", "content": "x" * (50 << 20)}]}).encode()
    with HealthWatch(str(server.base_url)) as health:
        t0 = time.monotonic()
        r = server.post("/v1/chat/completions", content=big, headers={"content-type": "application/json"})
        declared = time.monotonic() - t0
        assert r.status_code == 413 and "--max-body-mb" in r.json()["error"]["message"]

        def chunked():  # no Content-Length: counted while read
            for i in range(0, len(big), 1 << 20):
                yield big[i:i + (1 << 20)]

        r = server.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = server.post("/v1/completions", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413

        # under the body limit but far beyond the context: refused from its length, not tokenised
        t0 = time.monotonic()
        r = chat(server, messages=[{"role": "user", "content": "word " * 180_000}])
        assert r.status_code == 400 and "at least" in r.json()["error"]["message"]
        assert time.monotonic() - t0 < 2
    assert declared < 10
    assert health.polls > 0 and health.worst < 1.0
    stats = server.get("/v1/stats").json()
    assert stats["rejected_too_large"] == 3
    answered_promptly(server)


def _give_up(base: str, body: dict, after: float) -> None:
    """Send a request on a raw socket, read at most the first bytes, then hang up."""
    host, port = base.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"content-length: %d\r\n\r\n%s" % (len(data), data))
        s.settimeout(after)
        with contextlib.suppress(OSError):
            s.recv(64)
        time.sleep(after)


def test_abandoned_requests_stop_their_work_at_once(server):
    base = str(server.base_url)
    before = server.get("/v1/stats").json()
    # 24 clients each ask for 400 tokens (one slot for ~8 s each; ~50 s of work for 4 slots)
    # and hang up after a second: half plain, half streaming
    bodies = [{"messages": MSG, "max_tokens": 400, "seed": i, "stream": i % 2 == 1} for i in range(MAX_QUEUE)]
    with HealthWatch(base) as health, ThreadPoolExecutor(len(bodies)) as pool:
        list(pool.map(lambda b: _give_up(base, b, 1.0), bodies))
        time.sleep(1.0)  # cancellations reach the engine on its next step
        first = server.get("/v1/stats").json()
        time.sleep(1.5)
        second = server.get("/v1/stats").json()
        answered_promptly(server, within=10)
    assert second["engine"]["generated_tokens"] == first["engine"]["generated_tokens"]  # nothing left running
    assert second["cancelled"] - before["cancelled"] == len(bodies)
    assert second["in_flight"] == 0
    done = second["engine"]["generated_tokens"] - before["engine"]["generated_tokens"]
    assert done < len(bodies) * 400 / 4  # most of the requested work was never done
    assert health.worst < 1.0


def test_a_full_queue_answers_503_with_retry_after(server):
    n = MAX_QUEUE * 2
    with HealthWatch(str(server.base_url)) as health, ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(lambda i: chat(server, max_tokens=16, seed=i), range(n)))
    busy = [r for r in answers if r.status_code == 503]
    ok = [r for r in answers if r.status_code == 200]
    assert len(busy) + len(ok) == n and len(busy) >= n - MAX_QUEUE - 4 and len(ok) >= MAX_QUEUE - 4
    assert all(int(r.headers["Retry-After"]) >= 1 and "max_queue" in r.json()["error"]["message"] for r in busy)
    assert health.worst < 1.0
    answered_promptly(server)


def _long_requests(base: str, count: int) -> tuple[list[threading.Thread], list[tuple[str, int, str]]]:
    """Requests that would run for minutes, half plain, half streaming: (threads, their answers)."""
    results: list[tuple[str, int, str]] = []

    def run(i: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            body = {"messages": MSG, "max_tokens": 900, "seed": i}
            try:
                if i % 2:
                    with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
                        results.append(("stream", r.status_code, r.read().decode()))
                else:
                    r = c.post("/v1/chat/completions", json=body)
                    results.append(("plain", r.status_code, r.text))
            except httpx.HTTPError as e:
                results.append(("error", 0, str(e)))

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    return threads, results


@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)])
def test_a_signal_stops_the_server_within_seconds_without_tracebacks(signals):
    proc, base = start_server()
    threads, results = _long_requests(base, 4)
    deadline = time.monotonic() + 60
    while httpx.get(f"{base}/v1/stats").json()["engine"]["generated_tokens"] < 20:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    t0 = time.monotonic()
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.1)
    try:
        rc = proc.wait(timeout=15)
    finally:
        proc.kill()
    took = time.monotonic() - t0
    err = proc.stderr.read()
    for t in threads:
        t.join(10)
    assert took < 6, f"shutdown took {took:.1f}s"
    assert "Traceback" not in err and "Exception" not in err, err
    assert rc == (0 if len(signals) == 1 else 128 + signal.SIGINT)
    assert len(results) == 4
    for kind, status, text in results:  # every client got an answer, none waited for its tokens
        if kind == "plain":
            assert status == 503 and "shutting down" in text
        elif kind == "stream":
            assert status == 200 and "shutting down" in text and text.rstrip().endswith("[DONE]")


@pytest.mark.parametrize("option", [["--max-queue", "0"], ["--max-body-mb", "0"], ["--max-body-mb", "-1"]])
def test_bad_limits_are_a_one_line_error(option):
    cli = os.path.join(os.path.dirname(sys.executable), "synthloom")
    proc = subprocess.run([cli, "serve", "--port", "1", *option], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and option[0] in proc.stderr


def test_the_length_bound_never_refuses_a_prompt_that_fits(server):
    # the vocabulary's longest piece (81 bytes: a newline and 80 spaces) is one token per
    # repetition, the worst case for a characters-per-token bound
    piece = "\n" + " " * 80
    fits = chat(server, messages=[{"role": "user", "content": piece * 900}], max_tokens=1)
    assert fits.status_code == 200 and fits.json()["usage"]["prompt_tokens"] > 900
    over = chat(server, messages=[{"role": "user", "content": piece * 1000}], max_tokens=1)
    assert over.status_code == 400 and over.json()["error"]["message"].startswith("prompt is ")  # tokenised
    far = chat(server, messages=[{"role": "user", "content": piece * 1100}], max_tokens=1)
    assert far.status_code == 400 and "at least" in far.json()["error"]["message"]  # refused from its length
