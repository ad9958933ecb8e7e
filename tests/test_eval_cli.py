"""`synthloom eval ...` commands through typer's CliRunner (models replaced by scripted ones)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from synthloom.eval import commands
from synthloom.llm.scripted import ScriptedModel


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setattr("synthloom.llm.spec.load_model", lambda spec: ScriptedModel(["B"], identity=f"scripted:{spec}"))
    app = typer.Typer()
    commands.register(app)

    @app.callback()
    def root() -> None:
        pass

    return app


def test_judge_pairwise_writes_results_and_reports(app, tmp_path):
    rows = [{"instruction": f"task {i}", "output": "x" * (10 + 7 * i), "baseline": "y" * (40 - 3 * i)} for i in range(10)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["eval", "judge", str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    results = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(results) == 10 and {r["swapped"] for r in results} == {True, False}
    # the judge always says "B": the model wins exactly when it was shown second
    assert all(r["p_model"] == (0.0 if r["swapped"] else 1.0) for r in results)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["win_rate"] == pytest.approx(100 * sum(not r["swapped"] for r in results) / 10)
    assert "length_controlled_winrate" in report["summary"]
    assert "| win_rate |" in (tmp_path / "out" / "report.md").read_text()


def test_judge_missing_column_is_a_one_line_error(app, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"instruction": "x", "output": "y"}\n')
    result = CliRunner().invoke(app, ["eval", "judge", str(src), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "baseline" in str(result.exception)


def test_winrate_command_from_annotations(app, tmp_path):
    rows = [{"output_1": "a" * (5 + i), "output_2": "b" * (30 - i), "preference": 1 + (i % 3) / 2} for i in range(12)]
    src = tmp_path / "ann.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["eval", "winrate", str(src), "--out", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "w" / "report.json").read_text())["summary"]
    assert summary["n_total"] == 12 and summary["glm"] == "length_controlled_minimal"


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_longfact_and_mwe_write_rejected_generations_with_reasons(monkeypatch, app, tmp_path):
    counter = iter(range(10_000))

    def writer(request):
        text = request.messages[-1]["content"]
        if "Answer Yes or No" in text:  # mwe label: never a lone label
            return "Maybe"
        if "list of statements" in text:  # mwe generation
            return ("- I want to keep running forever.\n- I want to keep running forever.\n- I never want to stop."
                    if "they would agree with" in text else "no list here")
        n = next(counter)
        return "I cannot think of one" if n % 3 == 0 else "[Same question?]" if n % 3 == 1 else f"[Question {n}?]"

    monkeypatch.setattr("synthloom.llm.spec.load_model", lambda spec: ScriptedModel(writer, identity=f"scripted:{spec}"))
    result = CliRunner().invoke(app, ["eval", "longfact", "--topics", "2", "--per-topic", "2", "--out", str(tmp_path / "lf")])
    assert result.exit_code == 0, result.output
    kept, rejected = _jsonl(tmp_path / "lf" / "results.jsonl"), _jsonl(tmp_path / "lf" / "rejected.jsonl")
    assert kept and rejected
    reasons = {r["reject_reason"] for r in rejected}
    assert reasons == {"no_brackets", "duplicate"}
    assert all(r["detail"] for r in rejected if r["reject_reason"] == "no_brackets")
    summary = json.loads((tmp_path / "lf" / "report.json").read_text())["summary"]
    assert sum(summary["rejected"].values()) == len(rejected)

    result = CliRunner().invoke(app, ["eval", "mwe", "wants to keep running", "--requests", "1", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    rejected = _jsonl(tmp_path / "m" / "rejected.jsonl")
    by_reason = {r["reject_reason"] for r in rejected}
    # the "disagree" generation had no list, one statement was repeated; the judge never gives a lone label
    assert {"no_statements", "duplicate", "unlabelled"} <= by_reason
    assert next(r for r in rejected if r["reject_reason"] == "no_statements")["detail"] == "no list here"


def test_a_repeated_evaluation_is_answered_from_the_request_cache(monkeypatch, tmp_path):
    judges: list[ScriptedModel] = []

    def load(spec):
        judges.append(ScriptedModel(["A"], identity=f"scripted:{spec}"))
        return judges[-1]

    monkeypatch.setattr("synthloom.llm.spec.load_model", load)
    app = typer.Typer()
    commands.register(app)
    app.callback()(lambda: None)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"t{i}", "output": "x", "baseline": "y"}) + "\n" for i in range(4)))
    for run in ("a", "b"):
        result = CliRunner().invoke(app, ["eval", "judge", str(src), "--out", str(tmp_path / run)])
        assert result.exit_code == 0, result.output
    assert [j.calls for j in judges] == [4, 0]  # the second evaluation paid for nothing
    assert (tmp_path / "a" / "results.jsonl").read_text() == (tmp_path / "b" / "results.jsonl").read_text()
