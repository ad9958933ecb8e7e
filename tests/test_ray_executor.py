"""The Ray executor on a real two-node Ray cluster (head + worker on loopback, started by the fixture).

* the same recipe, inputs and seed give the same dataset, funnel and rejections as the local executor;
* distributed dedup (hash shuffle, LSH band buckets) decides exactly like the local steps;
* checkpoints are shared: a run stopped on Ray finishes on the local executor;
* kill -9 of the driver mid-run, then a rerun: identical output, no answered request sent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray executor needs the ray package (pip install 'ray[data]')")

from conftest import ROOT, read_jsonl

from synthloom.pipeline.builtins import ExactDedup
from synthloom.pipeline.checkpoint import Checkpoints
from synthloom.pipeline.pipeline import pipeline_from_yaml
from synthloom.run.ray_executor import RayOptions, run_pipeline_ray
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.pipeline.step import Rejected, StepContext
from synthloom.quality.steps import MinHashDedupStep
from synthloom.records import strip_volatile
from tests.fakes.openai_server import FakeOpenAIServer, fingerprint
from tests.ray_cluster import session_ray_cluster  # noqa: F401  (the `ray_cluster` fixture)

RECIPE = """
name: ray_e2e
shard_size: 4
models: {generator: embedded}
steps:
  - {type: model, name: ask, prompt: "Ask about topic {{ topic }}", output: question, temperature: 0.8}
  - {type: filter_length, name: len, column: question, min: 3}
  - {type: dedup_exact, name: exact, columns: [question]}
  - {type: dedup_minhash, name: near, column: question, threshold: 0.6, ngram: 3}
  - {type: sample, name: pick, n: 14}
  - {type: model, name: answer, prompt: "Answer: {{ question }}", output: answer, n: 2, temperature: 0.2}
"""


WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike",
         "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee",
         "zulu"]


class AnswerLog:
    """A deterministic server-side responder that records when each distinct request was answered.

    By seed, a question is one canned text (exact duplicates), a per-topic text with one varying
    word (near duplicates), or seed-derived words (distinct).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered: dict[str, list[float]] = defaultdict(list)

    def __call__(self, payload: dict) -> list[str]:
        with self.lock:
            self.answered[fingerprint(payload)].append(time.monotonic())
        last = payload["messages"][-1]["content"]
        seed = payload.get("seed") or 0
        return [self.text(last, seed + i) for i in range(int(payload.get("n", 1)))]

    @staticmethod
    def text(prompt: str, seed: int) -> str:
        if prompt.startswith("Answer"):
            return f"answer {seed % 1000} to {prompt[8:40]}"
        if seed % 4 == 0:
            return "what is the one canned question everybody asks"
        if seed % 4 == 1:
            topic = int(prompt.rsplit(" ", 1)[-1]) % 2
            return " ".join(WORDS[(topic * 3 + k) % 26] for k in range(10)) + " " + WORDS[(seed >> 5) % 26]
        return " ".join(WORDS[(seed >> (3 * k)) % 26] for k in range(8))


def write_inputs(folder: Path, n: int = 36) -> tuple[Path, Path]:
    recipe = folder / "recipe.yaml"
    recipe.write_text(RECIPE)
    data = folder / "in.jsonl"
    data.write_text("".join(json.dumps({"topic": i % 7, "n": i}) + "\n" for i in range(n)))
    return recipe, data


def spec(url: str) -> str:
    return f"openai:{url}#fake?api_key_env=SYNTHLOOM_TEST_NO_KEY"


def run_local(recipe: Path, data: Path, out: Path, url: str):
    opts = RunOptions(out=out, input_path=data, models={"generator": spec(url)}, formats=("jsonl",))
    return asyncio.run(run_pipeline_async(pipeline_from_yaml(recipe), opts))


def run_ray(recipe: Path, data: Path, out: Path, url: str, address: str, **ray_kw):
    opts = RunOptions(out=out, input_path=data, models={"generator": spec(url)}, formats=("jsonl",))
    ray_opts = RayOptions(address=address, **{"model_workers": 2, "parts_per_worker": 2, **ray_kw})
    return asyncio.run(run_pipeline_ray(pipeline_from_yaml(recipe), opts, ray_opts))


def funnel_without_time(stats: dict) -> list[dict]:
    return [{k: v for k, v in step.items() if k != "seconds"} for step in stats["funnel"]]


def rejected_rows(out: Path) -> list[tuple]:
    ck = Checkpoints(out)
    rows = []
    for d in sorted((out / "rejected").iterdir()):
        index, name = d.name.split("-", 1)
        for rec in ck.read_rejected(int(index), name):
            rows.append((rec["step"], rec["reason"], rec["detail"], json.dumps(strip_volatile(rec["row"]), sort_keys=True)))
    return rows


