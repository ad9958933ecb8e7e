"""self_instruct recipe: prompt mixes (2 machine + 6 seed; Code Alpaca 3 seeds / 20 tasks), completion
splitting, instruction and instance filters, the online ROUGE-L pool, classification-aware instance
generation, determinism, and an end-to-end run on the embedded model."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from synthloom.codegen.instances import (
    Instance,
    filter_instances,
    parse_input_first,
    parse_output_first,
)
from synthloom.codegen.instructions import (
    InstructionFilters,
    load_seed_tasks,
    parse_alpaca_blocks,
    split_numbered,
)
from synthloom.errors import BadInputError
from synthloom.llm.scripted import ScriptedModel
from synthloom.quality.meta_text import strip_meta_text
from synthloom.run.runner import RunOptions, run_pipeline_async
from synthloom.recipes import self_instruct

NEW = [
    "Implement a function that computes the median of a list of floats.",
    "Write a function that validates an IPv4 address given as a string.",
    "Create a generator that yields the prime factors of an integer.",
    "Implement an LRU cache class with get and put methods in constant time.",
    "Write a function that parses a CSV line honouring quoted commas.",
    "Convert a snake_case identifier to camelCase.",
]


# -- pure pieces -----------------------------------------------------------------------------------

def test_split_numbered_continues_at_item_nine():
    completion = " Sort a list of tuples by the second element.\n10. Count the set bits of an integer.\n11 . Done here now ok"
    assert split_numbered(completion, 9) == ["Sort a list of tuples by the second element.",
                                             "Count the set bits of an integer.", "Done here now ok"]


@pytest.mark.parametrize("instruction, reason", [
    ("Sort numbers.", "too_short"),  # <= 3 words
    ("word " * 151, "too_long"),
    ("Draw a tree of the directory structure.", "blacklisted_word"),
    ("Read the file and count lines.", "blacklisted_word"),
    ("Write a program that prints hello world.", "write_a_program"),
    ("- Reverse a list in place please.", "starts_with_punctuation"),
    ("Écrire une fonction qui trie une liste.", "non_ascii_start"),
    ("Reverse a linked list in place.", ""),
    ("Write a function that maps keys to values.", "blacklisted_word"),  # whole word "maps"
    ("Write a function that remaps keys to values.", ""),
])
def test_instruction_filters(instruction, reason):
    assert InstructionFilters().reason(instruction) == reason


def test_code_alpaca_filters_extend_the_blacklist_and_keep_write_a_program():
    alpaca = InstructionFilters(code_alpaca=True)
    assert alpaca.reason("Generate a flowchart for this function.") == "blacklisted_word"
    assert InstructionFilters().reason("Generate a flowchart for this function.") == ""
    assert alpaca.reason("Write a program that prints hello world.") == ""


def test_parse_alpaca_blocks_requires_all_three_fields():
    text = (" Reverse a string.\n4. Input:\n<noinput>\n4. Output:\ndef r(s): return s[::-1]\n###\n"
            "5. Instruction: Sum a list.\n5. Output: sum(xs)\n###\n6. Instruction: Add one.\n6. Input:\nx = 1\n6. Output:\nx + 1")
    tasks = parse_alpaca_blocks(text, 4)
    assert tasks[0] == {"instruction": "Reverse a string.", "input": "", "output": "def r(s): return s[::-1]"}
    assert tasks[1] == "malformed_task"
    assert tasks[2] == {"instruction": "Add one.", "input": "x = 1", "output": "x + 1"}


def test_instance_parsing_and_filters():
    insts = parse_input_first("Input: 3\nOutput: 9\nExample 2\nInput: 4\nOutput: 16\nExample 3\nOutput: none:")
    assert insts[:2] == [Instance("3", "9"), Instance("4", "16")]
    labelled = parse_output_first("Class label: even\nInput: 14\nClass label: odd\nInput: 7")
    assert labelled == [Instance("14", "even"), Instance("7", "odd")]
    kept, dropped = filter_instances(insts + [Instance("3", "9"), Instance("x", "x")], random.Random(0))
    assert kept == [Instance("3", "9"), Instance("4", "16")]
    assert dropped == {"ends_with_colon": 1, "input_equals_output": 1, "duplicate_instance": 1}
    kept, dropped = filter_instances([Instance("3", "9"), Instance("3", "10")], random.Random(0))
    assert kept == [] and dropped == {"conflicting_outputs": 2}  # same input, different outputs: drop the task
    kept, _ = filter_instances([Instance(str(i), str(i * 2)) for i in range(1, 9)], random.Random(0), max_instances=5)
    assert len(kept) == 5
    kept, dropped = filter_instances([Instance("1", "2"), Instance("2", "4")], random.Random(0), truncated=True)
    assert kept == [Instance("1", "2")] and dropped == {"truncated": 1}


def test_instance_labels_inside_code_are_not_instance_labels():
    # a code answer whose comment says "# Output: 9" has no Output label: no instance
    code_only = "Input: 3\n```python\ndef square(x):\n    return x * x\nprint(square(3))\n# Output: 9\n```"
    assert parse_input_first(code_only) == []
    assert parse_input_first("Input: 3\nprint(square(3))  # Output: 9") == []
    # the real Output label starts a line; a fenced "Output:" line is part of the answer
    fenced = "Input: 3\nOutput:\n```python\nprint(square(3))\nOutput: 9\n```\nExample 2\nInput: 4\nOutput: 16"
    assert parse_input_first(fenced) == [Instance("3", "```python\nprint(square(3))\nOutput: 9\n```"),
                                         Instance("4", "16")]
    # "Example 2" and "Class label:" inside code do not split blocks
    assert parse_input_first("Output:\n```\nExample 2\n```") == [Instance("", "```\nExample 2\n```")]
    assert parse_output_first("Class label: yes\nInput: ```\nClass label: no\n```") == [
        Instance("```\nClass label: no\n```", "yes")]
    # an output that is only meta-text is no answer
    kept, dropped = filter_instances(parse_input_first("Input: 2\nOutput: Sure! Here is an example.\n"
                                                       "Example 2\nInput: 3\nOutput: 9"), random.Random(0))
    assert kept == [Instance("3", "9")] and dropped == {"only_meta_text": 1}
    # each Output closes one instance (an unlabelled second pair is not glued onto the first)
    assert parse_input_first("Input: 1\nOutput: 2\nInput: 3\nOutput: 4") == [Instance("1", "2"), Instance("3", "4")]


def test_general_seed_pool_has_both_kinds_and_passes_its_own_filters():
    pool = load_seed_tasks("general")
    assert len(pool) >= 175  # Self-Instruct starts from 175 human-written tasks
    kinds = [t["is_classification"] for t in pool]
    assert 40 <= sum(kinds) <= len(pool) - 100  # both kinds, mostly non-classification as in the paper
    assert len({t["instruction"] for t in pool}) == len(pool)
    assert sum(bool(t["input"]) for t in pool) >= 60 and sum(not t["input"] for t in pool) >= 60
    filters = InstructionFilters()
    for t in pool:
        assert set(t) == {"instruction", "input", "output", "is_classification"} and t["output"].strip()
        assert filters.reason(t["instruction"]) == "", t["instruction"]
        assert strip_meta_text(t["instruction"]).removed == [], t["instruction"]
    assert len(load_seed_tasks("code")) == 26 and all("def " in t["output"] for t in load_seed_tasks("code"))
    with pytest.raises(BadInputError, match="unknown seed pool"):
        load_seed_tasks("medical")
    # the general pool is the Self-Instruct default; Code Alpaca keeps the code pool
    assert self_instruct.build(self_instruct.Options()).source.description == "bundled general seed tasks"
    assert self_instruct.build(self_instruct.Options(variant="code_alpaca")).source.description == \
        "bundled code seed tasks"
    assert self_instruct.build(self_instruct.Options(seed_pool="code")).source.description == \
        "bundled code seed tasks"


@pytest.mark.parametrize("raw, kept", [
    ("Task: Sort the list of cities by population.", "Sort the list of cities by population."),
    ('"Name three rivers in Africa."', "Name three rivers in Africa."),
    ("Here is a new task: Describe a rainbow to a child.", "Describe a rainbow to a child."),
])
def test_instruction_labels_and_preambles_are_stripped(raw, kept):
    assert split_numbered(raw, 9) == [kept]


@pytest.mark.parametrize("raw", ["Here is a new task:", "Sure! Here are some more tasks.", "Instruction:"])
def test_an_instruction_that_is_only_meta_text_is_rejected_by_name(raw):
    [item] = split_numbered(raw, 9)
    assert InstructionFilters().reason(item) == "only_meta_text"


# -- the generation loop with a scripted model --------------------------------------------------------

def numbered_continuation(items: list[str]) -> str:
    return "\n".join(f"{9 + i}. {t}" for i, t in enumerate(items))[3:]  # the prompt already wrote "9."


class Scripted:
    """Instruction completions from a queue; "No" to the classification question; one instance."""

    def __init__(self, completions: list[str], classify: str = "No"):
        self.completions = list(completions)
        self.classify = classify
        self.model = ScriptedModel(self.answer)

    def answer(self, request):
        prompt = request.messages[-1]["content"]
        if prompt.startswith("Come up with a series") or "List of 20 tasks" in prompt:
            return self.completions.pop(0) if self.completions else "9. "
        if "Is it classification?" in prompt:
            return self.classify
        if "Class label:" in prompt.splitlines()[-1]:
            return " positive\nInput: 5\nClass label: negative\nInput: -5"
        return "Input: abc\nOutput: cba"


async def run_si(tmp_path, model, **opts):
    options = self_instruct.Options(decontaminate=False, **opts)
    return await run_pipeline_async(self_instruct.build(options), RunOptions(out=tmp_path / "run"),
                                    models={"generator": model})


def seed_instructions() -> set[str]:
    return {t["instruction"] for t in load_seed_tasks("general")}  # the Self-Instruct default


async def test_prompt_mix_is_six_seeds_then_two_machine_instructions(tmp_path):
    script = Scripted([numbered_continuation(NEW[:3]), numbered_continuation(NEW[3:])])
    result = await run_si(tmp_path, script.model, num_instructions=6, prompts_per_round=1, max_rounds=2,
                          instances=False)
    prompts = [r.messages[-1]["content"] for r in script.model.requests]
    seeds = seed_instructions()
    for k, prompt in enumerate(prompts):
        listed = re.findall(r"^\d+\. (.+)$", prompt, re.MULTILINE)
        assert len(listed) == 8 and prompt.rstrip().endswith("9.")
        machine = [t for t in listed if t not in seeds]
        assert len(machine) == (0 if k == 0 else 2)  # round 1: no machine pool yet; then 2 of 8
        assert set(machine) <= set(NEW[:3])
    assert [r["instruction"] for r in result.rows] == NEW
    assert [r["round"] for r in result.rows] == [0, 0, 0, 1, 1, 1]
    assert len(result.rows[0]["_meta"]["parents"]) == 8  # in-context examples are the parents


async def test_online_novelty_pool_rejects_near_copies_of_seeds_and_of_accepted(tmp_path):
    seed = min(seed_instructions())
    items = [NEW[0], seed, NEW[0].replace("floats", "integers"), "Draw a picture of a linked list.", NEW[1],
             "Here is a new task:"]
    script = Scripted([numbered_continuation(items)])
    result = await run_si(tmp_path, script.model, num_instructions=10, prompts_per_round=1, max_rounds=1,
                          instances=False)
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert [r["instruction"] for r in result.rows] == [NEW[0], NEW[1]]
    # the seed copy and the near copy of a *just accepted* instruction (same round) are both rejected
    assert funnel["generate"]["rejected"] == {"not_novel": 2, "blacklisted_word": 1, "only_meta_text": 1}
    assert result.rows[1]["rouge_max"] <= 0.7


async def test_target_stops_the_loop(tmp_path):
    script = Scripted([numbered_continuation(NEW[:4])] * 5)
    result = await run_si(tmp_path, script.model, num_instructions=2, prompts_per_round=1, max_rounds=5,
                          instances=False)
    assert len(result.rows) == 2 and script.model.calls == 1
    funnel = {s["step"]: s for s in result.stats["funnel"]}
    assert funnel["generate"]["rejected"] == {"over_target": 2}


@pytest.mark.parametrize("classify, generation, first_output", [
    ("Yes", "output_first", "positive"),  # classification: label first, then an input for it
    ("No", "input_first", "cba"),
    ("Perhaps", "input_first", "cba"),  # unreadable answer: keyword rule, no classification cue here
])
async def test_classification_decides_instance_generation_order(tmp_path, classify, generation, first_output):
    script = Scripted([numbered_continuation(NEW[:1])], classify=classify)
    result = await run_si(tmp_path, script.model, num_instructions=1, prompts_per_round=1, max_rounds=1)
    assert result.rows and result.rows[0]["output"] == first_output
    assert result.rows[0]["_meta"]["params"]["generation"] == generation
    assert result.rows[0]["classification_source"] == ("keywords" if classify == "Perhaps" else "model")


async def test_code_alpaca_uses_three_seeds_and_parses_triples(tmp_path):
    completion = (" Reverse the words of a sentence.\n4. Input:\nhello world\n4. Output:\nworld hello\n###\n"
                  "5. Instruction: Compute the factorial of n recursively.\n5. Input:\n<noinput>\n5. Output:\n"
                  "def fact(n): return 1 if n < 2 else n * fact(n - 1)")
    script = Scripted([completion])
    result = await run_si(tmp_path, script.model, variant="code_alpaca", num_instructions=5, prompts_per_round=1,
                          max_rounds=1)
    prompt = script.model.requests[0].messages[-1]["content"]
    assert prompt.count("Instruction:") == 4 and prompt.rstrip().endswith("4. Instruction:")
    assert script.model.requests[0].temperature == 1.0
    assert [(r["instruction"], r["input"]) for r in result.rows] == [
        ("Reverse the words of a sentence.", "hello world"), ("Compute the factorial of n recursively.", "")]
    assert [s["step"] for s in result.stats["funnel"]] == ["source", "generate", "verdict_gate"]
    assert script.model.requests[0].messages[-1]["content"].count("def ") >= 1  # code seeds for Code Alpaca


async def test_same_seed_gives_the_same_prompts(tmp_path):
    a, b = Scripted([numbered_continuation(NEW)]), Scripted([numbered_continuation(NEW)])
    await run_si(tmp_path / "a", a.model, num_instructions=2, prompts_per_round=1, max_rounds=1, instances=False)
    await run_si(tmp_path / "b", b.model, num_instructions=2, prompts_per_round=1, max_rounds=1, instances=False)
    assert a.model.requests[0].messages == b.model.requests[0].messages
    assert a.model.requests[0].seed == b.model.requests[0].seed


# -- end to end on the embedded model --------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded():
    from synthloom.llm.embedded import EmbeddedModel

    return EmbeddedModel()


@pytest.mark.slow
async def test_end_to_end_on_the_embedded_model(tmp_path, embedded):
    options = self_instruct.Options(num_instructions=2, prompts_per_round=2, max_rounds=1, max_tokens=48,
                                    instance_max_tokens=40)
    result = await run_pipeline_async(self_instruct.build(options), RunOptions(out=tmp_path / "run", seed=2),
                                      models={"generator": embedded})
    funnel = result.stats["funnel"]
    assert [s["step"] for s in funnel] == ["source", "generate", "classify", "is_classification", "instances",
                                           "decontaminate", "verdict_gate"]
    generate = funnel[1]
    assert generate["rows_in"] == len(load_seed_tasks("general"))
    allowed = {"too_short", "too_long", "blacklisted_word", "write_a_program", "starts_with_punctuation",
               "non_ascii_start", "not_novel", "over_target", "truncated", "no_instructions", "invalid_request",
               "empty_instruction", "only_meta_text"}
    assert set(generate["rejected"]) <= allowed
    assert generate["rows_out"] + generate["rejected_total"] >= 2  # at least one candidate per completion
    assert generate["rows_out"] <= 2
    for before, after in itertools.pairwise(funnel[1:]):
        assert after["rows_in"] == before["rows_out"]
    for row in result.rows:
        assert row["output"] and isinstance(row["is_classification"], bool)
        assert row["instruction"] not in seed_instructions()
        assert strip_meta_text(row["instruction"]).removed == []  # labels and preambles already gone
