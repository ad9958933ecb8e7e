"""Fidelity measures on constructed cases whose answer is known, with real MiniLM embeddings."""

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from synthloom.audit.commands import AUDIT_FAILED_EXIT, register
from synthloom.audit.embedcache import CachedEmbedder
from synthloom.audit.fidelity import c2st_auc, fidelity_audit, precision_recall
from tests.audit_texts import domain, shuffled

N = 160
app = typer.Typer()
register(app)
runner = CliRunner()


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    emb = CachedEmbedder(path=tmp_path_factory.mktemp("cache") / "e.sqlite", precision="fp32")  # the reference
    real = domain("cooking", N, 0)
    texts = {"real": real, "shuffle": shuffled(real, 1), "fresh": domain("cooking", N, 2),
             "template": [real[0]] * N, "other": domain("finance", N, 3)}
    vecs = {k: emb.encode(v) for k, v in texts.items()}
    return texts, vecs, emb


def _status(result):
    return {c["name"]: c["status"] for c in result["checks"]}


def _audit(sets, name):
    texts, vecs, _ = sets
    return fidelity_audit(texts["real"], texts[name], vecs["real"], vecs[name])


def test_shuffle_of_itself_is_indistinguishable(sets):
    r = _audit(sets, "shuffle")
    m = r["measures"]
    assert m["mauve"] > 0.95 and m["precision"] == 1.0 and m["recall"] == 1.0
    assert abs(m["c2st_auc"] - 0.5) < 0.05
    assert set(_status(r).values()) == {"passed"}
    assert m["clusters"]["unreached"] == [] and m["lengths"]["ks"] == 0.0


def test_fresh_sample_of_the_same_domain_passes(sets):
    r = _audit(sets, "fresh")
    assert r["measures"]["mauve"] > 0.8 and r["measures"]["c2st_auc"] < 0.65
    assert set(_status(r).values()) == {"passed"}


def test_one_repeated_template_has_precision_but_no_recall(sets):
    r = _audit(sets, "template")
    m = r["measures"]
    assert m["precision"] == 1.0 and m["recall"] < 0.05  # inside the real manifold, covering almost none of it
    assert m["mauve"] < 0.2 and m["c2st_auc"] > 0.95
    assert m["clusters"]["real_share_unreached"] > 0.5
    s = _status(r)
    assert s["recall"] == s["mauve"] == s["c2st_auc"] == s["real_share_unreached"] == "failed"


def test_another_domain_fails_everything_and_names_the_missing_topics(sets):
    r = _audit(sets, "other")
    m = r["measures"]
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["c2st_auc"] > 0.99 and m["mauve"] < 0.1
    assert set(_status(r).values()) == {"failed"}
    unreached = m["clusters"]["unreached"]
    assert unreached and all(any(w in u["example"] for w in ("Simmer", "Roast", "Chop", "Whisk", "Bake", "Grill",
                                                              "Season", "Fry")) for u in unreached)
    assert m["clusters"]["synthetic_share_without_real"] > 0.9
    assert m["vocabulary"]["real_vocabulary_covered"] < 0.1


def test_precision_recall_and_auc_on_points_with_known_geometry():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:2].repeat(150, axis=0)  # two far-apart modes, 150 real points each
    a = centres + 0.05 * rng.normal(size=centres.shape)
    a = (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)
    one_mode = a[:150] + 0.01 * rng.normal(size=(150, 8)).astype(np.float32)
    one_mode /= np.linalg.norm(one_mode, axis=1, keepdims=True)
    p, r = precision_recall(a, one_mode)  # mode collapse: every synthetic point is real-looking, half is missing
    assert p > 0.95 and 0.45 < r < 0.55
    assert c2st_auc(a, a[::-1].copy()) == pytest.approx(0.5, abs=0.02)


