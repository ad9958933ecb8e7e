"""The verdict gate enforced by the engine: required checks, unknown verdicts, advisory checks,
the unverified split, YAML recipes — whatever the steps before it did."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from synthloom.errors import ConfigError
from synthloom.pipeline.pipeline import Pipeline, Source, pipeline_from_yaml
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.pipeline.step import Step, StepContext, register_step
from synthloom.verdicts import Verdict, gate_reason

ROWS = [{"x": i} for i in range(6)]


@register_step("test_leaky_checker")
class LeakyChecker(Step):
    """A checker that records verdicts but (wrongly) never rejects: the gate must stop its failures."""


    def process(self, rows: list[dict], ctx: StepContext) -> list[Any]:
        out = []
        for row in rows:
            new = ctx.derive(row, {})
            ok = {0: True, 1: False, 2: None, 3: True, 4: True, 5: True}[row["x"]]
            Verdict(ok, "test", f"x={row['x']}").record(new, "check")
            if row["x"] == 4:
                Verdict(False, "test", "draft was wrong").record(new, "draft")
            if row["x"] == 5:
                Verdict(False, "test", "another check failed").record(new, "other")
            out.append(new)
        return out


def run(pipeline: Pipeline, out: Path):
    return asyncio.run(run_pipeline_async(pipeline, RunOptions(out=out, report=False), models={}))


def test_only_rows_whose_required_checks_passed_reach_train(tmp_path):
    pipeline = Pipeline("g", [LeakyChecker(name="check")], source=Source(rows=ROWS),
                        required_checks=["check"], advisory_checks=["draft"])
    result = run(pipeline, tmp_path / "run")
    assert sorted(r["x"] for r in result.rows) == [0, 3, 4]  # x=4: only an advisory check failed
    gate = {s["step"]: s for s in result.stats["funnel"]}["verdict_gate"]
    assert gate["rejected"] == {"check_failed:check": 1, "check_unknown:check": 1, "check_failed:other": 1}
    assert not (tmp_path / "run" / "data" / "unverified.jsonl").exists()


def test_a_required_check_that_was_never_recorded_blocks_the_row(tmp_path):
    pipeline = Pipeline("g", [LeakyChecker(name="check")], source=Source(rows=ROWS), required_checks=["judge"])
    result = run(pipeline, tmp_path / "run")
    assert result.rows == []
    gate = {s["step"]: s for s in result.stats["funnel"]}["verdict_gate"]
    assert gate["rejected"] == {"check_missing:judge": 6}  # required checks are looked at first


def test_keep_unverified_writes_a_separate_split_never_train(tmp_path):
    pipeline = Pipeline("g", [LeakyChecker(name="check")], source=Source(rows=ROWS),
                        required_checks=["check"], advisory_checks=["draft"], keep_unverified=True)
    result = run(pipeline, tmp_path / "run")
    unverified = [json.loads(x) for x in (tmp_path / "run" / "data" / "unverified.jsonl").read_text().splitlines()]
    assert sorted(r["x"] for r in unverified) == [1, 2, 5] and result.stats["unverified_rows"] == 3
    assert {r["_meta"]["unverified_reason"] for r in unverified} == {"check_failed:check", "check_unknown:check",
                                                                     "check_failed:other"}
    train = [json.loads(x) for x in (tmp_path / "run" / "data" / "train.jsonl").read_text().splitlines()]
    assert sorted(r["x"] for r in train) == [0, 3, 4]
    assert (tmp_path / "run" / "data" / "unverified.parquet").exists()
    card = (tmp_path / "run" / "README.md").read_text()
    assert "unverified" in card


def test_yaml_recipes_declare_required_checks_and_round_trip(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: y\nrequired_checks: [check]\nadvisory_checks: [draft]\nkeep_unverified: true\n"
                    "source: {rows: [{x: 0}, {x: 1}]}\nsteps:\n  - {type: test_leaky_checker, name: check}\n")
    pipeline = pipeline_from_yaml(path)
    assert pipeline.required_checks == ["check"] and pipeline.keep_unverified
    assert pipeline.config()["required_checks"] == ["check"]
    assert [r["x"] for r in run(pipeline, tmp_path / "run").rows] == [0]
    path.write_text("name: y\nrequired_checks: check\nsteps:\n  - {type: test_leaky_checker, name: check}\n")
    with pytest.raises(ConfigError, match="required_checks"):
        pipeline_from_yaml(path)


def test_the_gate_name_is_reserved():
    with pytest.raises(ConfigError, match="reserved"):
        Pipeline("g", [LeakyChecker(name="verdict_gate")])


def test_gate_reason_treats_malformed_verdicts_as_unknown():
    row = {"_meta": {"verdicts": {"a": {"ok": "true"}, "b": "yes", "c": {"ok": True}}}}
    assert gate_reason(row, ["c"]) is None
    assert gate_reason(row, ["a"])[0] == "check_unknown:a"
    assert gate_reason(row, ["b"])[0] == "check_unknown:b"
