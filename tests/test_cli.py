"""The real `synthloom` CLI in a subprocess: bad input gives one line and exit 2, and damages nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import read_jsonl, run_cli

GOOD_RECIPE = """
name: tidy
steps:
  - {type: filter_length, name: len, column: text, min: 3}
  - {type: dedup_exact, name: dd, columns: [text]}
  - {type: template, name: label, output: label, template: "{{ text | upper }}"}
"""


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "recipe.yaml").write_text(GOOD_RECIPE)
    rows = [{"text": t} for t in ["hello world", "Hello, world!", "ok", "something else", "hello world"]]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_run_recipe_without_models_end_to_end(workdir: Path):
    out = workdir / "run"
    res = run_cli("run", str(workdir / "recipe.yaml"), "--input", str(workdir / "in.jsonl"), "--out", str(out))
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(out / "data" / "train.jsonl")
    assert [r["label"] for r in rows] == ["HELLO WORLD", "SOMETHING ELSE"]
    stats = json.loads((out / "stats.json").read_text())
    funnel = {s["step"]: s for s in stats["funnel"]}
    assert funnel["len"]["rejected"] == {"too_short": 1} and funnel["dd"]["rejected"] == {"duplicate": 2}
    inspect = run_cli("inspect", str(out))
    assert inspect.returncode == 0 and "SOMETHING ELSE" in inspect.stdout


BAD_CASES = {
    "malformed_yaml": ("steps: [ {type: filter_length", None, "not valid YAML"),
    "unknown_step": ("steps:\n  - {type: frobnicate, name: f}\n", None, "unknown step type 'frobnicate'"),
    "missing_column": ("steps:\n  - {type: filter_length, name: f, column: nope}\n", None, "needs column 'nope'"),
    "empty_input": (GOOD_RECIPE, "", "has no rows"),
    "non_utf8": (GOOD_RECIPE, b'{"text": "fine"}\n{"text": "\xff\xfe bad"}\n', "line is not valid UTF-8"),
    "bad_json_line": (GOOD_RECIPE, '{"text": "fine"}\n{"text": oops}\n', "invalid JSON"),
    "missing_file": (GOOD_RECIPE, None, "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line_exit_2_and_damages_nothing(workdir: Path, case: str):
    out = workdir / "run"
    ok = run_cli("run", str(workdir / "recipe.yaml"), "--input", str(workdir / "in.jsonl"), "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    before = snapshot(out)
    recipe_text, input_data, message = BAD_CASES[case]
    recipe = workdir / "bad.yaml"
    recipe.write_text(recipe_text)
    bad_input = workdir / ("absent.jsonl" if case == "missing_file" else "bad_in.jsonl")
    if input_data is None and case != "missing_file":
        bad_input = workdir / "in.jsonl"
    elif isinstance(input_data, bytes):
        bad_input.write_bytes(input_data)
    elif input_data is not None:
        bad_input.write_text(input_data)
    res = run_cli("run", str(recipe), "--input", str(bad_input), "--out", str(out))
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert message in " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr
    assert snapshot(out) == before


def test_unknown_recipe_option_and_backend_are_exit_2(workdir: Path):
    res = run_cli("run", "instruct", "-o", "bogus=1")
    assert res.returncode == 2 and "bogus" in res.stderr
    res = run_cli("run", "instruct", "--model", "generator=telepathy:x", "--limit", "1",
                  "--out", str(workdir / "x"))
    assert res.returncode == 2 and "unknown model backend 'telepathy'" in res.stderr
    res = run_cli("run", "nope")
    assert res.returncode == 2 and "unknown recipe 'nope'" in res.stderr


def test_recipes_lists_builtins_with_options():
    res = run_cli("recipes")
    assert res.returncode == 0
    assert "instruct" in res.stdout and "per_topic" in res.stdout


def test_provenance_reads_labels_and_fails_loudly_when_stripped(workdir: Path):
    out = workdir / "run"
    assert run_cli("run", str(workdir / "recipe.yaml"), "--input", str(workdir / "in.jsonl"),
                   "--out", str(out)).returncode == 0
    for name in ("train.jsonl", "train.parquet"):
        res = run_cli("provenance", str(out / "data" / name))
        assert res.returncode == 0, res.stderr
        assert "recipes {'tidy': 2}" in res.stdout
    # strip the labels from copies: the command must fail, with a one-line reason
    import pyarrow.parquet as pq

    rows = read_jsonl(out / "data" / "train.jsonl")
    stripped = workdir / "stripped.jsonl"
    stripped.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "_meta"}) + "\n" for r in rows))
    res = run_cli("provenance", str(stripped))
    assert res.returncode == 1 and "labels missing" in res.stderr and "no _meta column" in res.stderr
    table = pq.read_table(out / "data" / "train.parquet")
    pq.write_table(table.replace_schema_metadata({}), workdir / "stripped.parquet")
    res = run_cli("provenance", str(workdir / "stripped.parquet"))
    assert res.returncode == 1 and "schema metadata" in res.stderr


def test_run_writes_report_and_report_command_rewrites_it(workdir: Path):
    out = workdir / "run"
    assert run_cli("run", str(workdir / "recipe.yaml"), "--input", str(workdir / "in.jsonl"),
                   "--out", str(out)).returncode == 0
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 2 and "too_short" in html  # charts and the reject reasons
    (out / "report.html").unlink()
    res = run_cli("report", str(out))
    assert res.returncode == 0 and (out / "report.html").exists()
    res = run_cli("report", str(workdir / "nope"))
    assert res.returncode == 2
