"""The README's examples work as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from synthloom.pipeline.pipeline import pipeline_from_yaml

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_readme_yaml_recipe_builds_and_matches_the_python_example(tmp_path: Path):
    (tmp_path / "faq.yaml").write_text(blocks("yaml")[0])
    pipeline = pipeline_from_yaml(tmp_path / "faq.yaml")
    assert [s.name for s in pipeline.steps] == ["question", "length", "dedup", "answer", "format", "verdict_gate"]
    assert pipeline.model_roles() == {"generator"}


@pytest.mark.slow
def test_readme_python_example_runs_on_the_embedded_model(tmp_path: Path):
    code = blocks("python")[0].replace('max_tokens=200', 'max_tokens=48')
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={"OMP_WAIT_POLICY": "PASSIVE", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "runs" / "faq" / "data" / "train.parquet").exists()
    assert "'step': 'question'" in res.stdout
