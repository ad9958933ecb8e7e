"""Sharded runs without Ray (`synthloom run --shard I/N`, e.g. Slurm array tasks) and `synthloom merge`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import read_jsonl, run_cli

RECIPE = """
name: sharded
steps:
  - {type: filter_length, name: len, column: text, min: 12}
  - {type: template, name: label, output: label, template: "{{ text | upper }}"}
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    rows = [{"text": f"row {i} " + "word " * (i % 5)} for i in range(40)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def run(workdir: Path, out: str, *extra: str):
    return run_cli("run", str(workdir / "recipe.yaml"), "--input", str(workdir / "in.jsonl"),
                   "--out", str(workdir / out), "--no-report", *extra)


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["_meta"]["id"]: {k: v for k, v in r.items() if k != "_meta"} for r in rows}


def test_shards_merge_into_the_unsharded_dataset(workdir: Path):
    assert run(workdir, "whole").returncode == 0
    whole = read_jsonl(workdir / "whole" / "data" / "train.jsonl")
    for i in range(3):
        res = run(workdir, f"s{i}", "--shard", f"{i}/3")
        assert res.returncode == 0, res.stderr
    shard_ids = [set(by_id(read_jsonl(workdir / f"s{i}" / "data" / "train.jsonl"))) for i in range(3)]
    assert all(shard_ids) and not (shard_ids[0] & shard_ids[1] or shard_ids[1] & shard_ids[2] or shard_ids[0] & shard_ids[2])

    res = run_cli("merge", *(str(workdir / f"s{i}") for i in (2, 0, 1)), "--out", str(workdir / "merged"))
    assert res.returncode == 0, res.stderr
    merged_dir = workdir / "merged"
    merged = read_jsonl(merged_dir / "data" / "train.jsonl")
    assert by_id(merged) == by_id(whole) and len(merged) == len(whole)
    assert pq.read_table(merged_dir / "data" / "train.parquet").num_rows == len(whole)
    stats = json.loads((merged_dir / "stats.json").read_text())
    whole_stats = json.loads((workdir / "whole" / "stats.json").read_text())
    strip = [{k: s[k] for k in ("step", "rows_in", "rows_out", "rejected")} for s in whole_stats["funnel"]]
    assert [{k: s[k] for k in ("step", "rows_in", "rows_out", "rejected")} for s in stats["funnel"]] == strip
    assert stats["complete"] and stats["shards"]["total"] == 3 and stats["rows"] == len(whole)
    assert list((merged_dir / "rejected" / "01-len").glob("shard-*.parquet"))
    assert (merged_dir / "README.md").is_file() and (merged_dir / "report.html").is_file()
    for name in ("train.jsonl", "train.parquet"):  # the synthetic-data label survives the merge
        assert run_cli("provenance", str(merged_dir / "data" / name)).returncode == 0

    before = (merged_dir / "data" / "train.jsonl").read_bytes()
    assert run_cli("merge", *(str(workdir / f"s{i}") for i in range(3)), "--out", str(merged_dir)).returncode == 0
    assert (merged_dir / "data" / "train.jsonl").read_bytes() == before  # merging again changes nothing


def test_merge_refuses_missing_repeated_or_foreign_shards(workdir: Path):
    for i in range(2):
        assert run(workdir, f"s{i}", "--shard", f"{i}/2").returncode == 0
    assert run(workdir, "other", "--shard", "1/2", "--seed", "9").returncode == 0
    cases = [
        ([workdir / "s0"], "missing shard(s) 1 of 2"),
        ([workdir / "s0", workdir / "s1", workdir / "s1"], "given twice"),
        ([workdir / "s0", workdir / "other"], "different seed"),
        ([workdir / "s0", workdir / "nowhere"], "not a run directory"),
    ]
    for dirs, needle in cases:
        res = run_cli("merge", *map(str, dirs), "--out", str(workdir / "m"))
        assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, (dirs, res.stderr)
    res = run_cli("merge", str(workdir / "s0"), str(workdir / "s1"), "--out", str(workdir / "s1"), "--overwrite")
    assert res.returncode == 2 and "one of the shards" in res.stderr
    assert (workdir / "s1" / "data" / "train.jsonl").is_file()  # nothing of the shard was touched


def test_bad_shard_options_are_one_line_errors(workdir: Path):
    for spec, needle in (("3/3", "0 <= I < N"), ("a/b", "I/N"), ("1", "I/N")):
        res = run(workdir, "bad", "--shard", spec)
        assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr
    assert run(workdir, "s", "--shard", "0/2").returncode == 0
    res = run(workdir, "s", "--shard", "1/2")  # same directory, other shard: not a resume
    assert res.returncode == 2 and "different shard" in res.stderr


def test_merge_can_drop_duplicates_that_landed_in_different_shards(tmp_path: Path):
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    # same text, different ids (the `n` field differs): hashed to different shards
    rows = [{"text": "the very same sentence", "n": i} for i in range(6)] + [{"text": f"unique text {i}"} for i in range(6)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for i in range(2):
        assert run(tmp_path, f"s{i}", "--shard", f"{i}/2").returncode == 0
    assert {r["text"] for r in read_jsonl(tmp_path / "s0" / "data" / "train.jsonl")} & \
        {r["text"] for r in read_jsonl(tmp_path / "s1" / "data" / "train.jsonl")}  # a cross-shard duplicate exists

    res = run_cli("merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m"),
                  "--dedup", "exact", "--dedup-column", "text")
    assert res.returncode == 0, res.stderr
    merged = read_jsonl(tmp_path / "m" / "data" / "train.jsonl")
    assert sorted(r["text"] for r in merged) == sorted({r["text"] for r in rows})
    assert pq.read_table(tmp_path / "m" / "data" / "train.parquet").num_rows == len(merged)
    stats = json.loads((tmp_path / "m" / "stats.json").read_text())
    last = stats["funnel"][-1]
    assert (last["step"], last["rows_out"], last["rejected"]) == ("merge_dedup", len(merged), {"duplicate": 5})
    rejected = pq.read_table(next((tmp_path / "m" / "rejected").glob("*-merge_dedup"))).to_pylist()
    assert len(rejected) == 5 and all("another shard" in r["detail"] for r in rejected)
    res = run_cli("merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m2"), "--dedup", "fuzzy")
    assert res.returncode == 2 and "exact or minhash" in res.stderr and not (tmp_path / "m2").exists()
