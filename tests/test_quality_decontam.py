import asyncio

import pytest

from synthloom.errors import BadInputError
from synthloom.llm.scripted import ScriptedModel
from synthloom.quality.benchmarks_data import (
    BenchmarkItem,
    load_benchmark,
    load_champ,
    load_humaneval,
    read_column,
)
from synthloom.quality.decontam import (
    NgramIndex,
    decontaminate,
    judge_pairs,
    parse_verdict,
)

HE = load_humaneval()
FILLER = "Here is some ordinary synthetic training text about cooking pasta and walking dogs. " * 6

# HumanEval/2 (truncate_number) described in new words, no 13-gram in common.
PARAPHRASE = ("Given a positive float, split it into its whole part (largest integer not above it) and the "
              "leftover fraction below one, and return only that fractional remainder. Example: 3.5 gives 0.5.")


def _reformat(code: str) -> str:
    return code.replace("    ", "\t").replace("(", " ( ").replace(")", " ) ").replace(",", " , ").upper()


def test_loaders_ship_data():
    assert len(HE) == 164 and HE[0].id == "HumanEval/0" and "def " in HE[0].text
    champ = load_champ()
    assert len(champ) == 270 and all(i.text for i in champ)


def test_ngram_finds_verbatim_and_reformatted_per_benchmark():
    champ = load_champ()
    texts = [FILLER, FILLER + HE[5].text + FILLER, _reformat(HE[7].text), champ[3].text + " Solve it.", PARAPHRASE]
    hits = NgramIndex(HE + champ, 13).scan(texts)
    found = {(h.row, h.item_id) for h in hits}
    assert (1, "HumanEval/5") in found and (2, "HumanEval/7") in found and (3, champ[3].id) in found
    assert {h.row for h in hits} == {1, 2, 3}  # filler and paraphrase are clean
    assert {h.benchmark for h in hits if h.row == 3} == {"champ"}


def test_ngram_size_is_configurable():
    item = [BenchmarkItem("b", "b/0", "alpha beta gamma delta epsilon")]
    assert [h.kind for h in NgramIndex(item, 13).scan(["alpha beta gamma delta epsilon"])] == ["whole_statement"]
    assert [h.item_id for h in NgramIndex(item, 3).scan(["x alpha beta gamma y"])] == ["b/0"]


def test_janitor_clean_cuts_windows_and_drops_dirty_docs():
    idx = NgramIndex([BenchmarkItem("b", "b/0", " ".join(f"tok{i}" for i in range(20)))], 13)
    left, right = "L" * 500, "R" * 500
    doc = left + " " + " ".join(f"tok{i}" for i in range(13)) + " " + right
    chunks = idx.janitor_clean(doc)
    assert len(chunks) == 2 and set(chunks[0]) == {"L"} and set(chunks[1]) == {"R"}
    assert len(chunks[0]) == 501 - 200  # cut 200 chars before the hit
    assert len(chunks[1]) == 501 - 200 - 1  # Janitor skips one char after the cut window
    dirty = " ".join(f"tok{i}" for i in range(20)) + " "
    assert idx.janitor_clean(dirty * 3) == []  # > 10 collisions: whole document dropped
    assert idx.janitor_clean("clean text " * 50) == ["clean text " * 50]


def test_judge_parsing_and_retry_on_unparseable():
    assert parse_verdict("True.") is True and parse_verdict("**false**") is False
    assert parse_verdict("I think so") is None
    # only a lone True/False is a verdict: sentences, hedges, echoes and both labels are not
    for text in ("True or False", "It is not true", "False, but they are close", "Answer True or False:",
                 "true false", "Probably true", ""):
        assert parse_verdict(text) is None, text
    model = ScriptedModel(["not sure", "True", "False"])
    res = asyncio.run(judge_pairs(model, [("a", "b"), ("c", "d")], "code", retries=3))
    assert [v for v, _ in res] == [False, True] or [v for v, _ in res] == [True, False]
    assert model.calls == 3  # the unparseable answer was asked again
    with pytest.raises(BadInputError):
        asyncio.run(judge_pairs(model, [("a", "b")], "poetry"))  # type: ignore[arg-type]


@pytest.mark.slow
def test_embedding_retrieval_and_judge_find_paraphrase():
    """Real MiniLM embeddings; 24 HumanEval items keep CPU encoding to a few seconds."""
    from synthloom.quality.embeddings import default_embedder

    texts = [FILLER, "Write a recipe for banana bread.", PARAPHRASE, "Explain the rules of chess."]
    asked = []

    def judge(req):
        asked.append(req.messages[1]["content"])
        return "True" if "fraction" in req.messages[1]["content"] else "False"

    report = asyncio.run(decontaminate(texts, HE[:24], embedder=default_embedder(), judge=ScriptedModel(judge), top_k=1))
    assert report.ngram_hits == []
    by_item = {j.item_id: j for j in report.judged}
    assert by_item["HumanEval/2"].row == 2 and by_item["HumanEval/2"].verdict is True
    assert report.contaminated_rows() == {2}
    d = report.to_dict()
    assert d["benchmarks"]["humaneval"]["judge"][0]["item"] == "HumanEval/2"
    assert d["settings"]["embedding_model"] == "all-MiniLM-L6-v2"


def test_read_column_errors_are_one_line(tmp_path):
    p = tmp_path / "b.jsonl"
    p.write_text('{"q": "x"}\n{"q": "y"}\n')
    assert read_column(p, "q") == ["x", "y"]
    with pytest.raises(BadInputError, match="no field"):
        read_column(p, "text")
    with pytest.raises(BadInputError, match="unknown benchmark"):
        load_benchmark("nonexistent-bench")
    assert [i.text for i in load_benchmark(f"{p}:q")] == ["x", "y"]
