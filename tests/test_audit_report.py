"""The audit in one place: `synthloom audit RUN_DIR` writes audit.json, the card's Audit section and report.html."""

import json

import pytest
import typer
from report_run import make_run
from typer.testing import CliRunner

from synthloom.report.audit_section import card_with_audit
from synthloom.audit.commands import AUDIT_FAILED_EXIT, register
from synthloom.io import read_rows
from synthloom.report.html import write_report

app = typer.Typer()
register(app)
runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "run"
    make_run(out)
    return out


def test_unaudited_report_says_so(run_dir):
    html = write_report(run_dir).read_text(encoding="utf-8")
    assert '<section id="audit">' in html and "Not audited." in html


def test_audit_of_a_run_directory_fills_card_and_report_then_a_failure_replaces_it(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHLOOM_CACHE_DIR", str(tmp_path / "cache"))
    outputs = [r["output"] for r in read_rows(run_dir / "data" / "train.jsonl")]
    ref = tmp_path / "real.jsonl"
    ref.write_text("".join(json.dumps({"output": t}) + "\n" for t in reversed(outputs)))
    ok = runner.invoke(app, ["audit", str(run_dir), "-c", "output", "--reference", str(ref), "--no-bias"])
    assert ok.exit_code == 0, ok.output
    audit = json.loads((run_dir / "audit.json").read_text())
    assert audit["passed"] and audit["fidelity"]["precision"] == 1.0
    card = (run_dir / "README.md").read_text()
    assert card.count("## Audit") == 1 and "**passed**" in card and "| fidelity | mauve |" in card
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Trust audit of" in html and "c2st_auc" in html and "Real vocabulary covered" in html

    canaries = tmp_path / "canaries.txt"
    canaries.write_text(outputs[0].split("]")[0].split("[")[1] + "\nZZZZ-QQQQ-XXXX\n")  # one surfaces, one not
    bad = runner.invoke(app, ["audit", str(run_dir), "-c", "output", "--canaries", str(canaries), "--no-bias"])
    assert bad.exit_code == AUDIT_FAILED_EXIT
    card = (run_dir / "README.md").read_text()
    assert card.count("## Audit") == 1 and "FAILED (canary_exposure)" in card and "| fidelity |" not in card
    assert card.index("## Yield funnel") < card.index("## Audit")  # the rest of the card is kept
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "failed: canary_exposure" in html and "Canaries: 1 of 2 surfaced" in html


def test_card_rendering_keeps_the_audit_and_drops_a_stale_one(tmp_path):
    card = "# t\n\n## Models\n\nx\n\n## Audit\n\nold\n\n## Tokens\n\ny\n"
    assert card_with_audit(card, tmp_path) == "# t\n\n## Models\n\nx\n\n## Tokens\n\ny\n"  # no audit.json: removed
    (tmp_path / "audit.json").write_text(json.dumps({"rows": 3, "passed": True, "failed": [], "checks": []}))
    assert card_with_audit(card, tmp_path).endswith("## Audit\n\nTrust audit of 3 rows: **passed**.\n\n"
                                                    "| area | check | value | limit | status |\n|---|---|---|---|---|\n\n"
                                                    "Methods and thresholds: see synthloom's docs/audit.md.\n")


def test_the_synthloom_command_exits_4_on_a_failed_audit_and_0_on_a_pass(tmp_path, cli):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"text": "the code is K7QX-M4PZ-9WTR"}) + "\n" + json.dumps({"text": "plain"}) + "\n")
    (tmp_path / "c.txt").write_text("K7QX-M4PZ-9WTR\n")
    args = ["audit", str(src), "--no-bias", "--no-pii", "--canaries", str(tmp_path / "c.txt")]
    failed = cli(*args)
    assert failed.returncode == AUDIT_FAILED_EXIT and json.loads(failed.stdout.splitlines()[-1])["failed"] == ["canary_exposure"]
    assert cli(*args, "-t", "canary_exposure_max=1").returncode == 0
    bad = cli("audit", str(tmp_path / "missing.jsonl"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "does not exist" in bad.stderr


def test_a_recipe_that_redacts_pii_shows_the_counts_in_its_report(tmp_path):
    import asyncio

    from synthloom.audit.steps import RedactPiiStep
    from synthloom.pipeline.pipeline import Pipeline, Source
    from synthloom.run.runner import RunOptions, run_pipeline_async

    rows = [{"text": "mail ana@example.org or call +1 415 555 0132"}, {"text": "mail bo@example.net"}, {"text": "none"}]
    pipeline = Pipeline("scrub", [RedactPiiStep(name="scrub", columns=["text"])], source=Source(rows=rows))
    result = asyncio.run(run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run")))
    assert [r["text"] for r in result.rows] == ["mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>", "mail <EMAIL_ADDRESS>", "none"]
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "PII redacted by the <code>redact_pii</code> step: 2 rows;" in html
    assert "EMAIL_ADDRESS 2, PHONE_NUMBER 1." in html and "Not audited." in html
