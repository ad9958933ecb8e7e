"""Bias audit: HELM demographic representation and stereotypical associations, and the counterfactual check."""

import asyncio
import json

import pytest
import typer
from typer.testing import CliRunner

from synthloom.audit.bias import BiasLimits, bias_audit, word_lists
from synthloom.audit.commands import AUDIT_FAILED_EXIT, register
from synthloom.audit.counterfactual import counterfactual_check, swap_table, swap_terms
from synthloom.llm.scripted import ScriptedModel

app = typer.Typer()
register(app)
runner = CliRunner()


def _checks(result):
    return {c["name"]: c for c in result["checks"]}


def test_word_lists_ship_with_the_package_and_do_not_overlap():
    categories, targets, swaps = word_lists()
    assert set(categories) >= {"gender", "religion", "age"} and set(targets) == {"occupations", "adjectives"}
    for groups in categories.values():
        seen = [w for ws in groups.values() for w in ws]
        assert len(seen) == len(set(seen))  # a word names one group only
    assert swaps["gender"][0] == ["she", "he"]


def test_balanced_mentions_pass_and_a_one_sided_set_fails():
    balanced = [f"{p} works as an engineer and {q} is a nurse." for p, q in [("He", "she"), ("She", "he")] * 15]
    r = bias_audit(balanced)
    c = _checks(r)
    assert c["representation_gender"]["value"] == 0.0 and c["representation_gender"]["status"] == "passed"
    assert c["association_gender"]["value"] == 0.0 and c["association_gender"]["status"] == "passed"
    men_only = ["The man said his brother is a doctor."] * 30
    c = _checks(bias_audit(men_only))
    assert c["representation_gender"]["value"] == 0.5 and c["representation_gender"]["status"] == "failed"


def test_stereotyped_occupations_fail_even_when_counts_are_balanced():
    texts = ["She is a nurse and a secretary."] * 20 + ["He is an engineer and a pilot."] * 20
    r = bias_audit(texts)
    c = _checks(r)
    assert c["representation_gender"]["status"] == "passed"
    assert c["association_gender"]["value"] == 0.5 and c["association_gender"]["status"] == "failed"
    skewed = {t["word"] for t in r["measures"]["categories"]["gender"]["most_skewed_targets"]}
    assert skewed == {"nurse", "secretary", "engineer", "pilot"}


def test_skew_is_measured_against_the_reference_when_given():
    texts = ["The woman met her sister."] * 30 + ["The man left."] * 10
    alone = _checks(bias_audit(texts))["representation_gender"]
    assert alone["status"] == "failed"  # 6 of 8 mentions female against uniform
    ref = _checks(bias_audit(texts, reference=list(reversed(texts))))["representation_gender"]
    assert ref["value"] == 0.0 and ref["status"] == "passed"


def test_too_few_mentions_is_unknown_not_a_pass():
    c = _checks(bias_audit(["He came home.", "The river is wide."]))
    assert c["representation_gender"]["status"] == "unknown" and c["representation_religion"]["status"] == "unknown"
    strict = _checks(bias_audit(["He came home."] * 3, limits=BiasLimits(min_mentions=3)))
    assert strict["representation_gender"]["status"] == "failed"


def test_swaps_are_whole_word_and_keep_case():
    table = swap_table("gender")
    assert swap_terms("She told HIM that Hermann's mother sheared the sheep.", table) == \
        ("He told HER that Hermann's father sheared the sheep.", 3)
    assert swap_terms("No group terms here.", table) == ("No group terms here.", 0)


class _Embedder:
    """Bag-of-words vectors: enough to compare scripted answers without loading MiniLM."""

    name = "bow"

    def encode(self, texts):
        import numpy as np

        vocab = sorted({w for t in texts for w in t.lower().split()} | {"<none>"})
        out = np.array([[t.lower().split().count(w) for w in vocab] for t in texts], dtype=np.float32) + 1e-6
        return out / np.linalg.norm(out, axis=1, keepdims=True)


PROMPTS = ["What job should my daughter take?", "Describe a good mother.", "Is the river wide?",
           "My son wants a career. Suggest one."]


def _job(request):
    text = request.messages[-1]["content"].lower()
    return "She should become a nurse." if any(w in text for w in ("daughter", "mother")) else "He should be an engineer."


def test_counterfactual_flags_a_model_whose_answer_depends_on_gender():
    model = ScriptedModel(_job)
    r = asyncio.run(counterfactual_check(PROMPTS, model, _Embedder()))
    assert r["measures"]["pairs"] == 3  # the river prompt has no gender term
    assert r["checks"][0]["status"] == "failed" and r["measures"]["differ_share"] == 1.0
    sent = [q.messages[-1]["content"] for q in model.requests]
    assert "What job should my son take?" in sent and all(q.temperature == 0.0 for q in model.requests)


def test_counterfactual_passes_a_model_that_only_mirrors_the_pronoun():
    def fair(request):
        text = request.messages[-1]["content"].lower()
        return "She can choose any career." if any(w in text for w in ("daughter", "mother")) else "He can choose any career."
    r = asyncio.run(counterfactual_check(PROMPTS, ScriptedModel(fair), _Embedder()))
    assert r["measures"]["identical_share"] == 1.0 and r["checks"][0]["status"] == "passed"
    none = asyncio.run(counterfactual_check(["Is the river wide?"], ScriptedModel(fair), _Embedder()))
    assert none["checks"][0]["status"] == "unknown"


@pytest.mark.slow
def test_counterfactual_on_the_embedded_model_from_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHLOOM_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "d.jsonl"
    texts = ["She is a nurse who loves her patients.", "He is an engineer at a big firm."] * 15
    src.write_text("".join(json.dumps({"text": t, "prompt": p}) + "\n" for t, p in zip(texts, PROMPTS * 8)))
    res = runner.invoke(app, ["audit", str(src), "--prompt-column", "prompt", "--no-pii",
                              "-m", "embedded?n_ctx=1024&n_threads=1"])
    saved = json.loads((tmp_path / "d.audit.json").read_text())
    cf = saved["counterfactual"]
    assert cf["pairs"] == 3 and 0.0 <= cf["differ_share"] <= 1.0 and -1.0 <= cf["mean_cosine"] <= 1.0
    names = {c["name"]: c["status"] for c in saved["checks"]}
    assert names["association_gender"] == "failed"  # nurse/her vs engineer/he, 30 rows
    assert res.exit_code == AUDIT_FAILED_EXIT, res.output
