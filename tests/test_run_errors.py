"""A wrong URL, model or key ends the run (exit 1, one line, nothing cached), never an empty dataset;
the same command against the fixed endpoint then just works (no --overwrite). Real CLI, real servers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conftest import read_jsonl, run_cli
from tests.fakes import FakeOpenAIServer, free_port
from tests.status_server import always

RECIPE = """
name: twostep
shard_size: 4
steps:
  - {type: model, name: ask, prompt: "Ask about {{ topic }}", output: question}
  - {type: model, name: answer, prompt: "Answer: {{ question }}", output: answer}
"""
ROWS = 12
ENV = {"OPENAI_API_KEY": "", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"topic": f"t{i}"}) + "\n" for i in range(ROWS)))
    return tmp_path / "recipe.yaml", tmp_path / "in.jsonl"


def run(inputs: tuple[Path, Path], out: Path, url: str):
    recipe, data = inputs
    return run_cli("run", str(recipe), "--input", str(data), "--out", str(out), "--no-report",
                   "--model", f"generator=openai:{url}#fake", env=ENV)


def cached_answers(out: Path) -> int:
    with sqlite3.connect(out / "cache.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def assert_run_error(res, *needles: str) -> None:
    assert res.returncode == 1, (res.stdout, res.stderr)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.parametrize("status, message, needle", [
    (404, "Not Found", "HTTP 404"),
    (401, "Incorrect API key", "HTTP 401"),
    (403, "forbidden", "HTTP 403"),
    (400, "The model `fake` does not exist.", "does not exist"),
])
def test_an_endpoint_error_fails_the_run_fast_and_caches_nothing(inputs, tmp_path: Path, status, message, needle):
    out = tmp_path / "run"
    with always(status, message) as bad:
        res = run(inputs, out, bad.url)
    assert_run_error(res, needle)
    assert bad.received <= 8  # the requests already in flight, not one per row and step
    assert cached_answers(out) == 0 and not (out / "data").exists()


def test_nothing_listening_fails_the_run_with_one_line(inputs, tmp_path: Path):
    res = run(inputs, tmp_path / "run", f"http://127.0.0.1:{free_port()}/v1")
    assert_run_error(res, "unreachable", "check the server / URL")
    assert "circuit open" not in res.stderr  # the error line says it all


def test_fixing_a_wrong_url_needs_no_overwrite(inputs, tmp_path: Path):
    out = tmp_path / "run"
    with always(404, "no such route") as bad:
        assert_run_error(run(inputs, out, bad.url), "HTTP 404")
    with FakeOpenAIServer() as good:
        res = run(inputs, out, good.url)
        assert res.returncode == 0, res.stderr
        assert good.received == 2 * ROWS  # every request went to the fixed endpoint
    assert len(read_jsonl(out / "data" / "train.jsonl")) == ROWS


def test_a_step_whose_every_request_was_refused_fails_instead_of_writing_an_empty_dataset(inputs, tmp_path: Path):
    out = tmp_path / "run"
    with always(400, "temperature must be <= 1") as picky:
        res = run(inputs, out, picky.url)
        assert picky.received == ROWS  # a per-request 400 is not an endpoint error: each row was tried
    assert_run_error(res, "step 'ask'", f"refused all {ROWS} requests", "temperature must be <= 1")
    assert not (out / "data").exists() and not (out / "stats.json").exists()
    with FakeOpenAIServer() as good:
        res = run(inputs, out, good.url)
        assert res.returncode == 0, res.stderr
        assert good.received == 2 * ROWS
    assert len(read_jsonl(out / "data" / "train.jsonl")) == ROWS


def test_some_rows_refused_is_still_a_dataset(inputs, tmp_path: Path):
    recipe, data = inputs
    rows = [{"topic": f"t{i}" + (" fault:400" if i % 3 == 0 else "")} for i in range(ROWS)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        res = run(inputs, out, server.url)
    assert res.returncode == 0, res.stderr
    stats = json.loads((out / "stats.json").read_text())
    ask = next(s for s in stats["funnel"] if s["step"] == "ask")
    assert ask["rejected"] == {"invalid_request": 4} and stats["rows"] == ROWS - 4