@pytest.mark.slow
def test_ray_executor_gives_the_local_executors_dataset(tmp_path: Path, ray_cluster, caplog):
    caplog.set_level(logging.INFO, logger="synthloom.ray")
    recipe, data = write_inputs(tmp_path)
    with FakeOpenAIServer(delay=0.01, responder=AnswerLog()) as server:
        local = run_local(recipe, data, tmp_path / "local", server.url)
        sent_local = server.received
        on_ray = run_ray(recipe, data, tmp_path / "ray", server.url, ray_cluster.address)
        sent_ray = server.received - sent_local
    assert local.complete and on_ray.complete
    a = [strip_volatile(r) for r in read_jsonl(tmp_path / "local" / "data" / "train.jsonl")]
    b = [strip_volatile(r) for r in read_jsonl(tmp_path / "ray" / "data" / "train.jsonl")]
    assert len(a) == 28 and a == b  # 14 sampled rows x 2 answers
    funnel = funnel_without_time(local.stats)
    assert funnel == funnel_without_time(on_ray.stats)
    by_step = {s["step"]: s for s in funnel}
    assert by_step["exact"]["rejected"].get("duplicate", 0) > 0  # the dedup steps had work to do
    assert by_step["near"]["rejected"].get("near_duplicate", 0) > 0
    assert rejected_rows(tmp_path / "local") == rejected_rows(tmp_path / "ray")
    assert on_ray.stats["usage"] == local.stats["usage"]
    assert on_ray.stats["models"] == local.stats["models"] == {"generator": "openai:fake"}
    assert sent_ray == sent_local  # same requests; no model call repeated on Ray
    assert "step 'pick' (sample) has no distributed version: running it as a single ordered stage" in caplog.text
    assert "'exact'" not in caplog.text and "'near'" not in caplog.text  # those ran distributed


def test_distributed_dedup_decides_like_the_local_steps(ray_cluster):
    from synthloom.run.ray_global import distributed_outcomes

    base = ["the quick brown fox jumps over the lazy dog", "The quick brown fox jumps over the lazy dog!",
            "the quick brown fox jumped over the lazy dog", "an entirely different sentence about cats",
            "", "   ", "short", "SHORT", "lorem ipsum dolor sit amet consectetur adipiscing",
            "lorem ipsum dolor sit amet consectetur adipiscing elit"]
    rows = [{"text": base[(i * 7) % len(base)], "k": i, "_meta": {"id": f"r{i:03d}"}} for i in range(53)]
    ctx = StepContext(run_seed=0, recipe="t", step_name="d", step_index=1)

    def shape(outcomes):
        return [(o.reason, o.detail, o.row) if isinstance(o, Rejected) else ("kept", "", o) for o in outcomes]

    for step in (ExactDedup(name="d", columns=["text"]),
                 MinHashDedupStep(name="d", column="text", threshold=0.5, ngram=3)):
        expected = shape(step.process([dict(r) for r in rows], ctx))
        for chunk, reducers in ((7, 3), (53, 1), (1, 2)):
            got = shape(asyncio.run(distributed_outcomes(step, rows, chunk, reducers)))
            assert got == expected, (type(step).__name__, chunk, reducers)
        assert {e[0] for e in expected} >= {"kept", "duplicate"}
    assert "near_duplicate" in {e[0] for e in expected}


def test_run_stopped_on_ray_finishes_on_the_local_executor(tmp_path: Path, ray_cluster):
    recipe, data = write_inputs(tmp_path, n=24)
    with FakeOpenAIServer(responder=AnswerLog()) as server:
        out = tmp_path / "mixed"
        opts = RunOptions(out=out, input_path=data, models={"generator": spec(server.url)}, formats=("jsonl",))
        parts = []

        def hook(executor):
            def on_part(kind, d):
                if kind == "part":
                    parts.append(d)
                    if len(parts) == 4:
                        executor.request_stop("test stop")
            executor.on_event = on_part

        first = asyncio.run(run_pipeline_ray(pipeline_from_yaml(recipe), opts,
                                             RayOptions(address=ray_cluster.address, parts_per_worker=1,
                                                        model_workers=1), executor_hook=hook))
        assert not first.complete and first.stop_reason == "test stop"
        sent_before = server.received
        finished = run_local(recipe, data, out, server.url)
        resumed_parts = len(list((out / "steps").glob("01-ask/part-*.parquet")))
        run_local(recipe, data, tmp_path / "clean", server.url)
    assert finished.complete and resumed_parts == 6
    a = [strip_volatile(r) for r in read_jsonl(out / "data" / "train.jsonl")]
    b = [strip_volatile(r) for r in read_jsonl(tmp_path / "clean" / "data" / "train.jsonl")]
    assert a == b
    assert finished.stats["funnel"][1]["parts"] == 6  # resumed and new parts both counted once
    assert sent_before > 0


