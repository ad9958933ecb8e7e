"""`--dry-run` with a warm cache: estimated against the real usage and wall time of the same run
(real pipeline, real SQLite cache, real local HTTP server with asymmetric prompt/completion sizes)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from synthloom.llm.cache import RequestCache
from synthloom.run.estimate import estimate_run
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.recipes.registry import load_recipe
from tests.fakes.openai_server import FakeOpenAIServer

RECIPE = """
name: estimated
shard_size: 1
steps:
  - {type: model, name: ask, prompt: "Ask about {{ topic }}", output: question}
  - {type: model, name: answer, prompt: "Answer: {{ question }}", output: answer}
"""
DELAY = 0.25
ROWS = 12


def _long_answer(payload):  # ~45 completion tokens for a ~5-token prompt: a split far from 50/50
    return " ".join(["word"] * 45)


def test_dry_run_on_a_warm_cache_estimates_the_real_split_and_time(tmp_path: Path):
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"topic": f"t{i}"}) + "\n" for i in range(ROWS)))
    prices = tmp_path / "prices.yaml"
    prices.write_text("fake: {prompt: 1.0, completion: 10.0}\n")  # asymmetric: a wrong split costs wrongly
    cache = tmp_path / "cache.sqlite"
    with FakeOpenAIServer(delay=DELAY) as server:
        server.responder = _long_answer
        opts = RunOptions(out=tmp_path / "real", input_path=data, models={"generator": f"openai:{server.url}#fake"},
                          cache_path=cache, price_file=prices, shards_in_flight=1, report=False)
        real = asyncio.run(run_pipeline_async(load_recipe(str(tmp_path / "recipe.yaml")), opts)).stats
        paid = server.received
        # the whole input is now in the cache: the calibration finds every answer there
        warm = asyncio.run(estimate_run(load_recipe(str(tmp_path / "recipe.yaml")),
                                        RunOptions(**{**opts.__dict__, "out": tmp_path / "dry"})))
        assert server.received == paid  # nothing paid again
    usage = real["usage"]["openai:fake"] if "openai:fake" in real["usage"] else next(iter(real["usage"].values()))
    est = next(iter(warm["models"].values()))
    assert warm["calibration_cached_requests"] == 6 and warm["calibration_untimed_answers"] == 0
    # tokens: the real prompt / completion split (a 50/50 split of cached tokens is far off here)
    assert abs(est["prompt_tokens"] - usage["prompt_tokens"]) <= 0.15 * usage["prompt_tokens"]
    assert abs(est["completion_tokens"] - usage["completion_tokens"]) <= 0.15 * usage["completion_tokens"]
    half = (usage["prompt_tokens"] + usage["completion_tokens"]) / 2  # what a 50/50 split would say
    assert abs(half - usage["prompt_tokens"]) > 0.15 * usage["prompt_tokens"]
    assert abs(est["cost_usd"] - usage["cost_usd"]) <= 0.15 * usage["cost_usd"]
    # time: each cached answer is waited for as long as it first took (24 sequential calls of 0.25 s)
    assert real["wall_seconds"] >= 2 * ROWS * DELAY
    assert 0.6 * real["wall_seconds"] <= warm["estimated_seconds"] <= 1.6 * real["wall_seconds"], (warm, real["wall_seconds"])


def test_cache_records_how_long_each_answer_took(tmp_path: Path):
    cache = RequestCache(tmp_path / "c.sqlite")
    from synthloom.llm.base import ChatResponse, Choice, Usage

    cache.put("k1", "m", ChatResponse([Choice("x", "stop")], Usage(3, 9)), seconds=1.25)
    cache.put("k2", "m", ChatResponse([Choice("y", "stop")], Usage(3, 9)))
    found = cache.lookup(["k1", "k2"])
    assert found["k1"].seconds == 1.25 and found["k2"].seconds is None
    assert found["k1"].response.usage.completion_tokens == 9
