"""Benchmark statements shorter than the n-gram are matched whole (CHAMP's short problems)."""

import asyncio
import re

from synthloom.quality.benchmarks_data import BenchmarkItem, load_champ
from synthloom.quality.decontam import MIN_WHOLE_STATEMENT_TOKENS, NgramIndex, decontaminate
from synthloom.text import normalized_words

FILLER = "Here is some ordinary synthetic training text about cooking pasta and walking dogs."


def test_every_short_champ_statement_is_caught_whole_and_only_whole():
    champ = load_champ()
    short = [i for i in champ if len(normalized_words(i.statement)) < 13]
    assert len(short) == 18  # of 270: no 13-gram of theirs can ever occur in a row quoting the problem
    rows = [f"{FILLER} Problem: {i.statement.upper()}  Show your work. {FILLER}" for i in short]
    # the same statements with one number changed, or with their last token cut, are other problems
    near = [re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), i.statement, count=1) for i in short]
    cut = [" ".join(i.statement.split()[:-1]) for i in short]
    index = NgramIndex(champ, 13)
    assert index.short_statements == 18
    hits = index.scan(rows + near + cut + [FILLER])
    caught = {(h.row, h.item_id) for h in hits if h.kind == "whole_statement"}
    assert {(r, i.id) for r, i in enumerate(short)} <= caught
    assert {h.row for h in hits} == set(range(len(short))), "changed or truncated statements must not match"
    mask = index.contaminated_rows(rows + near + cut + [FILLER])
    assert mask[: len(short)].all() and not mask[len(short):].any()
    # a plain 13-gram index (statements hidden in solution text) misses them all
    no_statement = [BenchmarkItem(i.benchmark, i.id, i.text) for i in champ]
    assert not any(h.row < len(short) for h in NgramIndex(no_statement, 13).scan(rows))


def test_very_short_statements_are_not_matched_and_the_report_says_what_was():
    tiny = BenchmarkItem("b", "b/tiny", "Factorize x^2-1.")  # 4 tokens: would match ordinary algebra text
    assert len(normalized_words(tiny.text)) < MIN_WHOLE_STATEMENT_TOKENS
    ok = BenchmarkItem("b", "b/ok", "Find 2^32+1 mod 641.")
    report = asyncio.run(decontaminate(["We factorize x^2-1 first.", "so find 2 ^ 32 + 1 mod 641 now"], [tiny, ok]))
    assert report.contaminated_rows() == {1}
    d = report.to_dict()
    assert d["benchmarks"]["b"]["whole_statement"] == [{"row": 1, "item": "b/ok", "matches": 1}]
    assert d["settings"]["whole_statement"].startswith("1 item(s) with a statement of 5-12 tokens matched whole")
