"""Pipeline engine: steps, validation, YAML recipes, branches, funnel, resume, determinism."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from synthloom.errors import BadInputError, ConfigError
from synthloom.llm.cache import CachedModel, RequestCache
from synthloom.llm.scripted import ScriptedModel
from synthloom.pipeline.builtins import ExactDedup, FormatAs, LengthFilter, Limit, RegexFilter, Sample
from synthloom.pipeline.model_step import ModelStep
from synthloom.pipeline.pipeline import Branch, Pipeline, Source, pipeline_from_yaml
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.pipeline.step import Rejected, Step, build_step
from synthloom.records import META, strip_volatile

from conftest import read_jsonl


def answer_model() -> ScriptedModel:
    """Answers deterministically from the prompt and seed (like a seeded sampler would)."""
    return ScriptedModel(lambda r: f"reply to [{r.messages[-1]['content']}] s{r.seed % 1000}")


def run(pipeline: Pipeline, out: Path, model=None, cache: Path | None = None, **kw):
    model = model or answer_model()
    wrapped = CachedModel(model, RequestCache(cache or out.parent / f"{out.name}.cache.sqlite"))
    kw.setdefault("report", False)  # report.html has its own tests; charts would slow every run here
    return asyncio.run(run_pipeline_async(pipeline, RunOptions(out=out, **kw), models={"generator": wrapped}))


def topics(n: int) -> Source:
    return Source(rows=[{"topic": f"topic {i % 13}", "n": i} for i in range(n)])


def test_steps_funnel_and_rejections(tmp_path):
    p = Pipeline("t", [
        ModelStep(name="gen", prompt="Write about {{ topic }}", output="instruction"),
        RegexFilter(name="no_seven", column="topic", pattern=r"topic 7$", reason="banned_topic"),
        ExactDedup(name="dedup", columns=["topic"]),
        ModelStep(name="answer", prompt="{{ instruction }}", output="output"),
        FormatAs(name="fmt", format="alpaca"),
    ], source=topics(100), shard_size=16)
    res = run(p, tmp_path / "r")
    assert res.complete
    funnel = {s["step"]: s for s in res.stats["funnel"]}
    assert funnel["source"]["rows_out"] == 100
    assert funnel["no_seven"]["rejected"] == {"banned_topic": 8}  # i % 13 == 7 for 8 values of i < 100
    assert funnel["dedup"]["rows_in"] == 92 and funnel["dedup"]["rows_out"] == 12
    assert funnel["dedup"]["rejected"]["duplicate"] == 80
    assert len(res.rows) == 12
    row = res.rows[0]
    assert set(row) == {"instruction", "input", "output", META}
    meta = row[META]
    assert meta["synthetic"] is True and meta["recipe"] == "t" and meta["model"] == "scripted"
    assert meta["parents"] and meta["prompt_sha"] and isinstance(meta["seed"], int)
    assert meta["usage"]["completion_tokens"] > 0
    assert set(meta["raw"]) == {"gen", "answer"}
    # rejected rows are kept with step and reason, never dropped silently
    from synthloom.pipeline.checkpoint import Checkpoints

    rej = Checkpoints(res.run_dir).read_rejected(2, "no_seven")
    assert len(rej) == 8 and all(r["reason"] == "banned_topic" for r in rej)
    # outputs, stats and card are written
    data = read_jsonl(res.run_dir / "data" / "train.jsonl")
    assert [strip_volatile(r) for r in data] == [strip_volatile(r) for r in res.rows]
    stats = json.loads((res.run_dir / "stats.json").read_text())
    assert stats["usage"]["scripted"]["requests"] == 100 + 12
    card = (res.run_dir / "README.md").read_text()
    assert card.startswith("---") and "synthetic: true" in card and "| dedup | 92 | 12 | 80 |" in card


def test_parquet_loads_in_pandas_and_datasets(tmp_path):
    p = Pipeline("pq", [ModelStep(name="gen", prompt="Q: {{ topic }}", output="text")], source=topics(10))
    res = run(p, tmp_path / "r")
    import pandas as pd

    df = pd.read_parquet(res.run_dir / "data" / "train.parquet")
    assert len(df) == 10 and "text" in df.columns
    assert json.loads(df["_meta"][0])["synthetic"] is True
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(res.run_dir / "data" / "train.parquet"), split="train")
    assert ds.num_rows == 10 and ds[0]["text"].startswith("reply to")
    from synthloom.io import read_parquet_label

    assert read_parquet_label(res.run_dir / "data" / "train.parquet")["synthetic"] is True


def test_missing_column_is_named_before_anything_runs(tmp_path):
    model = answer_model()
    p = Pipeline("v", [ModelStep(name="gen", prompt="{{ topic }} {{ missing_col }}", output="x")], source=topics(3))
    with pytest.raises(ConfigError, match=r"step 'gen' needs column 'missing_col'"):
        run(p, tmp_path / "r", model=model)
    assert model.calls == 0 and not (tmp_path / "r").exists()


def test_columns_flow_through_rename_and_select(tmp_path):
    p = pipeline_from_yaml_text(tmp_path, """
