"""Back-translation recipe: candidates, floors, Gamma score maths (z-normalised per sentence), selection."""

from __future__ import annotations

import itertools
import json
import logging
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
from synthloom.llm.base import ChatResponse, Choice, TextScore, TokenLogprob, Usage
from synthloom.llm.scripted import ScriptedModel
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.recipes import backtranslation as bt
from synthloom.recipes.bt_steps import (
    ScoreCandidates,
    clean_translation,
    selected_set_report,
    text_logprob,
)
from tests.embedded_server import serve_embedded

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


@pytest.mark.parametrize("raw, clean", [
    ("Français: Le chat dort.", "Le chat dort."),
    ("Français : « Le chat dort. »", "Le chat dort."),  # French spacing and guillemets
    ("Español : El gato duerme.", "El gato duerme."),
    ("Deutsch: Die Katze schläft.", "Die Katze schläft."),
    ("中文：猫在睡觉。", "猫在睡觉。"),  # full-width colon
    ("日本語：猫が寝ている。", "猫が寝ている。"),
    ("Русский: Кошка спит.", "Кошка спит."),
    ("**French:** Le chat dort.", "Le chat dort."),
    ("French translation: Le chat dort.", "Le chat dort."),
    ("Traduction française : Le chat dort.", "Le chat dort."),
    ("Translation: Français : Le chat dort.", "Le chat dort."),
    ("Français :\nLe chat dort.", "Le chat dort."),  # a label alone on its line
    # must stay: a colon inside the sentence is not a label
    ("Il a dit : bonjour à tous.", "Il a dit : bonjour à tous."),
    ("我说：你好。", "我说：你好。"),
    ("Le prix est de 5 € : c'est cher.", "Le prix est de 5 € : c'est cher."),
])
def test_unicode_language_labels_are_stripped_and_sentence_colons_kept(raw, clean):
    assert clean_translation(raw) == clean


def test_a_custom_language_name_is_a_label_too():
    assert clean_translation("Kiswahili cha Kenya: Paka analala.", ["Kiswahili cha Kenya"]) == "Paka analala."
    assert clean_translation("Kiswahili cha Kenya: Paka analala.") == "Kiswahili cha Kenya: Paka analala."


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

    def __init__(self, can_score: bool = True, cannot_score: frozenset[str] = frozenset(),
                 back: dict[str, str] | None = None, samples: list[str] | None = None):
        self.can_score = can_score
        self.cannot_score = cannot_score
        self.back = back or self.BACK
        self.samples = samples or ["un chat noir", "French: le chat", "un chien"]
        self.greedy = self.samples[-1] if samples else "le chat"
        self.scored: list[str] = []

    async def score(self, texts, prefixes=None):
        from synthloom.llm.base import InvalidRequestError

        self.scored += texts
        if any(t in self.cannot_score for t in texts):
            raise InvalidRequestError("longer than the context")
        return [TextScore(char_logprobs(t, self.LM_PER_CHAR.get(t, -1))) for t in texts]

    async def chat(self, requests):
        out = []
        for r in requests:
            assert r.json_schema is None, "the lm term is never forced through a JSON schema"
            text = r.messages[-1]["content"]
            if "into French" in text:
                texts = [self.greedy] if r.temperature == 0 else self.samples[: r.n]
                choices = [Choice(t, "stop", char_logprobs(t, self.BT_PER_CHAR.get(clean_translation(t), -0.2)))
                           for t in texts]
            else:
                src = text.rsplit("French: ", 1)[1].split("\n", 1)[0]
                choices = [Choice(self.back.get(src, "zzz qqq xxx"))]
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


def write_input(tmp_path, rows) -> object:
    inp = tmp_path / "mono.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return inp


async def run_bt(tmp_path, model, name="run", rows=None, lm=None, **options):
    rows = rows or [{"target": "the black cat", "reference": "le chat noir"}, {"target": "a dog barks"}]
    pipeline = bt.build(bt.Options(**options))
    models = {role: lm if role == "lm" and lm is not None else model for role in pipeline.model_roles()}
    return await run_pipeline_async(pipeline, RunOptions(out=tmp_path / name, input_path=write_input(tmp_path, rows)),
                                    models=models)


def rejected_at(result, step):
    return {s["step"]: s for s in result.stats["funnel"]}[step]["rejected"]


