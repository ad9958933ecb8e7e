"""Budgets and dry runs through the real CLI against a real local HTTP server."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import read_jsonl, run_cli
from tests.fakes.openai_server import FakeOpenAIServer

RECIPE = """
name: budgeted
shard_size: 2
steps:
  - {type: model, name: ask, prompt: "Ask about {{ topic }} number {{ n }}", output: question}
  - {type: model, name: answer, prompt: "Answer: {{ question }}", output: answer}
"""


def setup(folder: Path, n: int = 24) -> tuple[Path, Path]:
    recipe = folder / "recipe.yaml"
    recipe.write_text(RECIPE)
    data = folder / "in.jsonl"
    data.write_text("".join(json.dumps({"topic": f"t{i}", "n": i}) + "\n" for i in range(n)))
    return recipe, data


def env() -> dict:
    return {"OPENAI_API_KEY": "", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def test_token_budget_stops_then_resumes_with_zero_duplicate_calls(tmp_path: Path):
    recipe, data = setup(tmp_path)
    out = tmp_path / "run"
    with FakeOpenAIServer(delay=0.02) as server:
        base = ["run", str(recipe), "--input", str(data), "--out", str(out), "--shards-in-flight", "1",
                "--model", f"generator=openai:{server.url}#fake"]
        first = run_cli(*base, "--max-tokens-total", "60", env=env())
        assert first.returncode == 3, first.stderr
        assert "token budget reached" in first.stderr and "resume" in first.stderr
        partial = read_jsonl(out / "data" / "train.jsonl")
        stats = json.loads((out / "stats.json").read_text())
        assert stats["complete"] is False and len(partial) < 24
        paid = sum(u["prompt_tokens"] + u["completion_tokens"] for u in stats["usage"].values())
        assert paid >= 60 and server.received < 48  # stopped near the cap, long before the end
        second = run_cli(*base, "--max-tokens-total", "100000", env=env())
        assert second.returncode == 0, second.stderr
        assert len(read_jsonl(out / "data" / "train.jsonl")) == 24
        assert max(server.by_fingerprint.values()) == 1 and server.received == 48


def test_dry_run_estimates_and_its_calls_are_not_paid_again(tmp_path: Path):
    recipe, data = setup(tmp_path, n=30)
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        base = ["run", str(recipe), "--input", str(data), "--out", str(out),
                "--model", f"generator=openai:{server.url}#fake"]
        prices = tmp_path / "prices.yaml"
        prices.write_text("fake: {prompt: 1.0, completion: 2.0}\n")
        dry = run_cli(*base, "--dry-run", "--prices", str(prices), env=env())
        assert dry.returncode == 0, dry.stderr
        assert "estimated:" in dry.stdout and "30 input rows" in " ".join(dry.stdout.split())
        assert not (out / "data").exists()  # a dry run writes no dataset
        calibration_calls = server.received
        assert 0 < calibration_calls <= 6
        real = run_cli(*base, "--prices", str(prices), env=env())
        assert real.returncode == 0, real.stderr
        assert server.received == 60 and max(server.by_fingerprint.values()) == 1
    estimate_line = next(line for line in dry.stdout.splitlines() if line.startswith("estimated:"))
    estimated_tokens = int(estimate_line.split()[1])
    stats = json.loads((out / "stats.json").read_text())
    actual = sum(u["prompt_tokens"] + u["completion_tokens"] + u.get("cached_tokens", 0)
                 for u in stats["usage"].values())
    assert 0.7 * actual <= estimated_tokens <= 1.3 * actual
    assert os.path.exists(out / "cache.sqlite")


def test_ctrl_c_stops_gracefully_and_the_run_resumes(tmp_path: Path):
    import signal
    import subprocess
    import sys
    import time

    recipe, data = setup(tmp_path, n=40)
    out = tmp_path / "run"
    with FakeOpenAIServer(delay=0.05) as server:
        cmd = [sys.executable, "-m", "synthloom.cli", "run", str(recipe), "--input", str(data), "--out", str(out),
               "--shards-in-flight", "1", "--model", f"generator=openai:{server.url}#fake", "--no-report"]
        proc = subprocess.Popen(cmd, env={**os.environ, **env()}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 120
        while len(list(out.glob("steps/*-answer/part-*.parquet"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "interrupted" in err and "resume" in err
        partial = read_jsonl(out / "data" / "train.jsonl")  # a valid dataset of the finished rows
        assert 0 < len(partial) < 40
        again = run_cli("run", str(recipe), "--input", str(data), "--out", str(out), "--shards-in-flight", "1",
                        "--model", f"generator=openai:{server.url}#fake", "--no-report", env=env())
        assert again.returncode == 0, again.stderr
        assert len(read_jsonl(out / "data" / "train.jsonl")) == 40
        assert max(server.by_fingerprint.values()) == 1 and server.received == 80


def one_step(folder: Path, shard_size: int, rows: int, url: str) -> list[str]:
    """A one-step recipe over `rows` inputs, two requests at a time: the CLI arguments to run it."""
    recipe = folder / "one.yaml"
    recipe.write_text(f"name: one\nshard_size: {shard_size}\nsteps:\n"
                      "  - {type: model, name: ask, prompt: 'Ask about {{ topic }} number {{ n }}', output: q}\n")
    _, data = setup(folder, n=rows)
    spec = f"generator=openai:{url}#fake?max_concurrency=2&min_concurrency=1"
    return ["run", str(recipe), "--input", str(data), "--out", str(folder / "run"), "--no-report",
            "--shards-in-flight", "1", "--model", spec]


def kill_9_after(cmd: list[str], server: FakeOpenAIServer, received: int) -> None:
    """Start the CLI and kill -9 it once the server has received `received` requests."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "synthloom.cli", *cmd], env={**os.environ, **env()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while server.received < received and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before the planned kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_after_kill_9_the_answers_the_killed_process_paid_for_count_as_paid(tmp_path: Path):
    """The cache's usage ledger: the resumed run counts every answer once, as paid (not cached),
    whichever of its processes paid for it."""
    out = tmp_path / "run"
    with FakeOpenAIServer(delay=0.05) as server:
        cmd = one_step(tmp_path, 100, 30, server.url)
        kill_9_after(cmd, server, 12)
        assert not (out / "stats.json").exists()  # killed before its one shard finished
        resumed = run_cli(*cmd, env=env())
        assert resumed.returncode == 0, resumed.stderr
        billed = server.received
    stats = json.loads((out / "stats.json").read_text())
    usage, cache, ledger = stats["usage"]["openai:fake"], stats["cache"]["openai:fake"], stats["ledger"]["openai:fake"]
    assert usage["requests"] == 30 and usage["cached_requests"] == 0  # all paid by this run, none "cached"
    assert cache["reclaimed"] >= 8 and cache["misses"] + cache["reclaimed"] == 30
    assert ledger["requests"] == 30
    assert ledger["prompt_tokens"] + ledger["completion_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 30 <= billed <= 30 + 2  # the server billed at most the two requests in flight at the kill twice
    # a third process finds nothing to do and counts nothing twice
    assert run_cli(*cmd, env=env()).returncode == 0
    again = json.loads((out / "stats.json").read_text())
    assert again["usage"] == stats["usage"] and again["ledger"] == stats["ledger"]


def test_the_budget_counts_what_a_killed_process_paid_for(tmp_path: Path):
    # 2 shards of 20; killed after ~12 answers of shard 0. Resumed with a 150-token budget: shard 0 is
    # 20 paid answers (~240 tokens) whichever process paid, so the run stops before shard 1. Counting
    # the killed process's answers as cached would see only the ~8 new ones (~100 tokens) and go on.
    out = tmp_path / "run"
    with FakeOpenAIServer(delay=0.05) as server:
        cmd = one_step(tmp_path, 20, 40, server.url)
        kill_9_after(cmd, server, 12)
        resumed = run_cli(*cmd, "--max-tokens-total", "150", env=env())
        assert resumed.returncode == 3 and "token budget reached" in resumed.stderr, resumed.stderr
        assert server.received <= 20 + 2  # shard 1 was never sent
    stats = json.loads((out / "stats.json").read_text())
    ask = next(step for step in stats["funnel"] if step["step"] == "ask")
    assert ask["rows_in"] == 20 and stats["usage"]["openai:fake"]["cached_requests"] == 0
