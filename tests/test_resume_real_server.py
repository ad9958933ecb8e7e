"""Resume and determinism against a real local HTTP server.

* kill -9 the `synthloom run` process at several points mid-step, resume, and compare with an
  uninterrupted run: identical dataset, and no request the client had been answered is ever sent
  again (only requests in flight at the moment of a kill can reach the server twice).
* concurrency 1 vs 64 against a deterministic server give identical datasets.
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
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import read_jsonl
from synthloom.llm.cache import CachedModel, RequestCache
from synthloom.llm.openai_compat import OpenAIModel
from synthloom.pipeline.pipeline import pipeline_from_yaml
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.records import strip_volatile
from tests.fakes.openai_server import FakeOpenAIServer, fingerprint

RECIPE = """
name: two_steps
shard_size: 4
models: {generator: embedded}
steps:
  - {type: model, name: ask, prompt: "Ask about {{ topic }} number {{ n }}", output: question, temperature: 0.8}
  - {type: filter_length, name: len, column: question, min: 5}
  - {type: model, name: answer, prompt: "Answer: {{ question }}", output: answer, temperature: 0.2}
"""


class AnswerLog:
    """Server-side record of when each distinct request was answered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered: dict[str, list[float]] = defaultdict(list)

    def __call__(self, payload: dict) -> str:
        with self.lock:
            self.answered[fingerprint(payload)].append(time.monotonic())
        last = payload["messages"][-1]["content"]
        return f"{last} :: s{payload.get('seed')}"


def write_inputs(folder: Path, n: int = 40) -> tuple[Path, Path]:
    recipe = folder / "recipe.yaml"
    recipe.write_text(RECIPE)
    data = folder / "in.jsonl"
    data.write_text("".join(json.dumps({"topic": f"topic {i % 9}", "n": i}) + "\n" for i in range(n)))
    return recipe, data


def cli_cmd(recipe: Path, data: Path, out: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "synthloom.cli", "run", str(recipe), "--input", str(data), "--out", str(out),
            "--model", f"generator=openai:{url}#fake", "--shards-in-flight", "2"]


def parts_done(out: Path, step: str) -> int:
    return len(list((out / "steps").glob(f"*-{step}/part-*.parquet"))) if (out / "steps").exists() else 0


@pytest.mark.slow
def test_kill_9_mid_step_then_resume_is_identical_and_pays_nothing_twice(tmp_path: Path):
    recipe, data = write_inputs(tmp_path)
    log = AnswerLog()
    env = {**os.environ, "OPENAI_API_KEY": "", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with FakeOpenAIServer(delay=0.03, responder=log) as server:
        out = tmp_path / "killed"
        kills: list[float] = []
        # kill points: during step 'ask', early in step 'answer', later in step 'answer'
        for step, after_parts in (("ask", 2), ("answer", 1), ("answer", 5)):
            proc = subprocess.Popen(cli_cmd(recipe, data, out, server.url), env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while parts_done(out, step) < after_parts and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert proc.poll() is None, "run finished before the planned kill point"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append(time.monotonic())
        final = subprocess.run(cli_cmd(recipe, data, out, server.url), env=env, capture_output=True, text=True,
                               timeout=300)
        assert final.returncode == 0, final.stderr
        resent = {fp: times for fp, times in log.answered.items() if len(times) > 1}
        # a request answered well before a kill was cached by the client and never sent again
        for fp, times in resent.items():
            first = times[0]
            assert any(k - 3.0 <= first <= k + 1.0 for k in kills), (
                f"request answered at {first} was sent again (kills at {kills}, times {times}, {fp[:120]})"
            )
        assert len(resent) <= 3 * 2 * 4  # at most the in-flight requests at each kill (3 kills x 2 shards x 4 rows)
        # every answered request counted once, as paid by this run, whichever killed process paid for it
        stats = json.loads((out / "stats.json").read_text())
        usage = stats["usage"]["openai:fake"]
        assert usage["requests"] == 80 and usage["cached_requests"] == 0, usage
        assert stats["ledger"]["openai:fake"]["requests"] == 80

        answered_once = dict(log.answered)
        log.answered.clear()
        clean_out = tmp_path / "clean"
        clean = subprocess.run(cli_cmd(recipe, data, clean_out, server.url), env=env, capture_output=True,
                               text=True, timeout=300)
        assert clean.returncode == 0, clean.stderr
        assert set(log.answered) == set(answered_once)  # the same requests, so the same dataset inputs
    a = [strip_volatile(r) for r in read_jsonl(out / "data" / "train.jsonl")]
    b = [strip_volatile(r) for r in read_jsonl(clean_out / "data" / "train.jsonl")]
    assert len(a) == 40 and a == b


def test_concurrency_1_and_64_give_identical_datasets(tmp_path: Path):
    recipe, data = write_inputs(tmp_path, n=30)

    async def run_with(concurrency: int, shards: int, out: Path):
        pipeline = pipeline_from_yaml(recipe)
        model = OpenAIModel([server.url], "fake", api_key_env=None, max_concurrency=concurrency,
                            min_concurrency=concurrency)
        wrapped = CachedModel(model, RequestCache(out.with_suffix(".sqlite")))
        try:
            return await run_pipeline_async(pipeline, RunOptions(out=out, input_path=data, seed=5,
                                                                 shards_in_flight=shards),
                                            models={"generator": wrapped})
        finally:
            await model.aclose()

    with FakeOpenAIServer(delay=0.005) as server:
        serial = asyncio.run(run_with(1, 1, tmp_path / "serial"))
        parallel = asyncio.run(run_with(64, 8, tmp_path / "parallel"))
        assert server.max_in_flight > 1
    assert serial.complete and parallel.complete
    assert [strip_volatile(r) for r in serial.rows] == [strip_volatile(r) for r in parallel.rows]
    assert len(serial.rows) == 30
