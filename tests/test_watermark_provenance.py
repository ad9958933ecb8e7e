"""End to end: a watermarked run's outputs are detected, labelled with the key id, and never hold the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

KEY = "s3cret-watermark-key-for-tests-0451"
RECIPE = """
name: marked
steps:
  - {type: model, name: write, prompt: "Write a few sentences about {{ topic }}.", output: text,
     max_tokens: 90, temperature: 0.8}
"""


@pytest.mark.slow
def test_watermarked_run_is_detected_labelled_and_keyless(tmp_path: Path):
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    topics = ["the ocean", "mountain trains", "baking bread", "old libraries"]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"topic": t}) + "\n" for t in topics))
    env = {"SYNTHLOOM_WM_KEY": KEY, "OMP_WAIT_POLICY": "PASSIVE"}
    out = tmp_path / "run"
    spec = "embedded?watermark_key_env=SYNTHLOOM_WM_KEY&n_threads=1&n_slots=4&n_ctx=4096"
    res = run_cli("run", str(tmp_path / "recipe.yaml"), "--input", str(tmp_path / "in.jsonl"),
                  "--out", str(out), "--model", f"generator={spec}", env=env)
    assert res.returncode == 0, res.stderr
    stats = json.loads((out / "stats.json").read_text())
    key_id = stats["label"]["watermark_key_id"]
    assert key_id and len(key_id) == 8
    # detection with the same key
    det = run_cli("detect", str(out / "data" / "train.jsonl"), "--key-id", key_id, "--column", "text",
                  "--min-tokens", "20", env=env)
    assert det.returncode == 0, det.stderr
    summary = json.loads(det.stdout.strip().splitlines()[-1])
    assert summary["watermarked"] >= 3, summary
    # provenance names the key id on every row, and the key itself is nowhere in the run directory
    prov = run_cli("provenance", str(out / "data" / "train.parquet"))
    assert prov.returncode == 0 and key_id in prov.stdout
    for f in out.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f"key leaked into {f}"