@pytest.mark.parametrize("quality", ["chrf", "backward_logprob"])
async def test_pipeline_scores_candidates_within_each_sentence_and_selects(tmp_path, quality):
    model = ToyTranslator()
    # floors off: this checks the Gamma maths on every candidate
    result = await run_bt(tmp_path, model, candidates=4, quality=quality, min_round_trip=0.0)
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
        assert cands[1]["lm_logprob"] == pytest.approx(-0.1 * len("un chat noir"))  # teacher-forced
        assert row["importance_source"] == "teacher_forced"
    assert set(model.scored) == {"le chat", "un chat noir", "un chien"}
    report = json.loads((tmp_path / "run" / "bt_report.json").read_text())
    assert report["rows"] == 2 and report["rows_with_reference"] == 1
    assert 0 <= report["self_bleu_selected"] <= 1 and "chrf_selected_vs_reference" in report


async def test_floors_drop_copies_and_bad_round_trips_and_a_sentence_of_garbage_keeps_no_row(tmp_path):
    # "the black cat" copies the input; "le chat" / "un chien" round-trip to "the cat" / "a dog"
    model = ToyTranslator(samples=["the black cat", "un chat noir", "un chien", "le chat"])
    result = await run_bt(tmp_path, model, candidates=4)
    [row] = result.rows
    assert row["target"] == "the black cat" and row["source"] == "un chat noir"
    assert [c["text"] for c in row["candidates"]] == ["un chat noir"]
    reasons = {f["text"]: f["reason"].split(":")[0] for f in row["filtered"]}
    assert reasons == {"the black cat": "copies_source", "le chat": "round_trip_below_floor",
                       "un chien": "round_trip_below_floor"}
    assert row["round_trip_chrf"] >= 0.4 and row["source_similarity"] <= 0.8
    verdict = row["_meta"]["verdicts"]["bt_floors"]
    assert verdict["ok"] is True and "1 of 4 candidates pass" in verdict["evidence"]
    # "a dog barks": every candidate round-trips to garbage -> no row, however the z-scores rank them
    assert rejected_at(result, "score") == {"round_trip_below_floor": 1}
    # a copy is dropped before any forward call, even when it is the only candidate
    model = ToyTranslator(samples=["the black cat"])
    result = await run_bt(tmp_path, model, "copy", rows=[{"target": "the black cat"}], candidates=1)
    assert result.rows == [] and rejected_at(result, "score") == {"copies_source": 1}
    # a near-copy (one word changed) is a copy too
    model = ToyTranslator(samples=["the black cats"])
    result = await run_bt(tmp_path, model, "near", rows=[{"target": "the black cat"}], candidates=1)
    assert result.rows == [] and rejected_at(result, "score") == {"copies_source": 1}
    with pytest.raises(ConfigError):
        ScoreCandidates(name="score", min_round_trip=2.0)


async def test_lm_term_is_left_out_with_one_warning_when_the_backend_cannot_score(tmp_path, caplog):
    model = ToyTranslator(can_score=False)
    with caplog.at_level(logging.WARNING, logger="synthloom"):
        result = await run_bt(tmp_path, model, candidates=4, min_round_trip=0.0)
    assert len(result.rows) == 2 and model.scored == []
    warnings = [r for r in caplog.records if "importance term is left out" in r.getMessage()]
    assert len(warnings) == 1  # once per run, not per sentence
    for row in result.rows:
        assert row["importance_source"] == "unavailable" and row["importance"] == 0.0
        quality = [c["quality"] for c in row["candidates"]]
        assert [c["gamma"] for c in row["candidates"]] == pytest.approx(znorm(quality), abs=1e-5)
        assert all("lm_logprob" not in c for c in row["candidates"])


async def test_one_unscorable_candidate_is_dropped_and_weight_zero_uses_no_lm(tmp_path):
    model = ToyTranslator(cannot_score=frozenset({"un chien"}))
    result = await run_bt(tmp_path, model, candidates=4, min_round_trip=0.0)
    assert len(result.rows) == 2
    for row in result.rows:
        assert row["unscored"] == ["un chien"] and [c["text"] for c in row["candidates"]] == ["le chat", "un chat noir"]
        for key in ("quality_z", "importance_z"):  # z-scores over the two kept candidates only
            assert sorted(c[key] for c in row["candidates"]) == pytest.approx([-1.0, 1.0])
    # weight 0 needs no lm at all: the role is not even used
    pipeline = bt.build(bt.Options(num_sentences=2, candidates=2, gamma_weight=0.0))
    assert "lm" not in pipeline.model_roles()
    result = await run_bt(tmp_path, model, "run0", candidates=2, gamma_weight=0.0, min_round_trip=0.0)
    assert len(result.rows) == 2 and all(r["importance"] == 0.0 for r in result.rows)
    assert all(r["importance_source"] == "off" for r in result.rows)
    # backward_logprob quality with the floor off needs no forward model either
    assert bt.build(bt.Options(quality="backward_logprob", min_round_trip=0.0, gamma_weight=0.0)).model_roles() \
        == {"backward"}