name: flow
steps:
  - {type: rename, name: ren, columns: {topic: subject}}
  - {type: model, name: gen, prompt: "About {{ subject }}", output: text}
  - {type: select, name: sel, columns: [text]}
  - {type: model, name: again, prompt: "{{ subject }}", output: y}
""")
    with pytest.raises(ConfigError, match=r"'again' needs column 'subject'.*available: text"):
        p.validate({"topic", "n"})


def pipeline_from_yaml_text(tmp_path: Path, text: str) -> Pipeline:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return pipeline_from_yaml(path)


def test_yaml_and_python_recipes_resolve_to_the_same_pipeline(tmp_path):
    (tmp_path / "gen.j2").write_text("Write about {{ topic }}")
    y = pipeline_from_yaml_text(tmp_path, """
name: same
models: {generator: embedded}
steps:
  - {type: model, name: gen, prompt: gen.j2, output: text, temperature: 0.5}
  - {type: filter_length, name: len, column: text, min: 3}
  - {type: dedup_exact, name: dd, columns: [text]}
""")
    py = Pipeline("same", [
        ModelStep(name="gen", prompt="gen.j2", output="text", temperature=0.5, template_dirs=[str(tmp_path)]),
        LengthFilter(name="len", column="text", min=3),
        ExactDedup(name="dd", columns=["text"]),
    ], models={"generator": "embedded"})
    assert y.fingerprint() == py.fingerprint()
    # and the saved recipe rebuilds an equal pipeline
    steps = [build_step(c) for c in y.config()["steps"]]
    assert [s.config() for s in steps] == [s.config() for s in y.steps[:-1]]
    assert y.steps[-1].name == "verdict_gate"  # the engine's own last step, not part of the saved recipe


@pytest.mark.parametrize("text,match", [
    ("steps: [ {type: model", "not valid YAML"),
    ("name: x\nsteps:\n  - {type: frobnicate, name: f}\n", "unknown step type 'frobnicate'"),
    ("name: x\nsteps: []\n", "non-empty list"),
    ("name: x\nsteps:\n  - {type: filter_length, name: f, column: a, colour: red}\n", "colour"),
])
def test_bad_yaml_recipes_are_config_errors(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        pipeline_from_yaml_text(tmp_path, text)


def test_branch_fans_out_and_counts_per_stream(tmp_path):
    p = Pipeline("fan", [
        Branch(name="streams", branches={
            "short": [ModelStep(name="a", prompt="short {{ topic }}", output="text")],
            "long": [ModelStep(name="b", prompt="long {{ topic }}", output="text"),
                     RegexFilter(name="odd", column="topic", pattern=r"[13579]$", reason="odd_topic")],
        }),
        LengthFilter(name="len", column="text", min=1),
    ], source=topics(20))
    res = run(p, tmp_path / "r")
    branches = [r["branch"] for r in res.rows]
    assert branches.count("short") == 20
    odd = sum(1 for i in range(20) if (i % 13) % 2 == 1)
    assert branches.count("long") == 20 - odd
    funnel = {s["step"]: s for s in res.stats["funnel"]}
    assert funnel["streams"]["by_branch"] == {"short": 20, "long": 20 - odd}
    assert funnel["streams"]["rejected"] == {"long.odd:odd_topic": odd}


def test_n_samples_expand_with_distinct_sample_index(tmp_path):
    model = ScriptedModel(lambda r: [f"s{i}-{r.messages[-1]['content']}" for i in range(r.n)])
    p = Pipeline("n", [ModelStep(name="gen", prompt="{{ topic }}", output="text", n=3)], source=topics(4))
    res = run(p, tmp_path / "r", model=model)
    assert len(res.rows) == 12 and sorted({r["sample_index"] for r in res.rows}) == [0, 1, 2]
    assert model.calls == 4  # one request with n=3 per row
    assert len({r[META]["id"] for r in res.rows}) == 12


def test_json_parse_failures_become_rejections_with_reasons(tmp_path):
    outputs = {"topic 0": '{"q": "fine", "a": 1}', "topic 1": "not json at all", "topic 2": '```json\n{"q": "x", "a": 2}\n```'}
    model = ScriptedModel(lambda r: outputs[r.messages[-1]["content"]])
    schema = {"type": "object", "properties": {"q": {"type": "string"}, "a": {"type": "integer"}},
              "required": ["q", "a"]}
    p = Pipeline("j", [ModelStep(name="gen", prompt="{{ topic }}", parse="json", schema=schema, spread=True)],
                 source=topics(3))
    res = run(p, tmp_path / "r", model=model)
    assert sorted(r["a"] for r in res.rows) == [1, 2]
    funnel = {s["step"]: s for s in res.stats["funnel"]}
    assert funnel["gen"]["rejected"] == {"parse_error": 1}


CRASH = {"armed": True}


class ExplodingStep(Step):
    """Fails on the shard holding row `fail_at` while CRASH is armed (simulates a crash mid-run)."""

    fail_at: int = 40

    def process(self, rows, ctx):
        if CRASH["armed"] and any(r["n"] == self.fail_at for r in rows):
            raise RuntimeError("boom")
        return rows


def test_resume_after_a_crash_repeats_no_model_call(tmp_path):
    model = answer_model()

    def pipeline():
        return Pipeline("r", [
            ModelStep(name="gen", prompt="Write about {{ topic }} #{{ n }}", output="text"),
            ExplodingStep(name="explode"),
            ModelStep(name="answer", prompt="{{ text }}", output="answer"),
        ], source=topics(80), shard_size=10)

    cache = tmp_path / "cache.sqlite"
    CRASH["armed"] = True
    try:
        with pytest.raises(RuntimeError, match="boom"):
            run(pipeline(), tmp_path / "r", model=model, cache=cache)
    finally:
        CRASH["armed"] = False
    assert 0 < model.calls
    finished_parts = len(list((tmp_path / "r" / "steps").glob("*/part-*.parquet")))
    res = run(pipeline(), tmp_path / "r", model=model, cache=cache)
    assert res.complete and len(res.rows) == 80
    # each distinct request reached the model exactly once across crash + resume
    assert model.calls == 160
    assert len(list((tmp_path / "r" / "steps").glob("*/part-*.parquet"))) > finished_parts
    clean = run(pipeline(), tmp_path / "clean", model=answer_model())
    assert [strip_volatile(r) for r in res.rows] == [strip_volatile(r) for r in clean.rows]


def test_graceful_stop_leaves_a_valid_partial_dataset_and_resumes(tmp_path):
    model = ScriptedModel(lambda r: f"ok {r.messages[-1]['content']}", delay=0.01)
    p = Pipeline("g", [ModelStep(name="gen", prompt="{{ topic }} {{ n }}", output="text")],
                 source=topics(60), shard_size=5)
    cache = tmp_path / "c.sqlite"

    async def stopped_run():
        wrapped = CachedModel(model, RequestCache(cache))

        def hook(executor):
            parts = {"n": 0}
            orig = executor.on_event

            def on_event(kind, data):
                orig(kind, data)
                if kind == "part" and data["step"] == "gen":
                    parts["n"] += 1
                    if parts["n"] == 3:
                        executor.request_stop("test stop")

            executor.on_event = on_event

        return await run_pipeline_async(p, RunOptions(out=tmp_path / "g", shards_in_flight=2),
                                        models={"generator": wrapped}, executor_hook=hook)

    partial = asyncio.run(stopped_run())
    assert not partial.complete and 0 < len(partial.rows) < 60
    on_disk = read_jsonl(tmp_path / "g" / "data" / "train.jsonl")
    assert len(on_disk) == len(partial.rows)
    calls_before = model.calls
    p2 = Pipeline("g", [ModelStep(name="gen", prompt="{{ topic }} {{ n }}", output="text")],
                  source=topics(60), shard_size=5)
    done = run(p2, tmp_path / "g", model=model, cache=cache)
    assert done.complete and len(done.rows) == 60
    assert model.calls == 60  # nothing paid twice
    assert calls_before <= 60


def test_different_seed_changes_requests_same_seed_reproduces(tmp_path):
    p = lambda: Pipeline("s", [ModelStep(name="gen", prompt="{{ topic }}", output="t")], source=topics(5))  # noqa: E731
    a = run(p(), tmp_path / "a", seed=1)
    b = run(p(), tmp_path / "b", seed=1)
    c = run(p(), tmp_path / "c", seed=2)
    assert [strip_volatile(r) for r in a.rows] == [strip_volatile(r) for r in b.rows]
    assert [r["t"] for r in a.rows] != [r["t"] for r in c.rows]


def test_global_steps_limit_and_sample_are_deterministic(tmp_path):
    p = lambda: Pipeline("l", [Sample(name="s", n=10), Limit(name="lim", n=4)], source=topics(30))  # noqa: E731
    a = run(p(), tmp_path / "a", seed=3)
    b = run(p(), tmp_path / "b", seed=3)
    assert [r["n"] for r in a.rows] == [r["n"] for r in b.rows]
    assert len(a.rows) == 4 and a.rows == sorted(a.rows, key=lambda r: r["n"])
    funnel = {s["step"]: s for s in a.stats["funnel"]}
    assert funnel["s"]["rejected"] == {"not_sampled": 20} and funnel["lim"]["rejected"] == {"over_limit": 6}


def test_empty_input_and_changed_recipe_are_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="has no rows"):
        run(Pipeline("e", [LengthFilter(name="f", column="x")], source=Source(rows=[])), tmp_path / "e")
    run(Pipeline("c", [LengthFilter(name="f", column="topic")], source=topics(3)), tmp_path / "c")
    with pytest.raises(ConfigError, match="different fingerprint"):
        run(Pipeline("c", [LengthFilter(name="f", column="topic", min=2)], source=topics(3)), tmp_path / "c")


def test_step_returning_wrong_outcome_count_fails_loudly(tmp_path):
    class Bad(Step):
        def process(self, rows, ctx):
            return rows[:-1]

    with pytest.raises(RuntimeError, match="exactly one outcome per input row"):
        run(Pipeline("b", [Bad(name="bad")], source=topics(3)), tmp_path / "b")


def test_rejected_dataclass_keeps_row():
    r = Rejected("x", {"a": 1}, "why")
    assert r.row == {"a": 1} and r.reason == "x"


class SquareInWorker(Step):
    """A CPU-heavy step: runs in the process pool, so it must see a different process id."""

    cpu_heavy = True

    def process(self, rows, ctx):
        import os

        return [ctx.derive(r, {"sq": r["n"] ** 2, "pid": os.getpid()}) for r in rows]

    def output_columns(self, available):
        return available | {"sq", "pid"}


def test_cpu_heavy_steps_run_in_a_process_pool(tmp_path):
    import os

    res = run(Pipeline("cpu", [SquareInWorker(name="sq")], source=topics(30), shard_size=5), tmp_path / "r")
    assert [r["sq"] for r in res.rows] == [i * i for i in range(30)]
    assert all(r["pid"] != os.getpid() for r in res.rows)
    assert all(r["_meta"]["parents"] for r in res.rows)


def test_list_samples_keep_one_outcome_per_row_and_count_the_dropped_ones(tmp_path):
    from synthloom.llm.scripted import ScriptedModel
    from synthloom.pipeline.model_step import ModelStep
    from synthloom.pipeline.pipeline import Pipeline, Source
    from synthloom.run.runner import RunOptions, run_pipeline_async

    def script(request):
        # topic a: one usable and one cut-off sample; topic b: both cut off
        long = "word " * 20
        return ["short answer", long] if "topic a" in request.messages[-1]["content"] else [long, long]

    step = ModelStep(name="gen", prompt="About {{ t }}", output="texts", n=2, samples="list", max_tokens=8)
    result = asyncio.run(run_pipeline_async(Pipeline("p", [step], source=Source(rows=[{"t": "topic a"}, {"t": "topic b"}])),
                                            RunOptions(out=tmp_path / "run", report=False),
                                            models={"generator": ScriptedModel(script)}))
    [row] = result.rows
    assert row["texts"] == ["short answer"] and row["_meta"]["dropped_samples"] == {"truncated": 1}
    gen = {s["step"]: s for s in result.stats["funnel"]}["gen"]
    assert gen["rows_out"] + gen["rejected_total"] == gen["rows_in"] == 2 and gen["rejected"] == {"truncated": 1}
