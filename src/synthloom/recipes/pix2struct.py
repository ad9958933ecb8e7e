"""pix2struct: screenshot-parsing data rendered in real headless Chromium (Lee et al. 2023, arXiv 2210.03347).

Pages (a user's directory of HTML files, or random realistic pages made here, optionally with
model-written paragraphs) are rendered at several viewport sizes by a browser pool. Each row is
a screenshot and its target: the simplified HTML of the largest visible subtree that fits the
budget (visible text, image file names and alt text, in bracket notation). The masking variant
covers ~50% of the target's text spans in the image; its target stays the full subtree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from synthloom.errors import BadInputError
from synthloom.pipeline.builtins import Select
from synthloom.pipeline.model_step import ModelStep
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.recipes.multimodal_steps import (
    BuildPage,
    ExportMultimodal,
    MaskSpans,
    RenderPages,
)
from synthloom.recipes.registry import RecipeOptions

NAME = "pix2struct"
DESCRIPTION = "Pix2Struct: web pages rendered in headless Chromium -> screenshot + simplified-HTML target (+ masked variant)."

OUTPUT_COLUMNS = ["page_id", "image", "target", "viewport", "variant", "unmasked_image", "masked_boxes",
                  "subtree_box", "whole_page"]


def parse_viewports(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d{2,5})\s*[xX]\s*(\d{2,5})\s*", part)
        if not m:
            raise ValueError(f"viewport {part.strip()!r} must look like WIDTHxHEIGHT, e.g. 1024x1024")
        sizes.append((int(m.group(1)), int(m.group(2))))
    return sizes


class Options(RecipeOptions):
    html_dir: str | None = Field(None, description="directory of .html pages to render (default: synthesise pages)")
    num_pages: int = Field(8, ge=1, description="synthesised pages (ignored with html_dir)")
    page_seed: int = Field(0, ge=0, description="first seed of the synthesised pages")
    viewports: str = Field("1024x1024,800x600", description="comma-separated WIDTHxHEIGHT viewport sizes")
    mask: Literal["none", "masked", "both"] = Field("both", description="emit unmasked rows, masked rows, or both")
    mask_ratio: float = Field(0.5, gt=0, le=1, description="fraction of the target's text spans masked in the image")
    budget: int = Field(3000, ge=50, description="max characters of a target (largest visible subtree that fits)")
    pool_size: int = Field(2, ge=1, le=32, description="browser pages rendering in parallel")
    model_text: bool = Field(False, description="synthesised pages get paragraphs written by the generator model")
    max_tokens: int = Field(160, ge=16, description="token budget of model-written page text")

    @field_validator("viewports")
    @classmethod
    def _check_viewports(cls, v: str) -> str:
        parse_viewports(v)
        return v


def html_dir_rows(directory: str) -> list[dict]:
    root = Path(directory)
    if not root.is_dir():
        raise BadInputError(f"html_dir {root} is not a directory")
    rows = []
    for path in sorted(root.rglob("*.htm*")):
        try:
            html = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            html = path.read_text(encoding="latin-1")
        rows.append({"page_id": str(path.relative_to(root)), "html": html, "asset_dir": str(path.parent.resolve())})
    if not rows:
        raise BadInputError(f"html_dir {root} holds no .html files")
    return rows


def build(options: Options) -> Pipeline:
    steps: list = []
    if options.html_dir:
        source = Source(generator=lambda: html_dir_rows(options.html_dir or ""),
                        description=f"HTML pages in {options.html_dir}")
    else:
        def specs() -> list[dict]:
            from synthloom.multimodal.html_synth import TOPICS

            topics = sorted(TOPICS)
            return [{"page_seed": options.page_seed + i, "topic": topics[(options.page_seed + i) % len(topics)]}
                    for i in range(options.num_pages)]

        source = Source(generator=specs, description=f"{options.num_pages} synthesised page specs")
        if options.model_text:
            # filler prose for the page: the target is parsed from what renders, so a cut-off paragraph
            # is still a correct (page, target) pair
            steps.append(ModelStep(name="write_text", prompt="pix2struct_text.j2", output="page_text",
                                   temperature=0.8, max_tokens=options.max_tokens, allow_truncated=True))
        steps.append(BuildPage(name="build_page", text_column="page_text" if options.model_text else None))
    steps.append(RenderPages(name="render", viewports=parse_viewports(options.viewports), budget=options.budget,
                             pool_size=options.pool_size))
    columns = [c for c in OUTPUT_COLUMNS if c not in ("variant", "unmasked_image", "masked_boxes")]
    if options.mask != "none":
        steps.append(MaskSpans(name="mask", ratio=options.mask_ratio, keep_unmasked=options.mask == "both"))
        columns = OUTPUT_COLUMNS
    steps.append(Select(name="columns", columns=columns))
    steps.append(ExportMultimodal(name="export", filename="pix2struct", image_columns=["image"]))
    return Pipeline(NAME, steps, source=source, models={"generator": "embedded"}, description=DESCRIPTION,
                    options={"image_columns": ["image"]}, shard_size=16)
