"""Shared test fixtures and helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # lets tests import tests.fakes


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `synthloom` CLI in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "synthloom.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(autouse=True)
def private_request_cache(tmp_path_factory, monkeypatch):
    """Commands outside a run directory share a request cache (~/.cache/synthloom by default): each
    test gets its own, so no test is answered from another's cache (or from the developer's)."""
    monkeypatch.setenv("SYNTHLOOM_CACHE", str(tmp_path_factory.mktemp("cache") / "requests.sqlite"))


# --- model-dependent tests under several seeds and thread counts ------------------------------------
# The embedded model's text differs from one CPU (and thread count) to another, so a test that
# passes here can fail on the next machine unless it asserts properties that hold for any text.
# Tests that take the `embedded_seed` / `embedded_threads` fixtures run once per value listed in
# SYNTHLOOM_TEST_SEEDS / SYNTHLOOM_TEST_THREADS (comma lists; defaults: seed 0, 1 thread) and carry
# the `embedded` marker, so such assumptions show before they land:
#
#     SYNTHLOOM_TEST_SEEDS=1,2,3 SYNTHLOOM_TEST_THREADS=1,2 pytest -m embedded

def env_ints(name: str, default: str) -> list[int]:
    raw = os.environ.get(name, "").strip() or default
    try:
        values = [int(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise pytest.UsageError(f"{name} must be a comma list of integers, not {raw!r}") from None
    if not values:
        raise pytest.UsageError(f"{name} is empty")
    return values


_EMBEDDED_AXES = {"embedded_seed": ("SYNTHLOOM_TEST_SEEDS", "0", "seed"),
                  "embedded_threads": ("SYNTHLOOM_TEST_THREADS", "1", "threads")}


def pytest_configure(config):
    config.addinivalue_line("markers", "embedded: runs the embedded model; repeat it with SYNTHLOOM_TEST_SEEDS "
                                       "and SYNTHLOOM_TEST_THREADS (comma lists)")


def pytest_generate_tests(metafunc):
    for fixture, (env, default, label) in _EMBEDDED_AXES.items():
        if fixture in metafunc.fixturenames:
            values = env_ints(env, default)
            if label == "threads" and any(v < 1 for v in values):
                raise pytest.UsageError(f"{env} values must be >= 1")
            metafunc.parametrize(fixture, values, ids=[f"{label}{v}" for v in values])


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in _EMBEDDED_AXES):
            item.add_marker(pytest.mark.embedded)
