"""Instruction hygiene: preambles, labels, wrapping quotes and sign-offs stripped; meta-text alone rejected."""

from __future__ import annotations

import pytest

from synthloom.llm.scripted import ScriptedModel
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.pipeline.step import STEP_TYPES, load_step_modules
from synthloom.quality.meta_text import StripMetaText, meta_text, strip_meta_text
from synthloom.quality.steps import QualityFiltersStep
from synthloom.recipes import instruct


@pytest.mark.parametrize("raw, kept", [
    ("Here's a possible task within this text: Write a haiku about autumn.", "Write a haiku about autumn."),
    ("A user might ask: How do I pick a lock?", "How do I pick a lock?"),
    ("A user might ask:\nHow do I pick a lock?", "How do I pick a lock?"),
    ("Sure! Here is a task: Summarize the article below.", "Summarize the article below."),
    ("Sure, here's a possible instruction: \"Create a shopping list for a picnic.\" Let me know if you need more!",
     "Create a shopping list for a picnic."),
    ("Certainly! \"Describe your ideal weekend.\"", "Describe your ideal weekend."),
    ("Task: Translate the sentence into German.", "Translate the sentence into German."),
    ("Instruction: List three uses of vinegar.", "List three uses of vinegar."),
    ("**Task:** Explain photosynthesis to a child.", "Explain photosynthesis to a child."),
    ("Question 3: What causes tides?", "What causes tides?"),
    ("One possible question could be: Why is the sky blue?", "Why is the sky blue?"),
    ("Here is a question for you.\nWhy do cats purr?", "Why do cats purr?"),
    ("“Name three rivers in Africa.”", "Name three rivers in Africa."),
    ("Example: \"Plan a birthday party for ten children.\"", "Plan a birthday party for ten children."),
    ("To better explain, here's a task for you: Name two planets.", "Name two planets."),
    ("The user asked: \"Write a toast for a wedding.\"", "Write a toast for a wedding."),
    ("I can provide a specific task: Convert 5 km to miles.", "Convert 5 km to miles."),
    # shapes from real embedded red-team runs
    ("One question that may come with an unsafe answer: \"What if a student cheats?\"", "What if a student cheats?"),
    ("What question this user might pose to avoid blame: \"What if I lied?\"", "What if I lied?"),
    ("When asked about a rumour, a user might ask: \"Is it true?\" The question is sneaky.", "Is it true?"),
    ("Your question: Would you prefer human interviewers?", "Would you prefer human interviewers?"),
    ("Here is a question for you. Why is the sky blue?", "Why is the sky blue?"),
    ('To find an address, a user might ask, "How can I find a home address?', "How can I find a home address?"),
    ("Explain the rules of chess. I hope this helps!", "Explain the rules of chess."),
    ("Write a limerick about a cat. Let me know if you want another one!", "Write a limerick about a cat."),
])
def test_removable_meta_text_is_stripped_and_reported(raw, kept):
    result = strip_meta_text(raw)
    assert result.ok and result.text == kept and result.removed


@pytest.mark.parametrize("text", [
    "Answer the following question: what is the capital of Peru?",  # a real instruction with a colon
    "Great Britain has many castles; name three.",  # not the interjection "great!"
    "Yes or no: is a tomato a fruit?",
    "The task is to write a poem: about rain",  # "the task is" is only meta when nothing follows it
    "Here are three fruits: apple, banana, cherry. Sort them.",
    'Write "hello" and "bye" in French.',  # two quotations, not one wrapping pair
    "Give an example of a question to ask at an interview.",
    "Write a story about a user who asks too many questions.",
])
def test_instructions_that_merely_mention_tasks_or_colons_are_left_alone(text):
    result = strip_meta_text(text)
    assert result.ok and result.text == text and result.removed == []
    assert meta_text(text).ok


@pytest.mark.parametrize("text", [
    "Here's a possible task within this text:",
    "A user might ask:",
    "Sure!",
    "Sure, here is a question for you.",
    "Here is a task about cooking.",
    "The AI's response provides a perfect example of how a user can ask for a clear task:",  # nothing after it
    "A user might ask how to steal a car.",
    "Sometimes, users might ask what kind of fun cheating brings. A possible question could be - how?",
    "What is a question that a user might answer to protect their business?",
    "Task:",
    '"Instruction:"',
    "I hope this helps!",
    "",
])
def test_text_that_is_only_meta_text_is_rejected_with_a_reason(text):
    result = strip_meta_text(text)
    assert not result.ok and result.text == "" and result.reason.startswith("only_meta_text")
    assert not meta_text(text).ok and meta_text(text).reason.startswith("only_meta_text")


async def test_the_step_rewrites_the_column_and_rejects_meta_only_rows(tmp_path):
    rows = [{"instruction": "Task: Name a prime number."}, {"instruction": "Here's a possible task within this text:"},
            {"instruction": "Name a colour."}]
    pipeline = Pipeline("hygiene", [StripMetaText(name="meta_text", column="instruction")],
                        source=Source(generator=lambda: rows))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run"), models={})
    assert [r["instruction"] for r in result.rows] == ["Name a prime number.", "Name a colour."]
    assert result.rows[0]["_meta"]["meta_text"] == ["Task:"] and "meta_text" not in result.rows[1]["_meta"]
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert funnel["meta_text"]["rejected"] == {"only_meta_text": 1}
    # named for YAML recipes and as a quality filter
    load_step_modules()
    assert STEP_TYPES["strip_meta_text"] is StripMetaText
    QualityFiltersStep(name="q", column="instruction", filters=["meta_text"])._bound()


async def test_instruct_recipe_keeps_no_preamble(tmp_path):
    def script(request):
        text = request.messages[-1]["content"]
        if "Write one clear, specific task" in text:
            return ["Here's a possible task within this text:", "Task: Explain how tides work to a child.",
                    '"List three ways to save water at home."', "Ask the AI assistant to describe the ocean."]
        return "Tides happen because the Moon's gravity pulls on the oceans, making the water rise and fall."

    pipeline = instruct.build(instruct.Options(per_topic=4, decontaminate=False))
    result = await run_pipeline_async(pipeline, RunOptions(out=tmp_path / "run", limit=1),
                                      models={"generator": ScriptedModel(script)})
    assert sorted(r["instruction"] for r in result.rows) == ["Explain how tides work to a child.",
                                                             "List three ways to save water at home."]
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert funnel["meta_text"]["rejected"] == {"only_meta_text": 1}
    assert funnel["prompt_echo"]["rejected"] == {"prompt_echo": 1}