def test_embedding_cache_serves_repeats_by_content_hash(sets, tmp_path):
    texts, vecs, emb = sets
    before = emb.misses
    again = emb.encode(texts["real"][:50] + ["a sentence never embedded before"])
    assert emb.misses == before + 1
    np.testing.assert_allclose(again[:50], vecs["real"][:50], atol=1e-6)
    reopened = CachedEmbedder(inner=emb.inner, path=emb.path, precision="fp32")
    reopened.encode(texts["other"][:20])
    assert reopened.misses == 0 and reopened.hits == 20


def _write(path, texts, column="text"):
    path.write_text("".join(json.dumps({column: t}) + "\n" for t in texts))
    return path


def test_cli_exit_codes_gate_on_fidelity(sets, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHLOOM_CACHE_DIR", str(tmp_path / "cache"))
    texts, _, _ = sets
    ref = _write(tmp_path / "real.jsonl", texts["real"], "q")
    good = _write(tmp_path / "good.jsonl", texts["shuffle"])
    bad = _write(tmp_path / "bad.jsonl", texts["other"])
    ok = runner.invoke(app, ["audit", str(good), "--reference", str(ref), "--reference-column", "q", "--no-pii"])
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.stdout.strip().splitlines()[-1])
    assert summary["passed"] is True
    saved = json.loads((tmp_path / "good.audit.json").read_text())
    assert saved["fidelity"]["precision"] == 1.0 and saved["embeddings"]["computed"] == len(set(texts["real"]))
    failed = runner.invoke(app, ["audit", str(bad), "-r", str(ref), "--reference-column", "q", "--no-pii",
                                 "--no-mauve", "-t", "c2st_auc_max=0.999", "--sample", "100"])
    assert failed.exit_code == AUDIT_FAILED_EXIT
    assert set(json.loads(failed.stdout.strip().splitlines()[-1])["failed"]) >= {"precision", "recall", "c2st_auc"}
    saved = json.loads((tmp_path / "bad.audit.json").read_text())  # the reference came from the cache this time
    assert saved["fidelity"]["rows"] == {"real": 100, "synthetic": 100} and saved["fidelity"]["mauve"] is None
    assert 0 < saved["embeddings"]["computed"] <= 100 and saved["embeddings"]["cached"] == 100  # only the sample


def test_cli_bad_input_is_one_line(tmp_path):
    src = _write(tmp_path / "d.jsonl", ["a", "b"])
    res = runner.invoke(app, ["audit", str(src), "--column", "nope"])
    assert res.exit_code == 2 and "column 'nope' missing" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["audit", str(src), "-t", "mauve=0.3"])
    assert res.exit_code == 2 and "unknown audit threshold 'mauve'" in res.output


def test_int8_embeddings_are_cached_apart_and_reach_the_same_verdicts(sets):
    texts, vecs, emb = sets
    fast = CachedEmbedder(path=emb.path, precision="int8")
    real, other = fast.encode(texts["real"][:120]), fast.encode(texts["other"][:120])
    assert fast.misses == len(set(texts["real"][:120])) + len(set(texts["other"][:120]))  # no fp32 vector reused
    assert float(np.mean(np.sum(real * vecs["real"][:120], axis=1))) > 0.85
    r = fidelity_audit(texts["real"][:120], texts["other"][:120], real, other, use_mauve=False)
    assert {c["status"] for c in r["checks"] if c["value"] is not None} == {"failed"}
    with pytest.raises(Exception, match="fp32 or int8"):
        CachedEmbedder(path=emb.path, precision="fp16")


def test_a_handful_of_rows_is_measured_but_not_judged(sets):
    texts, vecs, _ = sets
    r = fidelity_audit(texts["real"][:20], texts["other"][:20], vecs["real"][:20], vecs["other"][:20], use_mauve=False)
    assert r["measures"]["precision"] == 0.0  # measured: another domain
    assert {c["status"] for c in r["checks"]} == {"unknown"} and "fewer than 50 rows" in r["checks"][1]["evidence"]
