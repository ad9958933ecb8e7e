"""`synthloom run ... --private-seeds/--reference`: the trust audit ends any run, after the verdict gate."""

from __future__ import annotations

import json
from pathlib import Path

SECRETS = [f"Patient {i} record: account 4{i}17-88{i}3, lives at {i} Elm Road, diagnosis code Z{i}9."
           for i in range(12)]


def write_recipe(tmp_path: Path, texts: list[str]) -> Path:
    rows = "\n".join(f"    - {{text: {json.dumps(t)}}}" for t in texts)
    path = tmp_path / "copy.yaml"
    path.write_text(f"name: copy\nsource:\n  rows:\n{rows}\nsteps:\n"
                    "  - {type: template, name: out, template: 'Note: {{ text }}', output: output}\n")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_run_that_copies_its_private_seeds_fails_the_audit_but_keeps_its_dataset(tmp_path, cli):
    recipe = write_recipe(tmp_path, SECRETS)
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"output": s} for s in SECRETS])
    result = cli("run", str(recipe), "--out", str(tmp_path / "run"), "--private-seeds", str(seeds), "--fail-on-audit",
                 "--no-report")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "trust audit failed" in result.stderr and "the dataset is written" in result.stderr
    assert len((tmp_path / "run" / "data" / "train.jsonl").read_text().splitlines()) == len(SECRETS)
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert audit["passed"] is False and audit["failed"]
    funnel = [s["step"] for s in json.loads((tmp_path / "run" / "stats.json").read_text())["funnel"]]
    assert funnel[-2:] == ["verdict_gate", "trust_audit"]  # the audit sees exactly what reaches train


def test_without_fail_on_audit_the_run_reports_the_audit_and_exits_0(tmp_path, cli):
    recipe = write_recipe(tmp_path, SECRETS)
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"output": s} for s in SECRETS])
    result = cli("run", str(recipe), "--out", str(tmp_path / "run"), "--private-seeds", str(seeds), "--no-report")
    assert result.returncode == 0, result.stderr
    assert "audit:" in result.stdout and "FAILED" in result.stdout


def test_a_missing_audit_file_is_a_one_line_error(tmp_path, cli):
    recipe = write_recipe(tmp_path, SECRETS[:2])
    result = cli("run", str(recipe), "--out", str(tmp_path / "run"), "--reference", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "run").exists()
