import json

import pyarrow as pa
import pyarrow.parquet as pq
import typer
from typer.testing import CliRunner

from synthloom.quality.benchmarks_data import load_humaneval
from synthloom.quality.commands import register

app = typer.Typer()
register(app)
runner = CliRunner()


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_dedup_minhash_writes_kept_rows(tmp_path):
    base = ("the quick brown fox jumps over the lazy dog while the farmer watches from the old barn door "
            "and the children play in the field near the river until the sun sets behind the hills")
    rows = [{"text": base}, {"text": base.replace("hills", "mountains")},
            {"text": "an unrelated line about databases and indexes"}, {"text": base.upper()}]
    src = tmp_path / "d.jsonl"
    _write_jsonl(src, rows)
    res = runner.invoke(app, ["dedup", str(src)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["kept"] == 2 and summary["settings"]["num_perm"] == 256
    kept = [json.loads(line)["text"] for line in (tmp_path / "d.dedup.jsonl").read_text().splitlines()]
    assert kept == [rows[0]["text"], rows[2]["text"]]


def test_decontam_parquet_with_humaneval(tmp_path):
    he = load_humaneval()
    src = tmp_path / "s.parquet"
    pq.write_table(pa.table({"q": ["Write a haiku about spring.", he[10].text, "Sort a list."]}), src)
    res = runner.invoke(app, ["decontam", str(src), "--benchmark", "humaneval", "--column", "q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["contaminated"] == 1
    assert pq.read_table(tmp_path / "s.clean.parquet").column("q").to_pylist() == ["Write a haiku about spring.", "Sort a list."]
    report = json.loads((tmp_path / "s.decontam.json").read_text())
    assert report["benchmarks"]["humaneval"]["ngram"][0]["item"] == "HumanEval/10"


def test_diversity_summary(tmp_path):
    src = tmp_path / "d.jsonl"
    _write_jsonl(src, [{"text": t} for t in ["a b c", "a b d", "x y z w"]])
    res = runner.invoke(app, ["diversity", str(src), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output.strip().splitlines()[-1])
    assert rep["distinct_1"] == 8 / 10 and json.loads((tmp_path / "r.json").read_text()) == rep


def test_bad_input_is_one_line_exit_2(tmp_path):
    src = tmp_path / "d.jsonl"
    _write_jsonl(src, [{"body": "x"}])
    for args in (["dedup", str(src)], ["dedup", str(tmp_path / "missing.jsonl")],
                 ["decontam", str(src), "-b", "nosuchbench", "-c", "body"],
                 ["dedup", str(src), "-c", "body", "--method", "fuzzy"],
                 ["perplexity", str(src), "-c", "body", "-m", "openai:http://127.0.0.1:9/v1#m"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert "Traceback" not in res.output and res.output.strip().startswith("error:")


def test_perplexity_scores_every_row_and_keeps_those_within_bounds(tmp_path):
    src = tmp_path / "p.jsonl"
    texts = ["The cat sat on the mat.", "mat the on sat cat The zq", "", "I drink a cup of tea every morning."]
    _write_jsonl(src, [{"text": t, "id": i} for i, t in enumerate(texts)])
    res = runner.invoke(app, ["perplexity", str(src)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["rows"] == 4 and summary["scored"] == 3 and summary["kept"] == 4
    every = [json.loads(line) for line in (tmp_path / "p.ppl.jsonl").read_text().splitlines()]
    ppl = {r["id"]: r["perplexity"] for r in every}
    assert ppl[2] is None and ppl[1] > 10 * max(ppl[0], ppl[3])  # word salad is far less expected

    res = runner.invoke(app, ["perplexity", str(src), "--max", str(max(ppl[0], ppl[3]) * 2), "-o", str(tmp_path / "k.jsonl")])
    assert res.exit_code == 0, res.output
    kept = [json.loads(line)["id"] for line in (tmp_path / "k.jsonl").read_text().splitlines()]
    assert kept == [0, 3]
