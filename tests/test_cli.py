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


# --- front-door defects (issue 18, item 6) ---------------------------------------------------------

def one_error_line(res, code: int = 2) -> str:
    assert res.returncode == code, (res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_out_pointing_at_a_file_or_a_negative_limit_is_one_line_exit_2(workdir: Path):
    target = workdir / "not_a_dir.txt"
    target.write_text("keep me")
    base = ["run", str(workdir / "recipe.yaml"), "--input", str(workdir / "in.jsonl")]
    assert "is a file" in one_error_line(run_cli(*base, "--out", str(target)))
    assert target.read_text() == "keep me"
    assert "--limit must be" in one_error_line(run_cli(*base, "--out", str(workdir / "r"), "--limit", "-1"))
    assert "--limit must be" in one_error_line(run_cli(*base, "--out", str(workdir / "r"), "--limit", "0"))


def test_errors_print_brackets_and_colons_verbatim(workdir: Path):
    # Rich would render ":x:" as an emoji and "[bold]" as markup; the message must come out as written
    line = one_error_line(run_cli("run", "openai:x:[bold]y"))
    assert "'openai:x:[bold]y'" in line and "\u274c" not in line


def test_python_dash_m_synthloom_is_the_cli():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "synthloom", "recipes"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "metamath" in res.stdout, res.stderr
    res = subprocess.run([sys.executable, "-m", "synthloom", "run", "nope"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "unknown recipe 'nope'" in res.stderr


def test_a_rerun_removes_temp_files_a_kill_left_and_a_no_op_resume_keeps_wall_seconds(workdir: Path):
    out = workdir / "run"
    cmd = ["run", str(workdir / "recipe.yaml"), "--input", str(workdir / "in.jsonl"), "--out", str(out), "--no-report"]
    assert run_cli(*cmd).returncode == 0
    stale = [out / "data" / ".train.jsonl.k2x9_q7a.tmp", out / "steps" / "01-len" / ".part-00000.parquet.a1b2c3d4.tmp"]
    for p in stale:
        p.write_text("half written")
    unrelated = out / "data" / ".notes.tmp"  # not a name atomic writes make: left alone
    unrelated.write_text("mine")
    stats = json.loads((out / "stats.json").read_text())
    stats["wall_seconds"] = 123.0  # the original run's time
    (out / "stats.json").write_text(json.dumps(stats))
    assert run_cli(*cmd).returncode == 0
    assert not any(p.exists() for p in stale) and unrelated.exists()
    assert json.loads((out / "stats.json").read_text())["wall_seconds"] == 123.0


def test_list_options_take_comma_lists_or_json():
    from synthloom.cli import parse_pairs, split_list_options
    from synthloom.errors import ConfigError
    from synthloom.recipes.registry import load_recipe

    def streams(text: str) -> list[str]:
        return load_recipe("metamath", split_list_options("metamath", parse_pairs([text], "-o"))).options["streams"]

    assert streams("streams=ansaug,fobar") == ["ansaug", "fobar"]
    assert streams("streams=ansaug") == ["ansaug"]
    assert streams('streams=["sv"]') == ["sv"]
    with pytest.raises(ConfigError, match="streams"):
        streams("streams=ansaug,bogus")
    # a plain string option keeps its commas
    assert split_list_options("metamath", {"seeds": "a,b"}) == {"seeds": "a,b"}


def test_readme_recipe_table_is_one_table_naming_every_recipe():
    from synthloom.recipes.registry import BUILTIN_RECIPES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text().splitlines()
    start = readme.index("| recipe | technique | verification (required checks in **bold**) |")
    end = next(i for i in range(start, len(readme)) if not readme[i].startswith("|"))
    table = "\n".join(readme[start:end])
    missing = [name for name in BUILTIN_RECIPES if f"`{name}`" not in table]
    assert not missing, f"not in the (contiguous) recipe table: {missing}"


def test_progress_prints_on_a_timer_with_live_request_counts(workdir: Path):
    from tests.fakes import FakeOpenAIServer

    recipe = workdir / "slow.yaml"
    recipe.write_text("name: slow\nshard_size: 50\nsteps:\n"
                      "  - {type: model, name: ask, prompt: 'Ask about {{ text }}', output: q}\n")
    rows = [{"text": f"t{i}"} for i in range(7)] + [{"text": "late fault:503@1.5,ok"}]
    data = workdir / "slow.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FakeOpenAIServer() as server:
        res = run_cli("run", str(recipe), "--input", str(data), "--out", str(workdir / "run"), "--no-report",
                      "--model", f"generator=openai:{server.url}#fake",
                      env={"OPENAI_API_KEY": "", "SYNTHLOOM_PROGRESS_SECONDS": "0.25"})
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("[")]
    # the only shard is still waiting for its last request, yet the display moves and counts
    waiting = [line for line in lines if "ask: 0 " in line and "requests 7 (cached 0)" in line]
    assert len(waiting) >= 2, res.stderr
    assert any("retries 1 (503 1)" in line for line in waiting), res.stderr
    assert "openai:fake: 9 sends, 1 retries (503 x1)" in res.stdout  # the summary says why it was slow
    stats = json.loads((workdir / "run" / "stats.json").read_text())
    transport = stats["transport"]["openai:fake"]
    assert transport["retries"] == 1 and transport["statuses"] == {"503": 1} and transport["time_lost_s"] >= 1.5
    from synthloom.report.html import write_report

    html = write_report(workdir / "run").read_text()
    assert "Retries and errors" in html and "503 × 1" in html
