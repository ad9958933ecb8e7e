"""The perplexity filter step end to end: the real CLI, the embedded SmolLM2 as reference model,
its scores cached like any model call."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from conftest import read_jsonl, run_cli

RECIPE = """
name: ppl
models: {scorer: embedded}
steps:
  - {type: perplexity_filter, name: ppl, column: text, max_perplexity: 2000}
"""

FLUENT = ["The cat sat on the mat.", "I drink a cup of tea every morning.", "Water boils at one hundred degrees."]
SALAD = ["mat the on sat cat The zq", "morning every tea of cup a drink I xv", "degrees hundred one at boils Water qj"]


def test_perplexity_filter_rejects_word_salad_and_caches_scores(tmp_path: Path):
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    rows = [{"text": t} for t in FLUENT + SALAD] + [{"text": ""}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / "shared.sqlite"

    def run(out: str):
        res = run_cli("run", str(tmp_path / "recipe.yaml"), "--input", str(tmp_path / "in.jsonl"),
                      "--out", str(tmp_path / out), "--cache", str(cache))
        assert res.returncode == 0, res.stderr
        return json.loads((tmp_path / out / "stats.json").read_text())

    stats = run("first")
    kept = read_jsonl(tmp_path / "first" / "data" / "train.jsonl")
    assert [r["text"] for r in kept] == FLUENT
    assert all(0 < r["perplexity"] < 2000 for r in kept)
    funnel = {s["step"]: s for s in stats["funnel"]}
    assert funnel["ppl"]["rejected"] == {"perplexity_high": 3, "unscorable": 1}
    rejected = pq.read_table(tmp_path / "first" / "rejected" / "01-ppl").to_pylist()
    high = [r for r in rejected if r["reason"] == "perplexity_high"]
    assert sorted(json.loads(r["row"])["text"] for r in high) == sorted(SALAD)
    assert all(json.loads(r["row"])["perplexity"] > 2000 and "> 2000" in r["detail"] for r in high)

    again = run("second")  # a fresh run on the shared cache scores nothing anew
    assert [(r["text"], r["perplexity"]) for r in read_jsonl(tmp_path / "second" / "data" / "train.jsonl")] == [
        (r["text"], r["perplexity"]) for r in kept
    ]
    cache_stats = next(iter(again["cache"].values()))
    assert cache_stats["misses"] == 0 and cache_stats["hits"] == 6


async def test_a_model_that_cannot_score_is_a_config_error_naming_the_fix(tmp_path: Path):
    import pytest

    from synthloom.errors import ConfigError
    from synthloom.llm.cache import CachedModel, RequestCache
    from synthloom.llm.scripted import ScriptedModel

    model = CachedModel(ScriptedModel(["x"]), RequestCache(tmp_path / "c.sqlite"))
    with pytest.raises(ConfigError, match="cannot score texts.*embedded"):
        await model.score(["some text"])
