"""backtranslation: back-translated parallel data with Gamma selection (Xu et al. 2022, arXiv 2310.13675).

Monolingual target-side sentences (bundled English sample, or --input with a `target` column and
an optional `reference` = the true source) -> the `backward` model writes K candidate sources
(one greedy, K-1 sampled) -> each candidate gets a quality score (round-trip chrF/BLEU through
the `forward` model, or the backward log-prob) and an importance score ((log p_LM - log p_bt) /
length with the `lm` model), both z-normalised within the sentence's candidates and mixed as
gamma = w * importance + (1 - w) * quality (w = 0.2) -> one candidate kept per sentence by argmax
or Gamma sampling. Absolute floors first: candidates that copy the input (chrF to it above
`max_source_similarity`) or whose round trip falls below `min_round_trip` chrF are dropped, and a
sentence with none left keeps no row -> (source, target) pairs, plus `bt_report.json` (Self-BLEU, chrF to references).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.recipes.bt_steps import (
    BackTranslateCandidates,
    BTReport,
    GammaSelect,
    ScoreCandidates,
)
from synthloom.recipes.cai_steps import bundled_lines
from synthloom.recipes.registry import RecipeOptions

NAME = "backtranslation"
DESCRIPTION = "Back-translation: K candidate sources per sentence, Gamma score (quality + importance), selection."


class Options(RecipeOptions):
    source_lang: str = Field("French", description="language of the synthetic sources (the backward model writes it)")
    target_lang: str = Field("English", description="language of the monolingual input sentences")
    num_sentences: int = Field(10, ge=1, description="bundled sentences used when no --input is given")
    candidates: int = Field(4, ge=1, le=64, description="candidates per sentence, K (paper: 50, duplicates removed)")
    greedy: bool = Field(True, description="make one of the K candidates greedy (beam-like)")
    temperature: float = Field(1.0, ge=0, description="sampling temperature of the other candidates")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling of the other candidates")
    quality: Literal["chrf", "bleu", "backward_logprob"] = Field(
        "chrf", description="quality score: round-trip chrF/BLEU via the forward model, or backward log-prob")
    gamma_weight: float = Field(0.2, ge=0, le=1, description="weight of importance in the Gamma score (0 = no lm)")
    min_round_trip: float = Field(0.4, ge=0, le=1, description="drop candidates whose round-trip chrF is below "
                                                                 "this (0 = off, no forward model with backward_logprob)")
    max_source_similarity: float = Field(0.8, gt=0, le=1, description="drop candidates whose chrF to the input "
                                                                        "sentence is above this (copies)")
    selection: Literal["top1", "sample"] = Field("top1", description="top1: argmax Gamma; sample: Gamma sampling")
    sampling_temperature: float = Field(1.0, gt=0, description="Gamma sampling: softmax(gamma / temperature)")
    double_exp: bool = Field(False, description="Gamma sampling from softmax(exp(gamma)) as in the official code")
    tag: bool = Field(False, description="prefix synthetic sources with <BT> (tagged back-translation)")
    max_tokens: int = Field(64, ge=8, description="token budget of each translation")


def build(options: Options) -> Pipeline:
    langs = {"source_lang": options.source_lang, "target_lang": options.target_lang}
    steps = [
        BackTranslateCandidates(name="candidates", k=options.candidates, greedy=options.greedy,
                                temperature=options.temperature, top_p=options.top_p,
                                max_tokens=options.max_tokens, **langs),
        ScoreCandidates(name="score", quality=options.quality, weight=options.gamma_weight,
                        min_round_trip=options.min_round_trip, max_source_similarity=options.max_source_similarity,
                        max_tokens=options.max_tokens, **langs),
        GammaSelect(name="select", method=options.selection, temperature=options.sampling_temperature,
                    double_exp=options.double_exp, tag=options.tag),
        BTReport(name="report"),
    ]

    def sentences() -> list[dict]:
        return [{"target": s} for s in bundled_lines("bt_monolingual.txt")[: options.num_sentences]]

    return Pipeline(NAME, steps, source=Source(generator=sentences, description="bundled English sentences"),
                    models={"backward": "embedded", "forward": "embedded", "lm": "embedded"},
                    description=DESCRIPTION,
                    required_checks=["bt_floors"])  # the kept source passed the round-trip floor and copy ceiling
