"""The quality kit as pipeline steps (types usable from YAML recipes and Python).

- `dedup_minhash` (global): exact + MinHash-LSH near-dup; writes the cluster id, rejects
  non-first members with reason "near_duplicate" (or "duplicate" for exact copies).
- `dedup_semantic` (global): sentence-embedding cosine dedup, reason "semantic_duplicate".
- `rouge_novelty` (global): Self-Instruct's online ROUGE-L pool, seeded with `seed_texts` and/or a
  seed column; reason "not_novel". Writes the max score and most similar text.
- `decontaminate` (global): n-gram overlap (and, with `judge_model`, embedding retrieval + LLM
  judge) against benchmarks; reason "contaminated".
- `quality_filters` (filter): named heuristic filters; the reason is the failing filter's name.
- `perplexity_filter` (map): perplexity of the text under a reference language model (a model
  role that can score, e.g. the embedded one); reasons "perplexity_high" / "perplexity_low" /
  "unscorable". Writes the perplexity.
"""

from __future__ import annotations

from typing import Any, ClassVar

from synthloom.errors import ConfigError
from synthloom.pipeline.calls import score_each
from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.quality import filters as F
from synthloom.quality.benchmarks_data import load_benchmark
from synthloom.quality.decontam import DEFAULT_NGRAM, JudgeKind, decontaminate
from synthloom.quality.minhash import MinHashSettings, exact_dedup, minhash_dedup
from synthloom.quality.rouge import NoveltyPool
from synthloom.quality.meta_text import meta_text
from synthloom.quality.semdedup import DEFAULT_COSINE_THRESHOLD, semantic_dedup
from synthloom.llm.base import InvalidRequestError, TextScore
from synthloom.records import META, Row


def _texts(rows: list[Row], column: str) -> list[str]:
    return [str(r.get(column) or "") for r in rows]


def _row_id(row: Row, index: int) -> str:
    return str(row.get(META, {}).get("id") or f"#{index}")


@register_step("dedup_minhash")
class MinHashDedupStep(Step):
    is_global: ClassVar[bool] = True
    cpu_heavy: ClassVar[bool] = True
    column: str
    threshold: float = 0.7
    ngram: int = 5
    num_perm: int = 256
    bands: int | None = None
    rows: int | None = None
    cluster_column: str = "dedup_cluster"

    def input_columns(self) -> set[str]:
        return {self.column}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {self.cluster_column}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        texts = _texts(rows, self.column)
        settings = MinHashSettings(self.ngram, self.num_perm, self.threshold, self.bands, self.rows)
        result = minhash_dedup(texts, settings)
        exact = exact_dedup(texts).cluster  # exact copies get their own reason
        out: list[Any] = []
        for i, row in enumerate(rows):
            c = int(result.cluster[i])
            tagged = {**row, self.cluster_column: _row_id(rows[c], c)}
            if result.keep[i]:
                out.append(tagged)
            else:
                reason = "duplicate" if exact[i] != i else "near_duplicate"
                out.append(Rejected(reason, tagged, f"same cluster as {_row_id(rows[c], c)}"))
        return out


@register_step("dedup_semantic")
class SemanticDedupStep(Step):
    is_global: ClassVar[bool] = True
    column: str
    threshold: float = DEFAULT_COSINE_THRESHOLD

    def input_columns(self) -> set[str]:
        return {self.column}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        from synthloom.quality.embeddings import default_embedder

        result = semantic_dedup(_texts(rows, self.column), default_embedder(), self.threshold)
        return [
            row
            if result.keep[i]
            else Rejected(
                "semantic_duplicate",
                row,
                f"cosine >= {self.threshold} with {_row_id(rows[int(result.cluster[i])], int(result.cluster[i]))}",
            )
            for i, row in enumerate(rows)
        ]


@register_step("rouge_novelty")
class RougeNoveltyStep(Step):
    is_global: ClassVar[bool] = True
    cpu_heavy: ClassVar[bool] = True
    column: str
    threshold: float = 0.7
    seed_texts: list[str] = []
    score_column: str = "rouge_max"
    similar_column: str = "rouge_most_similar"

    def input_columns(self) -> set[str]:
        return {self.column}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {self.score_column, self.similar_column}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        pool = NoveltyPool(self.threshold, initial=self.seed_texts)
        out: list[Any] = []
        for row, text in zip(rows, _texts(rows, self.column)):
            res = pool.add_if_novel(text)
            tagged = {**row, self.score_column: res.max_score, self.similar_column: res.most_similar}
            out.append(
                tagged if res.accepted else Rejected("not_novel", tagged, f"ROUGE-L {res.max_score:.3f} > {self.threshold}")
            )
        return out


