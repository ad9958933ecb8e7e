"""Acceptance for decontamination with real components only: HumanEval problems planted in a
synthetic set verbatim, re-formatted, and paraphrased by the embedded model; n-grams must catch
the first two, MiniLM retrieval must pair every paraphrase with its source problem, and the
embedded model's judge verdicts (parsed from its real answers) decide the rest."""

from __future__ import annotations

import pytest

from synthloom.llm.base import ChatRequest
from synthloom.llm.embedded import EmbeddedModel
from synthloom.quality.benchmarks_data import load_humaneval
from synthloom.quality.decontam import NgramIndex, decontaminate

HE = load_humaneval()[:24]  # 24 items keep MiniLM encoding and judge calls to seconds
PARAPHRASED = HE[:8]
CLEAN = [
    "Write a recipe for banana bread with walnuts and explain each step.",
    "Explain the rules of chess to a child in five sentences.",
    "Summarise the causes of the French Revolution for a history class.",
    "Write a haiku about autumn leaves falling in a quiet park.",
]


def paraphrase_request(text: str) -> ChatRequest:
    return ChatRequest(
        messages=[
            {"role": "system", "content": "Rewrite the programming task below in your own words. "
             "Keep its meaning, do not copy its sentences, do not solve it."},
            {"role": "user", "content": text},
        ],
        temperature=0.0,
        max_tokens=120,
    )


def reformat(code: str) -> str:
    return code.replace("    ", "\t").replace("(", " ( ").replace(")", " ) ").replace(",", " , ").upper()


@pytest.mark.slow
async def test_verbatim_reformatted_and_model_paraphrased_plants():
    model = EmbeddedModel(n_slots=8, n_ctx=8192)
    try:
        written = [r.text.strip() for r in await model.chat([paraphrase_request(i.text) for i in PARAPHRASED])]
        index = NgramIndex(HE, 13)
        # SmolLM2 often repeats the function signature, which n-grams catch anyway; the plants
        # that matter here are the paraphrases that evade them
        evading = [(item, text) for item, text, caught in zip(PARAPHRASED, written, index.contaminated_rows(written))
                   if not caught]
        assert len(evading) >= 3, written

        filler = "Ordinary synthetic training text about cooking pasta and walking dogs. " * 4
        rows = [*CLEAN, filler + HE[20].text + filler, filler + reformat(HE[21].text), *(t for _, t in evading)]
        clean_rows = set(range(len(CLEAN)))
        verbatim_row, reformatted_row = len(CLEAN), len(CLEAN) + 1
        paraphrase_rows = {len(CLEAN) + 2 + k: item.id for k, (item, _) in enumerate(evading)}

        report = await decontaminate(rows, HE, embedder=None, judge=None)
        ngram_rows = {h.row for h in report.ngram_hits}
        assert ngram_rows == {verbatim_row, reformatted_row}
        attributed = {(h.row, h.item_id) for h in report.ngram_hits}  # shared headers may add others
        assert {(verbatim_row, HE[20].id), (reformatted_row, HE[21].id)} <= attributed

        from synthloom.quality.embeddings import default_embedder

        report = await decontaminate(rows, HE, embedder=default_embedder(), judge=model, top_k=1, min_similarity=0.5)
        retrieved = {(j.row, j.item_id): j for j in report.judged}
        for row, item_id in paraphrase_rows.items():  # embedding retrieval finds every paraphrase
            assert (row, item_id) in retrieved, (row, item_id, sorted(retrieved))
            assert retrieved[(row, item_id)].similarity >= 0.6
        assert not clean_rows & {j.row for j in report.judged}  # clean text is never even asked about
        # the judge's real answers were parsed, and its True verdicts (only) extend the n-gram hits
        assert all(j.verdict is not None for j in report.judged), [j.raw for j in report.judged]
        assert report.contaminated_rows() == ngram_rows | {j.row for j in report.judged if j.verdict}
        assert not report.contaminated_rows() & clean_rows
        assert report.to_dict()["settings"]["judge_model"] == model.identity
    finally:
        await model.aclose()
