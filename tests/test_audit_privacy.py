"""Privacy audit: PII redaction (Presidio, offline), leakage of private seeds, canaries on the embedded model."""

import asyncio
import json
import random

import pytest
import typer
from typer.testing import CliRunner

from synthloom.audit.canary import canary_exposure, make_canaries, plant_canaries
from synthloom.audit.commands import AUDIT_FAILED_EXIT, register
from synthloom.audit.embedcache import CachedEmbedder
from synthloom.audit.leakage import leakage_audit, longest_common_span
from synthloom.audit.pii import PiiRedactor
from synthloom.pipeline.step import StepContext, apply_step, build_step

app = typer.Typer()
register(app)
runner = CliRunner()

PII_TEXT = ("Reach Dana at dana.reyes@example.com or +1 (415) 555-0132; card 4111 1111 1111 1111, "
            "IBAN GB82 WEST 1234 5698 7654 32, SSN 219-09-9999, server 10.20.30.40.")


@pytest.fixture(scope="module")
def redactor():
    return PiiRedactor()


def test_pattern_recognisers_redact_every_identifier(redactor):
    red = redactor.redact(PII_TEXT)
    assert {e["type"] for e in red.entities} == {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE",
                                                 "US_SSN", "IP_ADDRESS"}
    for secret in ("dana.reyes@", "555-0132", "4111", "GB82", "219-09", "10.20.30.40"):
        assert secret not in red.text
    assert red.text.startswith("Reach Dana at <EMAIL_ADDRESS>")


def test_lookalikes_without_valid_checksums_are_left_alone(redactor):
    text = "Order 4111 1111 1111 1112 shipped; the IBAN GB00 WEST 1234 5698 7654 32 is a typo; pH is 7.4."
    red = redactor.redact(text)  # the card fails Luhn, the IBAN its mod-97 check
    assert red.entities == [] and red.text == text


def test_redact_pii_step_lists_found_types_per_row(redactor):
    step = build_step({"type": "redact_pii", "columns": ["a", "b"]})
    rows = [{"a": PII_TEXT, "b": "mail me: x.y@example.org"}, {"a": "nothing to see", "b": None}]
    kept, rejected = asyncio.run(apply_step(step, rows, StepContext(0, "t", "redact", 0)))
    assert not rejected and kept[1] == {"a": "nothing to see", "b": None, "pii_found": []}
    assert "EMAIL_ADDRESS" in kept[0]["pii_found"] and kept[0]["b"] == "mail me: <EMAIL_ADDRESS>"