@register_step("decontaminate")
class DecontaminateStep(Step):
    is_global: ClassVar[bool] = True
    columns: list[str]
    benchmarks: list[str] = ["humaneval", "champ"]
    ngram: int = DEFAULT_NGRAM
    judge_model: str | None = None  # model role; enables embedding retrieval + LLM judge
    judge_kind: JudgeKind = "code"
    top_k: int = 1
    min_similarity: float = 0.5

    def input_columns(self) -> set[str]:
        return set(self.columns)

    def model_roles(self) -> set[str]:
        return {self.judge_model} if self.judge_model else set()

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        if not self.benchmarks:
            raise ConfigError(f"step {self.name!r}: no benchmarks to decontaminate against")
        items = [it for b in self.benchmarks for it in load_benchmark(b)]
        texts = ["\n".join(str(r.get(c) or "") for c in self.columns) for r in rows]
        embedder = judge = None
        if self.judge_model:
            from synthloom.quality.embeddings import default_embedder

            embedder, judge = default_embedder(), ctx.model(self.judge_model)
        report = await decontaminate(
            texts, items, self.ngram, embedder, judge, self.top_k, self.min_similarity, self.judge_kind, seed=ctx.run_seed
        )
        why: dict[int, str] = {}
        for h in report.ngram_hits:
            why.setdefault(h.row, f"whole statement of {h.item_id} (shorter than {self.ngram} tokens)"
                           if h.kind == "whole_statement"
                           else f"{self.ngram}-gram overlap with {h.item_id} ({h.matches} windows)")
        for j in report.judged:
            if j.verdict:
                why.setdefault(j.row, f"judge: rephrase of {j.item_id} (cosine {j.similarity:.2f})")
        return [Rejected("contaminated", row, why[i]) if i in why else row for i, row in enumerate(rows)]


_FILTERS: dict[str, Any] = {
    "length_bounds": F.length_bounds,
    "repetition": F.repetition,
    "refusal": F.refusal,
    "language": F.language,
    "leaked_template": F.leaked_template,
    "blacklisted_words": F.blacklisted_words,
    "meta_text": meta_text,
}


@register_step("quality_filters")
class QualityFiltersStep(Step):
    """Apply named heuristic filters in order; `params` maps a filter name to its keyword options."""

    column: str
    filters: list[str] = ["length_bounds", "repetition", "refusal", "leaked_template", "language"]
    params: dict[str, dict[str, Any]] = {}

    def input_columns(self) -> set[str]:
        return {self.column}

    def setup(self, ctx: StepContext) -> None:
        self._bound()

    def _bound(self) -> list[Any]:
        unknown = [f for f in self.filters if f not in _FILTERS]
        if unknown:
            raise ConfigError(f"step {self.name!r}: unknown filters {unknown}; known: {', '.join(_FILTERS)}")
        return [F.named(_FILTERS[f], f, **self.params.get(f, {})) for f in self.filters]

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        bound = self._bound()
        out: list[Any] = []
        for row in rows:
            ok, name, reason = F.run_filters(str(row.get(self.column) or ""), bound)
            out.append(row if ok else Rejected(name, row, reason))
        return out


@register_step("perplexity_filter")
class PerplexityFilterStep(Step):
    """Perplexity under a reference LM, with bounds: above `max_perplexity` the model finds the
    text garbled (broken markup, wrong language, word salad); below `min_perplexity` it finds it
    too predictable (boilerplate, loops). Thresholds depend on the scoring model: look at the
    written column (or `synthloom inspect`) on a sample before setting them."""

    column: str
    model: str = "scorer"  # model role; must be able to score text (the embedded backend can)
    max_perplexity: float | None = None
    min_perplexity: float | None = None
    score_column: str = "perplexity"

    def input_columns(self) -> set[str]:
        return {self.column}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {self.score_column}

    def model_roles(self) -> set[str]:
        return {self.model}

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        texts = _texts(rows, self.column)
        nonempty = [i for i, t in enumerate(texts) if t.strip()]
        scores: list[Any] = [InvalidRequestError("empty text: nothing to score")] * len(rows)
        for i, scored in zip(nonempty, await score_each(ctx, self.model, [texts[i] for i in nonempty])):
            scores[i] = scored
        out: list[Any] = []
        for row, scored in zip(rows, scores):
            if not isinstance(scored, TextScore):
                out.append(Rejected("unscorable", row, str(scored)))
                continue
            ppl = scored.perplexity
            tagged = {**row, self.score_column: round(ppl, 4)}
            if self.max_perplexity is not None and ppl > self.max_perplexity:
                out.append(Rejected("perplexity_high", tagged, f"perplexity {ppl:.1f} > {self.max_perplexity}"))
            elif self.min_perplexity is not None and ppl < self.min_perplexity:
                out.append(Rejected("perplexity_low", tagged, f"perplexity {ppl:.1f} < {self.min_perplexity}"))
            else:
                out.append(tagged)
        return out
