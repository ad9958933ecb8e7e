"""Back-translation recipe: candidates, Gamma score maths (z-normalised per sentence), selection."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from typing import ClassVar

import pytest

from synthloom.alignment.gamma import (
    gamma_scores,
    importance,
    select,
    selection_probs,
    znorm,
)
from synthloom.errors import ConfigError
from synthloom.llm.base import ChatResponse, Choice, TokenLogprob, Usage
from synthloom.llm.scripted import ScriptedModel
from synthloom.pipeline.runner import RunOptions, run_pipeline_async
from synthloom.recipes import backtranslation as bt
from synthloom.recipes.bt_steps import (
    clean_translation,
    selected_set_report,
    text_logprob,
)

# -- Gamma maths -----------------------------------------------------------------------------------

def test_znorm_is_per_list_and_handles_constant_lists():
    z = znorm([1.0, 2.0, 3.0])
    assert z == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    assert statistics.fmean(z) == pytest.approx(0.0) and statistics.pstdev(z) == pytest.approx(1.0)
    assert znorm([4.2, 4.2]) == [0.0, 0.0] and znorm([7.0]) == [0.0] and znorm([]) == []


def test_importance_is_lm_minus_backward_log_prob_per_length():
    assert importance(-12.0, -20.0, 4) == pytest.approx(2.0)
    assert importance(-20.0, -12.0, 4) == pytest.approx(-2.0)
    with pytest.raises(ValueError):
        importance(-1.0, -1.0, 0)


def test_gamma_mixes_z_scores_so_the_weight_means_the_same_at_any_scale():
    quality, imp = [0.2, 0.5, 0.8], [3.0, -1.0, 1.0]
    g = gamma_scores(quality, imp, 0.2)
    expected = [0.2 * i + 0.8 * q for q, i in zip(znorm(quality), znorm(imp))]
    assert g == pytest.approx(expected)
    # z-normalisation within the list: rescaling or shifting one score leaves gamma unchanged
    assert gamma_scores([100 * q - 7 for q in quality], [0.01 * i for i in imp], 0.2) == pytest.approx(g)
    # raw mixing would let the larger-scale score dominate; here weight 0 / 1 pick one score alone
    assert gamma_scores(quality, imp, 0.0) == pytest.approx(znorm(quality))
    assert gamma_scores(quality, imp, 1.0) == pytest.approx(znorm(imp))
    with pytest.raises(ConfigError):
        gamma_scores(quality, imp, 1.5)


def test_selection_top1_and_seeded_gamma_sampling():
    g = [0.1, 1.2, -0.3]
    assert select(g, "top1") == 1 and select([0.5, 0.5], "top1") == 0
    assert select(g, "sample", seed=3) == select(g, "sample", seed=3)
    probs = selection_probs(g, temperature=1.0)
    expected = [math.exp(x) / sum(math.exp(y) for y in g) for x in g]
    assert probs == pytest.approx(expected)
    double = selection_probs(g, double_exp=True)
    e = [math.exp(x) for x in g]
    assert double == pytest.approx([math.exp(x) / sum(math.exp(y) for y in e) for x in e])
    counts = [0, 0, 0]
    for seed in range(3000):
        counts[select(g, "sample", seed=seed)] += 1
    assert [c / 3000 for c in counts] == pytest.approx(probs, abs=0.03)
    # lower temperature concentrates on the argmax
    assert selection_probs(g, temperature=0.1)[1] > 0.99
    with pytest.raises(ConfigError):
        select(g, "beam")


def test_candidate_text_and_its_log_probability():
    assert clean_translation('French: "Le chat dort."\nEnglish: The cat') == "Le chat dort."
    assert clean_translation("\n\n  Le train part.  ") == "Le train part."
    raw = "French: Le chat dort.\nnext"
    tokens = [TokenLogprob(t, lp) for t, lp in [("French", -1.0), (":", -0.5), (" Le", -0.25), (" chat", -0.5),
                                                 (" dort", -1.0), (".", -0.125), ("\n", -2.0), ("next", -3.0)]]
    assert text_logprob(tokens, raw, "Le chat dort.") == pytest.approx(-0.25 - 0.5 - 1.0 - 0.125)
    assert text_logprob(None, raw, "Le chat dort.") is None


# -- the pipeline on a model with given logprobs ---------------------------------------------------

def char_logprobs(text: str, per_char: float) -> list[TokenLogprob]:
    return [TokenLogprob(c, per_char) for c in text]


class ToyTranslator:
    """backward / forward / lm roles with known log-probabilities (one "token" per character).

    backward: greedy "le chat", samples "un chat noir" and "le chat" (a duplicate); logprob per
    char depends on the candidate so the expected scores can be computed by hand.
    """

    identity = "toy"
    BT_PER_CHAR: ClassVar[dict[str, float]] = {"le chat": -0.1, "un chat noir": -0.3, "un chien": -0.5}
    LM_PER_CHAR: ClassVar[dict[str, float]] = {"le chat": -0.2, "un chat noir": -0.1, "un chien": -0.4}
    BACK: ClassVar[dict[str, str]] = {"le chat": "the cat", "un chat noir": "a black cat", "un chien": "a dog"}

    def __init__(self, honour_schema: bool = True, cannot_score: frozenset[str] = frozenset()):
        self.honour_schema = honour_schema
        self.cannot_score = cannot_score

    async def chat(self, requests):
        out = []
        for r in requests:
            text = r.messages[-1]["content"]
            if r.json_schema is not None:
                cand = r.json_schema["enum"][0]
                honoured = self.honour_schema and cand not in self.cannot_score
                forced = json.dumps(cand) if honoured else "whatever"
                choices = [Choice(forced, "stop", [TokenLogprob('"', -1.0)] + char_logprobs(cand, self.LM_PER_CHAR.get(cand, -1))
                                  + [TokenLogprob('"', -1.0)] if honoured else None)]
            elif "into French" in text:
                texts = ["le chat"] if r.temperature == 0 else ["un chat noir", "French: le chat", "un chien"][: r.n]
                choices = [Choice(t, "stop", char_logprobs(t, self.BT_PER_CHAR.get(clean_translation(t), -0.2)))
                           for t in texts]
            else:
                src = text.rsplit("French: ", 1)[1].split("\n", 1)[0]
                choices = [Choice(self.BACK[src])]
            out.append(ChatResponse(choices, Usage(4, 4), self.identity))
        return out

    async def aclose(self):
        return None


def expected_scores(target: str, quality_kind: str, weight: float) -> dict[str, float]:
    import sacrebleu

    cands = ["le chat", "un chat noir", "un chien"]
    words = [len(c.split()) for c in cands]
    bt_lp = [ToyTranslator.BT_PER_CHAR[c] * len(c) for c in cands]
    lm_lp = [ToyTranslator.LM_PER_CHAR[c] * len(c) for c in cands]
    if quality_kind == "chrf":
        q = [sacrebleu.sentence_chrf(ToyTranslator.BACK[c], [target]).score / 100 for c in cands]
    else:
        q = [b / n for b, n in zip(bt_lp, words)]
    imp = [(lm - b) / n for lm, b, n in zip(lm_lp, bt_lp, words)]
    return dict(zip(cands, gamma_scores(q, imp, weight)))


@pytest.mark.parametrize("quality", ["chrf", "backward_logprob"])
async def test_pipeline_scores_candidates_within_each_sentence_and_selects(tmp_path, quality):
    inp = tmp_path / "mono.jsonl"
    rows = [{"target": "the black cat", "reference": "le chat noir"}, {"target": "a dog barks"}]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = ToyTranslator()
    pipeline = bt.build(bt.Options(candidates=4, quality=quality))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run", input_path=inp),
                                      models={"backward": model, "forward": model, "lm": model})
    assert len(result.rows) == 2
    for row in result.rows:
        cands = row["candidates"]
        assert [c["text"] for c in cands] == ["le chat", "un chat noir", "un chien"]  # duplicate removed
        assert [c["decoding"] for c in cands] == ["greedy", "sample", "sample"]
        assert statistics.fmean(c["quality_z"] for c in cands) == pytest.approx(0, abs=1e-5)
        expected = expected_scores(row["target"], quality, 0.2)
        assert [c["gamma"] for c in cands] == pytest.approx([expected[c["text"]] for c in cands], abs=1e-5)
        best = max(cands, key=lambda c: c["gamma"])
        assert row["source"] == best["text"] and row["gamma"] == best["gamma"]
        assert cands[0]["bt_logprob"] == pytest.approx(-0.1 * len("le chat"))
        assert cands[1]["lm_logprob"] == pytest.approx(-0.1 * len("un chat noir"))  # quotes excluded
    report = json.loads((tmp_path / "run" / "bt_report.json").read_text())
    assert report["rows"] == 2 and report["rows_with_reference"] == 1
    assert 0 <= report["self_bleu_selected"] <= 1 and "chrf_selected_vs_reference" in report


async def test_importance_needs_a_backend_that_can_score_text(tmp_path):
    pipeline = bt.build(bt.Options(num_sentences=2, candidates=2))
    model = ToyTranslator(honour_schema=False)
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run"),
                                      models={"backward": model, "forward": model, "lm": model})
    assert result.rows == []
    assert {s["step"]: s for s in result.stats["funnel"]}["score"]["rejected"] == {"lm_score_unavailable": 2}
    # one unscorable candidate is dropped (and listed), the sentence keeps the others
    model = ToyTranslator(cannot_score=frozenset({"un chien"}))
    result = await run_pipeline_async(bt.build(bt.Options(num_sentences=2, candidates=4)),
                                      RunOptions(out=tmp_path / "run1"),
                                      models={"backward": model, "forward": model, "lm": model})
    assert len(result.rows) == 2
    for row in result.rows:
        assert row["unscored"] == ["un chien"] and [c["text"] for c in row["candidates"]] == ["le chat", "un chat noir"]
        for key in ("quality_z", "importance_z"):  # z-scores over the two kept candidates only
            assert sorted(c[key] for c in row["candidates"]) == pytest.approx([-1.0, 1.0])
    # weight 0 needs no lm at all: the role is not even used
    pipeline = bt.build(bt.Options(num_sentences=2, candidates=2, gamma_weight=0.0))
    assert "lm" not in pipeline.model_roles()
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run0"),
                                      models={"backward": model, "forward": model})
    assert len(result.rows) == 2 and all(r["importance"] == 0.0 for r in result.rows)


async def test_no_usable_candidates_is_a_reasoned_rejection(tmp_path):
    pipeline = bt.build(bt.Options(num_sentences=2, candidates=2, quality="backward_logprob"))
    model = ScriptedModel(["\n\n"])
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run"),
                                      models={"backward": model, "lm": model})
    assert {s["step"]: s for s in result.stats["funnel"]}["candidates"]["rejected"] == {"no_candidates": 2}


def test_report_compares_the_selected_set_with_the_greedy_baseline():
    rows = [{"source": "le chat noir", "target": "t", "reference": "le chat noir", "quality": 0.5, "decoding": "sample",
             "candidates": [{"text": "le chat", "decoding": "greedy"}, {"text": "le chat noir", "decoding": "sample"}]},
            {"source": "un chien", "target": "t", "quality": 0.7, "decoding": "greedy",
             "candidates": [{"text": "un chien", "decoding": "greedy"}]}]
    report = selected_set_report(rows)
    assert report["chrf_selected_vs_reference"] == pytest.approx(100.0)
    assert report["chrf_greedy_vs_reference"] < 100.0
    assert report["share_greedy_selected"] == 0.5 and report["mean_quality"] == 0.6


# -- end to end on the embedded model --------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded():
    from synthloom.llm.embedded import EmbeddedModel

    # one thread: on a loaded shared machine llama.cpp's thread barrier stalls (8x slower with 2 threads)
    return EmbeddedModel(n_slots=8, n_ctx=8192, n_threads=1)


@pytest.mark.slow
async def test_back_translation_end_to_end_on_the_embedded_model(tmp_path, embedded):
    from synthloom.llm.cache import CachedModel, RequestCache

    model = CachedModel(embedded, RequestCache(tmp_path / "cache.sqlite"))
    inp = tmp_path / "mono.jsonl"
    rows = [{"target": "The cat is sleeping.", "reference": "Le chat dort."},
            {"target": "I like green apples.", "reference": "J'aime les pommes vertes."}]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = bt.Options(candidates=3, max_tokens=24, selection="sample")
    result = await run_pipeline_async(bt.build(options), RunOptions(out=tmp_path / "run", input_path=inp),
                                      models={"backward": model, "forward": model, "lm": model})
    funnel = result.stats["funnel"]
    assert [s["step"] for s in funnel] == ["source", "candidates", "score", "select", "report"]
    for before, after in itertools.pairwise(funnel):
        assert after["rows_in"] == before["rows_out"]
    assert result.rows, f"nothing selected: {[s['rejected'] for s in funnel]}"
    for row in result.rows:
        cands = row["candidates"]
        assert row["source"] in [c["text"] for c in cands] and row["target"] in {r["target"] for r in rows}
        assert all(c["bt_logprob"] < 0 and c["lm_logprob"] < 0 for c in cands)  # real engine logprobs
        # the embedded lm scores each candidate as plain text (teacher forcing), not by forced decoding
        scored = await embedded.score([c["text"] for c in cands])
        assert [c["lm_logprob"] for c in cands] == pytest.approx([s.logprob for s in scored], abs=1e-9)
        if len(cands) > 1 and len({c["quality"] for c in cands}) > 1:
            assert statistics.fmean(c["quality_z"] for c in cands) == pytest.approx(0, abs=1e-5)
    report = json.loads((tmp_path / "run" / "bt_report.json").read_text())
    assert report["rows"] == len(result.rows) and report["selection"] == ["sample:tau=1.0"]
    assert "chrf_selected_vs_reference" in report
    assert (tmp_path / "run" / "README.md").is_file() and result.stats["usage"]