def test_per_worker_cache_shards_are_merged_into_the_run_cache(tmp_path: Path, ray_cluster):
    from synthloom.llm.cache import RequestCache

    recipe, data = write_inputs(tmp_path, n=12)
    with FakeOpenAIServer(responder=AnswerLog()) as server:
        result = run_ray(recipe, data, tmp_path / "r", server.url, ray_cluster.address, cache_mode="per_worker")
        sent = server.received
    cache = RequestCache(tmp_path / "r" / "cache.sqlite")
    assert result.complete and len(cache) == sent > 0
    shards = sorted((tmp_path / "r" / "cache-shards").glob("worker-*.sqlite"))
    assert len(shards) == 2
    with FakeOpenAIServer(responder=AnswerLog()) as again:  # a local rerun elsewhere finds every answer cached
        run_local(recipe, data, tmp_path / "r", again.url)
        assert again.received == 0


def test_a_failure_on_a_worker_reaches_the_driver_as_the_original_one_line_error(tmp_path: Path, ray_cluster):
    from synthloom.llm.base import ModelError

    recipe, data = write_inputs(tmp_path, n=8)
    with FakeOpenAIServer(api_key="the-right-key") as server, pytest.raises(ModelError) as e:
        run_ray(recipe, data, tmp_path / "r", server.url, ray_cluster.address)
    assert "401" in str(e.value) or "SYNTHLOOM_TEST_NO_KEY" in str(e.value)
    assert "\n" not in str(e.value) and "RayTaskError" not in type(e.value).__name__


def test_every_recipe_pipeline_pickles_for_workers():
    import importlib
    import pkgutil

    from synthloom import recipes

    checked = 0
    for info in pkgutil.iter_modules(recipes.__path__):
        module = importlib.import_module(f"synthloom.recipes.{info.name}")
        if not (hasattr(module, "build") and hasattr(module, "Options")):
            continue
        pipeline = module.build(module.Options())
        for step in pipeline.steps:
            clone = pickle.loads(pickle.dumps(step))
            assert clone.config() == step.config(), (info.name, step.name)
            checked += 1
    assert checked >= 5


@pytest.mark.slow
def test_kill_9_the_driver_then_rerun_is_identical_and_pays_nothing_twice(tmp_path: Path, ray_cluster):
    recipe, data = write_inputs(tmp_path, n=40)
    log = AnswerLog()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with FakeOpenAIServer(delay=0.05, responder=log) as server:
        out = tmp_path / "killed"
        cmd = [sys.executable, str(ROOT / "tests" / "ray_driver.py"), str(recipe), str(data), str(out),
               spec(server.url), ray_cluster.address]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(list(out.glob("steps/01-ask/part-*.parquet"))) < 3 and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the driver finished before the planned kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        done_before = len(list(out.glob("steps/01-ask/part-*.parquet")))
        final = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr[-3000:]
        resent = {fp: t for fp, t in log.answered.items() if len(t) > 1}
        for fp, times in resent.items():  # only requests in flight at the kill reach the server twice
            assert killed_at - 5.0 <= times[0] <= killed_at + 5.0, (times, fp[:100])
        assert len(resent) <= 2 * 2 * 4  # workers x parts per worker x shard size
        clean = run_local(recipe, data, tmp_path / "clean", server.url)
    assert 3 <= done_before < 10
    a = [strip_volatile(r) for r in read_jsonl(out / "data" / "train.jsonl")]
    b = [strip_volatile(r) for r in read_jsonl(tmp_path / "clean" / "data" / "train.jsonl")]
    assert clean.complete and len(a) == 28 and a == b


@pytest.mark.slow
def test_cli_executor_ray_matches_the_local_cli_run(tmp_path: Path, ray_cluster):
    from conftest import read_jsonl, run_cli

    recipe, data = write_inputs(tmp_path, n=12)
    with FakeOpenAIServer(responder=AnswerLog()) as server:
        base = ["run", str(recipe), "--input", str(data), "--model", f"generator={spec(server.url)}", "--no-report"]
        local = run_cli(*base, "--out", str(tmp_path / "local"), env={"OPENAI_API_KEY": ""})
        on_ray = run_cli(*base, "--out", str(tmp_path / "ray"), "--executor", "ray",
                         "--ray-address", ray_cluster.address, env={"OPENAI_API_KEY": ""})
    assert local.returncode == 0, local.stderr
    assert on_ray.returncode == 0, on_ray.stderr
    rows = [strip_volatile(r) for r in read_jsonl(tmp_path / "ray" / "data" / "train.jsonl")]
    assert rows and rows == [strip_volatile(r) for r in read_jsonl(tmp_path / "local" / "data" / "train.jsonl")]
    bad = run_cli(*base, "--out", str(tmp_path / "x"), "--executor", "spark")
    assert bad.returncode == 2 and "--executor must be local or ray" in bad.stderr