async def test_no_usable_candidates_is_a_reasoned_rejection(tmp_path):
    pipeline = bt.build(bt.Options(num_sentences=2, candidates=2, quality="backward_logprob"))
    model = ScriptedModel(["\n\n"])
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run"),
                                      models={"backward": model, "forward": model, "lm": model})
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
    rows = [{"target": "The cat is sleeping.", "reference": "Le chat dort."},
            {"target": "I like green apples.", "reference": "J'aime les pommes vertes."},
            {"target": "The train leaves at noon.", "reference": "Le train part à midi."}]
    result = await run_bt(tmp_path, model, rows=rows, candidates=3, max_tokens=24, selection="sample")
    funnel = result.stats["funnel"]
    assert [s["step"] for s in funnel] == ["source", "candidates", "score", "select", "report", "verdict_gate"]
    for before, after in itertools.pairwise(funnel):
        assert after["rows_in"] == before["rows_out"]
    # the 135M model often fails the floors: whatever is kept passed them, the rest has a reason
    assert set(rejected_at(result, "score")) <= {"round_trip_below_floor", "copies_source", "below_floors"}
    assert len(result.rows) + sum(rejected_at(result, "score").values()) + \
        sum(rejected_at(result, "candidates").values()) == len(rows)
    for row in result.rows:
        assert all(c["round_trip_chrf"] >= 0.4 and c["source_similarity"] <= 0.8 for c in row["candidates"])
        assert row["_meta"]["verdicts"]["bt_floors"]["ok"] is True
    report = json.loads((tmp_path / "run" / "bt_report.json").read_text())
    assert report["rows"] == len(result.rows)
    assert (tmp_path / "run" / "README.md").is_file() and result.stats["usage"]
    # the same calls (cached) with the floors off: every sentence keeps a row, scored by teacher forcing
    result = await run_bt(tmp_path, model, "open", rows=rows, candidates=3, max_tokens=24, selection="sample",
                          min_round_trip=0.0, max_source_similarity=1.0)
    assert len(result.rows) == len(rows)
    for row in result.rows:
        cands = row["candidates"]
        assert row["source"] in [c["text"] for c in cands] and row["target"] in {r["target"] for r in rows}
        assert all(c["bt_logprob"] < 0 and c["lm_logprob"] < 0 for c in cands)  # real engine logprobs
        # the embedded lm scores each candidate as plain text (teacher forcing)
        scored = await embedded.score([c["text"] for c in cands])
        assert [c["lm_logprob"] for c in cands] == pytest.approx([s.logprob for s in scored], abs=1e-9)


@pytest.fixture(scope="module")
def served():
    """`synthloom serve` on the embedded model, in a subprocess; yields its /v1 URL."""
    with serve_embedded("embedded?n_slots=4&n_ctx=4096&n_threads=1") as base:
        yield f"{base}/v1"


@pytest.mark.slow
async def test_on_a_server_the_lm_term_is_teacher_forced_through_completions_echo(tmp_path, served, embedded, caplog):
    from synthloom.llm.openai_compat import OpenAIModel

    rows = [{"target": "The cat is sleeping."}, {"target": "I like green apples."}]
    # floors off: this checks where the lm numbers come from, not what survives the floors
    options = dict(candidates=2, max_tokens=24, min_round_trip=0.0, max_source_similarity=1.0)
    chat = OpenAIModel(served, "smol", api_key_env=None)
    scorer = OpenAIModel(served, "smol", api_key_env=None, score=True)
    try:
        result = await run_bt(tmp_path, chat, "scored", rows=rows, lm=scorer, **options)
        assert len(result.rows) == 2
        for row in result.rows:
            assert row["importance_source"] == "teacher_forced"
            texts = [c["text"] for c in row["candidates"]]
            local = await embedded.score(texts)
            assert [c["lm_logprob"] for c in row["candidates"]] == pytest.approx([s.logprob for s in local], abs=1e-2)
        # the same server without ?score=true: one warning, the importance term left out
        with caplog.at_level(logging.WARNING, logger="synthloom"):
            result = await run_bt(tmp_path, chat, "plain", rows=rows, **options)
        assert len(result.rows) == 2 and all(r["importance_source"] == "unavailable" for r in result.rows)
        assert sum("importance term is left out" in r.getMessage() for r in caplog.records) == 1
    finally:
        await chat.aclose()
        await scorer.aclose()