def test_redact_pii_cli_counts_by_type(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"text": PII_TEXT}) + "\n" + json.dumps({"text": "call 212-555-0199 now"}) + "\n")
    res = runner.invoke(app, ["redact-pii", str(src)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["rows_with_pii"] == 2 and summary["by_type"]["PHONE_NUMBER"] == 2
    out = [json.loads(x) for x in (tmp_path / "d.redacted.jsonl").read_text().splitlines()]
    assert out[1]["text"] == "call <PHONE_NUMBER> now"
    bad = runner.invoke(app, ["redact-pii", str(src), "-e", "PERSON"])  # needs NER, which runs only with a model
    assert bad.exit_code == 2 and "unknown PII entity type(s) PERSON" in bad.output


def _records(n, seed):
    rng = random.Random(seed)
    first = ["Amara", "Bogdan", "Chiara", "Dmitri", "Esther", "Farid", "Greta", "Hiroshi", "Ines", "Jonas"]
    cond = ["asthma", "a fractured wrist", "type 2 diabetes", "migraine", "pneumonia", "a kidney stone"]
    return [f"{rng.choice(first)} {rng.choice('ABCDEFGHJKLM')}., aged {rng.randint(20, 90)}, was seen at "
            f"{rng.choice(['North', 'Riverside', 'St Anne', 'Hillcrest'])} clinic on day {rng.randint(1, 365)} with "
            f"{rng.choice(cond)} and was given {rng.choice(['rest', 'antibiotics', 'a cast', 'insulin', 'fluids'])} "
            f"for {rng.randint(2, 30)} days by doctor {rng.choice(first)}." for _ in range(n)]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return CachedEmbedder(path=tmp_path_factory.mktemp("cache") / "e.sqlite")


def _leakage(embedder, synth, seeds):
    return leakage_audit(synth, seeds, embedder.encode(synth), embedder.encode(seeds))


def test_fresh_records_do_not_count_as_leaks(embedder):
    seeds, fresh = _records(80, 0), _records(80, 1)
    r = _leakage(embedder, fresh, seeds)
    m, status = r["measures"], {c["name"]: c["status"] for c in r["checks"]}
    assert m["share_closer_than_seeds"] <= 0.1 and m["share_verbatim"] == 0.0
    assert status == {"share_closer_than_seeds": "passed", "share_verbatim": "passed"}


def test_copied_and_lightly_edited_seeds_fail(embedder):
    seeds = _records(80, 0)
    leaked = seeds[:20] + [s.replace("was seen at", "visited") for s in seeds[20:40]] + _records(40, 1)
    r = _leakage(embedder, leaked, seeds)
    m, status = r["measures"], {c["name"]: c["status"] for c in r["checks"]}
    assert m["share_closer_than_seeds"] >= 0.45 and 0.25 <= m["share_verbatim"] < 0.45  # edits break the spans
    assert m["ngram_jaccard"]["max"] > 0.6 and m["nndr"]["min"] < 0.2
    assert status == {"share_closer_than_seeds": "failed", "share_verbatim": "failed"}
    assert m["closest_pairs"][0]["span_words"] >= 20


def test_longest_common_span_counts_words():
    assert longest_common_span("a b c d e f", "x c d e y") == 3
    assert longest_common_span("", "anything") == 0


def test_canaries_are_unique_found_through_separator_changes_and_gate():
    secrets = make_canaries(4, seed=7)
    assert len(set(secrets)) == 4 and all(len(s) == 14 for s in secrets)
    texts = [f"the code is {secrets[0].replace('-', ' ')}", f"copied {secrets[1].lower()}", "nothing here"]
    r = canary_exposure(texts, secrets)
    assert r["measures"]["exposed"] == 2 and r["checks"][0]["status"] == "failed"
    assert canary_exposure(["clean text"], secrets)["checks"][0]["status"] == "passed"
    planted, again = plant_canaries([{"t": "x"}, {"t": "y"}], "t", 2, seed=7)
    assert again == make_canaries(2, seed=7) and all(s in row["t"] for s, row in zip(again, planted))


def test_plant_canaries_cli_writes_seeds_and_the_secrets_file(tmp_path):
    src = tmp_path / "s.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in _records(6, 0)))
    res = runner.invoke(app, ["plant-canaries", str(src), "-n", "3", "--seed", "5"])
    assert res.exit_code == 0, res.output
    secrets = (tmp_path / "s.canaries.txt").read_text().split()
    rows = [json.loads(x)["text"] for x in (tmp_path / "s.canaries.jsonl").read_text().splitlines()]
    assert secrets == make_canaries(3, seed=5) and sum(any(s in r for s in secrets) for r in rows) == 3
    assert runner.invoke(app, ["plant-canaries", str(src), "-n", "0"]).exit_code == 2


@pytest.mark.slow
async def test_canaries_planted_in_seeds_surface_through_a_copying_recipe(tmp_path):
    """Plant secrets in private seeds, run a recipe on the embedded model, audit the output."""
    from synthloom.audit.steps import AuditFailed
    from synthloom.llm.embedded import EmbeddedModel
    from synthloom.pipeline.model_step import ModelStep
    from synthloom.pipeline.pipeline import Pipeline
    from synthloom.run.runner import RunOptions, run_pipeline_async
    from synthloom.audit.steps import TrustAuditStep

    seeds, secrets = plant_canaries([{"text": t} for t in _records(4, 3)], "text", 2, seed=11)
    seed_file = tmp_path / "seeds.jsonl"
    seed_file.write_text("".join(json.dumps(r) + "\n" for r in seeds))
    from synthloom.llm.cache import CachedModel, RequestCache

    # the second run (fail_run) is served from the request cache: same outputs, no second generation
    model = CachedModel(EmbeddedModel(n_slots=4, n_ctx=2048, n_threads=1), RequestCache(tmp_path / "cache.sqlite"))

    def pipeline(fail_run):
        return Pipeline("copy", [
            ModelStep(name="rewrite", prompt="Repeat this note exactly.\nNote: {{ text }}\nRepeated note:",
                      output="rewritten", temperature=0.0, max_tokens=80),
            TrustAuditStep(name="audit", column="rewritten", private_seeds=str(seed_file), seed_column="text",
                           canaries=secrets,
                           bias=False, fail_run=fail_run),
        ])

    result = await run_pipeline_async(pipeline(False), RunOptions(out=tmp_path / "run", input_path=seed_file, report=False),
                                      models={"generator": model})
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    outputs = [r["rewritten"] for r in result.rows]
    surfaced = [s for s in secrets if any(s.replace("-", "") in o.replace("-", "").replace(" ", "").upper() for o in outputs)]
    assert audit["canaries"]["exposed"] == len(surfaced)
    status = {c["name"]: c["status"] for c in audit["checks"]}
    assert status["canary_exposure"] == ("failed" if surfaced else "passed")
    assert audit["privacy"]["share_verbatim"] > 0  # a copying recipe also shows as verbatim seed spans
    assert surfaced, f"a 135M model told to repeat its input should copy at least one canary: {outputs}"
    with pytest.raises(AuditFailed, match="canary_exposure"):
        await run_pipeline_async(pipeline(True), RunOptions(out=tmp_path / "run2", input_path=seed_file, report=False),
                                 models={"generator": model})
    # the same outputs audited from the command line fail with exit code 4
    res = runner.invoke(app, ["audit", str(tmp_path / "run"), "-c", "rewritten", "--no-bias",
                              "--private-seeds", str(seed_file), "--seed-column", "text",
                              "--canaries", str(_write_lines(tmp_path / "c.txt", secrets))])
    assert res.exit_code == AUDIT_FAILED_EXIT, res.output


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pii_detection_never_reaches_for_the_network(tmp_path):
    import subprocess
    import sys

    code = ("import tldextract\n"  # imported first, as another library might: its extractor already exists
            "from synthloom.audit.pii import PiiRedactor\n"
            "print(PiiRedactor().redact('write to ana.m@example.co.uk').text)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-1500:]
    assert res.stdout.strip() == "write to <EMAIL_ADDRESS>"
    assert "publicsuffix" not in res.stderr and "ConnectionError" not in res.stderr, res.stderr[-1500:]


def test_the_yaml_example_in_the_docs_builds(tmp_path):
    import re
    from pathlib import Path

    from synthloom.pipeline.pipeline import pipeline_from_yaml

    doc = (Path(__file__).resolve().parent.parent / "docs" / "audit.md").read_text()
    steps = re.search(r"```yaml\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "r.yaml").write_text("name: audited\nmodels: {generator: embedded}\n" + steps)
    pipeline = pipeline_from_yaml(tmp_path / "r.yaml")
    assert [s.type_name for s in pipeline.steps][:3] == ["redact_pii", "model", "trust_audit"]
    assert pipeline.steps[2].thresholds == {"mauve_min": 0.6}
