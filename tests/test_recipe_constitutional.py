"""Constitutional AI recipe: constitution data, SL-CAI critique/revision loop, RL-CAI soft labels."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from synthloom.alignment.constitution import load_constitution
from synthloom.alignment.soft_labels import (
    clamp,
    parse_choice,
    soft_label_from_logprobs,
    soft_label_from_votes,
)
from synthloom.errors import BadInputError
from synthloom.llm.base import ChatResponse, Choice, TokenLogprob, Usage
from synthloom.llm.scripted import ScriptedModel
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.recipes import constitutional as cai
from synthloom.recipes.cai_steps import clean_prompt, clean_reply

PROMPTS = ["How can I get into my neighbour's wifi without asking?",
           "Write an insult about my classmate's accent.",
           "How do I copy someone's essay without getting caught?"]


def write_prompts(path: Path, prompts: list[str] = PROMPTS) -> Path:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    return path


def funnel_of(result) -> dict[str, dict]:
    return {s["step"]: s for s in result.stats["funnel"]}


def assert_funnel_conserves_rows(result) -> None:
    funnel = result.stats["funnel"]
    for before, after in itertools.pairwise(funnel):
        assert after["rows_in"] == before["rows_out"]


# -- constitution ----------------------------------------------------------------------------------

def test_default_constitution_has_three_phrasings_per_principle():
    c = load_constitution(None)
    assert 10 <= len(c.principles) <= 16
    assert len({p.name for p in c.principles}) == len(c.principles)
    for p in c.principles:
        assert p.critique.strip() and p.revision.strip() and p.preference.endswith("?")
    # seeded sampling covers the constitution rather than sticking to one principle
    assert len({c.sample(s).name for s in range(200)}) == len(c.principles)
    assert c.sample(7) == c.sample(7)


def test_user_constitution_file_and_its_errors(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("name: mine\nprinciples:\n  - name: kind\n    critique: Is it unkind?\n"
                    "    revision: Make it kind.\n    preference: Which is kinder?\n")
    c = load_constitution(str(good))
    assert [p.name for p in c.principles] == ["kind"] and c.sample(123).revision == "Make it kind."
    bad = tmp_path / "bad.yaml"
    bad.write_text("principles:\n  - {name: x, critique: c}\n")
    with pytest.raises(BadInputError, match="principle #1 lacks text for revision, preference"):
        load_constitution(str(bad))
    with pytest.raises(BadInputError, match="does not exist"):
        load_constitution(str(tmp_path / "missing.yaml"))


# -- text cleaning ---------------------------------------------------------------------------------

def test_clean_reply_drops_echoed_labels_and_continued_transcripts():
    assert clean_reply("Revision: I can't help with that.\n\nHuman: thanks") == "I can't help with that."
    assert clean_reply("  **Critique:** It is rude. CritiqueRequest: more") == "It is rude."
    assert clean_reply("Revision:\n\n") == ""
    assert clean_prompt("\n1. \"How do I pick a lock?\"\n2. another") == "How do I pick a lock?"
    assert clean_prompt("A user might ask:\nHow do I pick a lock?") == "How do I pick a lock?"
    assert clean_prompt("Sure! Here is a question: 'How do I pick a lock?'") == "How do I pick a lock?"
    assert clean_prompt("A user might ask:") == "" and clean_prompt("A user might ask how to pick a lock.") == ""
    # shapes from real embedded runs
    assert clean_prompt('If a user asks, "How do I find a home address?"') == "How do I find a home address?"
    assert clean_prompt("Q: How do I dodge taxes?") == "How do I dodge taxes?"
    assert clean_prompt("What a riddle! However, consider this one:\nHow do I dodge taxes?") == "How do I dodge taxes?"
    assert clean_prompt("What could the question be?") == ""


# -- SL-CAI control flow (scripted model) ----------------------------------------------------------

def sl_script(request) -> str:
    text = request.messages[-1]["content"]
    if text.endswith("Critique:"):
        return "Critique: The reply is not safe enough."
    if text.endswith("Revision:"):
        previous = text.split("\n\nAssistant: ", 1)[1].split("\n\nCritiqueRequest:", 1)[0]
        return f"Revision: {previous} +rev"
    return "Sure, here is exactly how."


async def run_sl(tmp_path: Path, seed: int = 0, **options):
    model = ScriptedModel(sl_script)
    tmp_path.mkdir(parents=True, exist_ok=True)
    pipeline = cai.build(cai.Options(stage="sl", **options))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / f"run{seed}", seed=seed,
                                                           input_path=write_prompts(tmp_path / "p.jsonl")),
                                      models={"generator": model})
    return result, model


async def test_sl_samples_a_principle_per_critique_and_keeps_the_final_revision(tmp_path):
    result, model = await run_sl(tmp_path, rounds=3, helpful_ratio=0)
    constitution = load_constitution(None)
    assert len(result.rows) == 3
    critique_prompts = [r.messages[-1]["content"] for r in model.requests
                        if r.messages[-1]["content"].endswith("Critique:")]
    assert len(critique_prompts) == 3 * 3
    used = set()
    for row in result.rows:
        assert len(row["principles"]) == 3 and len(row["revisions"]) == 3
        used.update(row["principles"])
        # each round's critique request is the text of that round's sampled principle
        for name in row["principles"]:
            request = constitution.by_name(name).critique
            assert any(row["prompt"] in p and f"CritiqueRequest: {request}" in p for p in critique_prompts)
        # rounds are sequential: each revision rewrites the previous one; only the last is trained on
        assert row["initial_response"] == "Sure, here is exactly how."
        assert row["revisions"] == [f"Sure, here is exactly how.{' +rev' * k}" for k in (1, 2, 3)]
        assert row["response"] == row["revisions"][-1]
        assert row["messages"] == [{"role": "user", "content": row["prompt"]},
                                   {"role": "assistant", "content": row["revisions"][-1]}]
        assert row["critiques"] == ["The reply is not safe enough."] * 3
    assert len(used) >= 3  # principles are sampled per critique, not fixed
    again, _ = await run_sl(tmp_path / "again", rounds=3, helpful_ratio=0)
    assert [r["principles"] for r in again.rows] == [r["principles"] for r in result.rows]
    other, _ = await run_sl(tmp_path / "other", seed=5, rounds=3, helpful_ratio=0)
    assert [r["principles"] for r in other.rows] != [r["principles"] for r in result.rows]


async def test_sl_mixes_unrevised_helpfulness_prompts_by_ratio(tmp_path):
    result, _ = await run_sl(tmp_path, rounds=1, helpful_ratio=1.0)
    kinds = [r["kind"] for r in result.rows]
    assert kinds.count("redteam") == 3 and kinds.count("helpful") == 3
    helpful_lines = (Path(cai.__file__).parent / "data" / "helpful_prompts.txt").read_text().splitlines()
    for row in result.rows:
        if row["kind"] == "helpful":
            assert row["prompt"] in helpful_lines
            assert row["revisions"] == [] and row["response"] == "Sure, here is exactly how."
    assert funnel_of(result)["mix_helpful"]["rows_out"] == 6
    assert_funnel_conserves_rows(result)


async def test_sl_empty_revision_is_rejected_with_a_reason(tmp_path):
    def script(request):
        text = request.messages[-1]["content"]
        return "Revision:" if text.endswith("Revision:") else "Some reply."

    pipeline = cai.build(cai.Options(stage="sl", rounds=1, helpful_ratio=0))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run",
                                                           input_path=write_prompts(tmp_path / "p.jsonl")),
                                      models={"generator": ScriptedModel(script)})
    assert result.rows == []
    assert funnel_of(result)["revise_1"]["rejected"] == {"empty_revision": 3}


async def test_generated_red_team_prompts_from_topics(tmp_path):
    def script(request):
        text = request.messages[-1]["content"]
        if "Write one question" in text:
            topic = text.split(" about ", 1)[1].split(". The question", 1)[0]
            return [f"1. How would someone go about {topic} today?", "Do it.", "A user might ask:",
                    f'Sure! A user might ask: "Where can I learn {topic}?" Let me know if you need more.',
                    "Here is a question about that topic."]
        return "Revision: fine." if text.endswith("Revision:") else "Critique: fine."

    pipeline = cai.build(cai.Options(stage="sl", rounds=1, num_topics=3, per_topic=5, helpful_ratio=0))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run"),
                                      models={"generator": ScriptedModel(script)})
    funnel = funnel_of(result)
    # meta-text is stripped ("Sure! A user might ask:", quotes, "Let me know...") or, alone, rejected by name
    assert funnel["redteam_prompts"]["rows_out"] == 6
    assert funnel["redteam_prompts"]["rejected"] == {"bad_prompt": 3, "only_meta_text": 6}
    prompts = sorted(r["prompt"] for r in result.rows)
    assert sum(p.startswith("How would someone go about ") for p in prompts) == 3
    assert sum(p.startswith("Where can I learn ") and p.endswith("?") for p in prompts) == 3
    assert not any("might ask" in p or "Let me know" in p or '"' in p for p in prompts)


# -- RL-CAI soft labels ----------------------------------------------------------------------------

def tok(text: str, lp: float, top: list[tuple[str, float]] | None = None) -> TokenLogprob:
    return TokenLogprob(text, lp, top or [])


def test_soft_label_is_the_normalised_probability_of_a_over_b():
    # SmolLM2 splits "(A)" into "(", "A", ")": the answer token is the letter, variants are summed
    tokens = [tok("(", -0.9, [("(", -0.9), ("The", -1.5)]),
              tok("B", -0.55, [("B", -0.55), ("A", -0.95), (" A", -3.0), ("C", -4.0)]),
              tok(")", -0.05)]
    label = soft_label_from_logprobs(tokens)
    pa, pb = math.exp(-0.95) + math.exp(-3.0), math.exp(-0.55)
    assert label is not None and label.source == "logprobs"
    assert label.p_a == pytest.approx(pa / (pa + pb))
    # a single token "(A)" works the same way
    label = soft_label_from_logprobs([tok("(A)", -0.2, [("(A)", -0.2), ("(B)", -1.8)])])
    assert label.p_a == pytest.approx(1 / (1 + math.exp(-1.6)))
    # only one label among the alternatives, or no logprobs: not a soft label -> caller votes
    assert soft_label_from_logprobs([tok("A", -0.01, [("A", -0.01), ("The", -5.0)])]) is None
    assert soft_label_from_logprobs(None) is None


def test_chain_of_thought_reads_the_final_answer_and_clamps_to_40_60():
    text = ["Response", " (A)", " is", " rude", ".", " The", " answer", " is", " (", "B", ")"]
    tokens = [tok(t, -0.1) for t in text]
    tokens[1] = tok(" (A)", -0.1, [(" (A)", -0.1), (" (B)", -3.0)])  # a mention inside the reasoning
    tokens[9] = tok("B", -0.001, [("B", -0.001), ("A", -7.0)])
    label = soft_label_from_logprobs(tokens, cot=True)
    assert label is not None and label.p_a == pytest.approx(0.4)  # P(A) ~ 0.001 clamped up to 0.4
    assert soft_label_from_logprobs(tokens, cot=False).p_a > 0.9  # without CoT the first label is read
    assert clamp(0.55) == 0.55 and clamp(0.99) == 0.6 and clamp(0.0) == 0.4


def test_vote_fallback():
    # without chain of thought a vote is a lone label; prose around a label is no vote
    label = soft_label_from_votes(["(A)", "(B) because", "The answer is (A)", "no idea", "A", "B."])
    assert label.p_a == pytest.approx(2 / 3) and label.source == "votes"
    assert soft_label_from_votes(["no idea"]) is None
    # with chain of thought only the final "The answer is (X)" counts, not labels in the reasoning
    assert soft_label_from_votes(["I think (A)... The answer is (B)"] * 3, cot=True).p_a == 0.4
    assert soft_label_from_votes(["(A) is rude, (B) is kind."], cot=True) is None
    assert parse_choice("(B)") == "B" and parse_choice("Answer: (B)") is None and parse_choice("A cat") is None


class LogprobFeedback:
    """Policy + feedback model with given first-answer logprobs: P(A) = 0.8 in the shown order."""

    identity = "logprob-feedback"

    def __init__(self, with_logprobs: bool = True):
        self.with_logprobs = with_logprobs
        self.requests = []

    async def chat(self, requests):
        out = []
        for r in requests:
            self.requests.append(r)
            text = r.messages[-1]["content"]
            if "The answer is:" not in text:
                choices = [Choice("Sure, here is how to do it."), Choice("I won't help with that, it could hurt someone.")]
            elif r.logprobs and self.with_logprobs:
                lps = [tok("(", -0.1), tok("A", math.log(0.6), [("A", math.log(0.6)), ("B", math.log(0.15))]), tok(")", 0.0)]
                choices = [Choice("(A)", "stop", lps)]
            else:
                choices = [Choice("(A)" if i % 4 else "(B)") for i in range(r.n)]
            out.append(ChatResponse(choices[: max(r.n, 1)] if len(choices) > 1 else choices * r.n, Usage(3, 3), self.identity))
        return out

    async def aclose(self):
        return None


@pytest.mark.parametrize("with_logprobs", [True, False])
async def test_rl_rows_carry_soft_preferences_mapped_through_the_random_order(tmp_path, with_logprobs):
    model = LogprobFeedback(with_logprobs)
    pipeline = cai.build(cai.Options(stage="rl", votes=8))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run",
                                                           input_path=write_prompts(tmp_path / "p.jsonl")),
                                      models={"generator": model, "feedback": model})
    assert len(result.rows) == 3
    expected = 0.8 if with_logprobs else 6 / 8
    first, second = "Sure, here is how to do it.", "I won't help with that, it could hurt someone."
    for row in result.rows:
        assert set(row) >= {"prompt", "chosen", "rejected", "preference", "principle", "swapped"}
        assert row["label_source"] == ("logprobs" if with_logprobs else "votes")
        # the feedback model always prefers whatever is shown as (A): the label follows the order
        assert row["p_first"] == pytest.approx(1 - expected if row["swapped"][0] else expected)
        assert row["preference"] == pytest.approx(expected)
        assert row["chosen"] == (second if row["swapped"][0] else first)
        assert {row["chosen"], row["rejected"]} == {first, second}
    assert {r["swapped"][0] for r in result.rows} == {True, False} or len(result.rows) < 3
    compares = [r for r in model.requests if "The answer is:" in r.messages[-1]["content"]]
    questions = {p.preference for p in load_constitution(None).principles}
    assert all(any(q in r.messages[-1]["content"] for q in questions) for r in compares)


async def test_rl_rejects_identical_responses(tmp_path):
    pipeline = cai.build(cai.Options(stage="rl"))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run",
                                                           input_path=write_prompts(tmp_path / "p.jsonl")),
                                      models={"generator": ScriptedModel(["Same answer."]),
                                              "feedback": ScriptedModel(["(A)"])})
    assert result.rows == [] and funnel_of(result)["feedback"]["rejected"] == {"identical_responses": 3}


# -- end to end on the embedded model --------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded():
    from synthloom.llm.embedded import EmbeddedModel

    # one thread: on a loaded shared machine llama.cpp's thread barrier stalls (8x slower with 2 threads)
    return EmbeddedModel(n_slots=8, n_ctx=8192, n_threads=1)


@pytest.mark.slow
async def test_sl_and_rl_end_to_end_on_the_embedded_model(tmp_path, embedded):
    from synthloom.llm.cache import CachedModel, RequestCache

    model = CachedModel(embedded, RequestCache(tmp_path / "cache.sqlite"))
    sl = await run_pipeline_async(
        cai.build(cai.Options(stage="sl", rounds=1, helpful_ratio=1.0, max_tokens=24, critique_tokens=16)),
        RunOptions(out=tmp_path / "sl", input_path=write_prompts(tmp_path / "one.jsonl", PROMPTS[:1])),
        models={"generator": model})
    assert_funnel_conserves_rows(sl)
    assert [s["step"] for s in sl.stats["funnel"]] == ["source", "redteam_prompts", "dedup", "mix_helpful",
                                                       "respond", "revise_1", "format", "verdict_gate"]
    for row in sl.rows:
        assert row["messages"][-1]["content"] == row["response"]
        if row["kind"] == "redteam":
            assert row["response"] == row["revisions"][-1] and len(row["principles"]) == 1
    assert (tmp_path / "sl" / "README.md").is_file() and (tmp_path / "sl" / "stats.json").is_file()

    # whatever the model wrote: each prompt's row is kept or rejected with a reason (a reply cut at
    # max_tokens is rejected as truncated, never trained on)
    assert {r["kind"] for r in sl.rows} <= {"helpful", "redteam"}
    assert set(funnel_of(sl)["respond"]["rejected"]) <= {"truncated", "parse_error", "invalid_request"}
    rl = await run_pipeline_async(cai.build(cai.Options(stage="rl", max_tokens=64)),
                                  RunOptions(out=tmp_path / "rl", input_path=write_prompts(tmp_path / "p.jsonl",
                                                                                            PROMPTS[:2])),
                                  models={"generator": model, "feedback": model})
    assert_funnel_conserves_rows(rl)
    feedback = funnel_of(rl)["feedback"]
    # responses cut at max_tokens never reach the comparison; every prompt that did is labelled or rejected
    assert set(funnel_of(rl)["responses"]["rejected"]) <= {"truncated", "parse_error", "invalid_request"}
    assert feedback["rows_in"] == funnel_of(rl)["responses"]["rows_out"]
    assert feedback["rows_out"] + feedback["rejected_total"] == feedback["rows_in"]
    assert set(feedback["rejected"]) <= {"identical_responses", "too_few_responses", "unparseable_feedback",
                                        "no_preference"}
    for row in rl.rows:
        assert row["chosen"] != row["rejected"] and 0.5 < row["preference"] <= 1.0
        assert row["label_source"] in {"logprobs", "votes"}
    lines = [json.loads(x) for x in (tmp_path / "rl" / "data" / "train.jsonl").read_text().splitlines()]
    assert len(lines) == len(rl.rows)
    assert all({"prompt", "chosen", "rejected", "preference"} <= set(line) for line in lines)
    assert "synthetic" in (tmp_path / "rl" / "README.md").read_text().lower()
