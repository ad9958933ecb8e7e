"""Several real `synthloom serve` replicas as one model; one is killed (-9) mid-run.

Two embedded-model servers on loopback behind `openai:http://a/v1,http://b/v1#smol`. Once B has
answered a few requests it is killed; the run must finish with every row answered, the requests
B had not answered moved to A, and none sent to A twice (A never fails, so it never needs a retry).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.pipeline.step import build_step
from tests.fakes.openai_server import free_port

ROWS = 24


def start_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "synthloom.llm.server", "--model", "embedded?n_slots=2&n_threads=1",
                             "--port", str(port), "--model-name", "smol"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            stats(port)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server on port {port} did not start")


def stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/stats", timeout=5) as r:
        return json.loads(r.read())


def pipeline() -> Pipeline:
    step = build_step({"type": "model", "name": "say", "prompt": "Write one word about item {{ n }}.",
                       "output": "word", "max_tokens": 6, "temperature": 0.7,
                       "allow_truncated": True})  # failover is under test, not the words
    rows = [{"n": i} for i in range(ROWS)]
    return Pipeline("replicas", [step], source=Source(rows=rows), models={"generator": "embedded"}, shard_size=4)


@pytest.mark.slow
def test_killed_replica_requests_move_to_the_survivor(tmp_path: Path):
    port_a, port_b = free_port(), free_port()
    a, b = start_server(port_a), start_server(port_b)
    killed: dict = {}

    def kill_b_mid_run() -> None:
        while b.poll() is None:
            s = stats(port_b)
            if s["chat_completed"] >= 3:
                b.send_signal(signal.SIGKILL)
                killed.update(s)
                return
            time.sleep(0.01)

    try:
        spec = (f"openai:http://127.0.0.1:{port_a}/v1,http://127.0.0.1:{port_b}/v1#smol"
                "?api_key_env=SYNTHLOOM_TEST_NO_KEY&max_concurrency=8&breaker_cooldown=0.2")
        killer = threading.Thread(target=kill_b_mid_run, daemon=True)
        killer.start()
        opts = RunOptions(out=tmp_path / "run", models={"generator": spec}, formats=("jsonl",))
        result = asyncio.run(run_pipeline_async(pipeline(), opts))
        killer.join(5)
        b.wait(10)
        survivor = stats(port_a)
        # a rerun of the same run directory is answered from checkpoints: nothing sent at all
        again = asyncio.run(run_pipeline_async(pipeline(), opts))
        after = stats(port_a)
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
    assert killed, "replica B was never killed (it answered fewer than 3 requests)"
    assert result.complete and len(result.rows) == ROWS
    assert all(r["word"] for r in result.rows)
    assert sorted(r["n"] for r in result.rows) == list(range(ROWS))
    # nothing lost, nothing duplicated: A answered each request B did not, at most once each
    # (+-1 for a request B finished in the instant between our last look and the kill)
    assert survivor["chat_failed"] == 0
    assert survivor["chat_requests"] <= ROWS
    assert ROWS - killed["chat_completed"] - 1 <= survivor["chat_requests"] <= ROWS - killed["chat_completed"] + 1
    assert killed["chat_requests"] > killed["chat_completed"], "B had no request in flight when killed"
    assert again.complete and after["chat_requests"] == survivor["chat_requests"]
    assert os.path.exists(tmp_path / "run" / "cache.sqlite")
