"""llava: LLaVA-style visual instruction data with answers verified against a scene graph.

Liu et al. 2023, "Visual Instruction Tuning" (arXiv 2304.08485). Each image has a symbolic
description: captions, and normalised boxes `category: [x1, y1, x2, y2]`. A text-only model
(role `generator`) writes the three LLaVA data types "as if seeing the image": conversation
(captions only), detailed description and complex reasoning (captions + boxes). Images are
synthetic scenes drawn with Pillow whose scene graph is the ground truth, so questions about
counts, colours, left/right and labels are checked, and every object, colour, count and relation
a description or free-form answer mentions must exist in the graph; rows whose answers are wrong
or name nothing checkable never reach train (`scene` is a required check). A COCO-style JSON (images + boxes + captions) works
as input too. The `qa` type adds graph-generated questions answered by the model and verified.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthloom.pipeline.builtins import Select
from synthloom.pipeline.model_step import ModelStep
from synthloom.pipeline.pipeline import Branch, Pipeline, Source
from synthloom.recipes.multimodal_steps import (
    DrawScenes,
    ExportMultimodal,
    LlavaFormat,
    ParseLlava,
    SceneQuestions,
    VerifySceneAnswers,
)
from synthloom.recipes.registry import RecipeOptions

NAME = "llava"
DESCRIPTION = ("LLaVA: scene images + captions/boxes -> conversation, detail, reasoning (and QA), "
               "verified against the scene graph.")

TYPES = ("conversation", "detail", "reasoning", "qa")
REQUIRED = ["scene"]  # every answer of a row checked against the scene graph and right
OUTPUT_COLUMNS = ["id", "image", "type", "conversations", "turns", "turn_checks", "captions", "boxes", "scene"]


class Options(RecipeOptions):
    num_scenes: int = Field(8, ge=1, description="synthetic scenes to draw (ignored with coco)")
    scene_seed: int = Field(0, ge=0, description="first seed of the synthetic scenes")
    width: int = Field(336, ge=64, le=2048, description="scene width in pixels")
    height: int = Field(252, ge=64, le=2048, description="scene height in pixels")
    max_objects: int = Field(6, ge=1, le=12, description="most shapes in a scene")
    coco: str | None = Field(None, description="COCO-style instances JSON to use instead of synthetic scenes")
    coco_captions: str | None = Field(None, description="COCO-style captions JSON (optional)")
    image_dir: str | None = Field(None, description="folder of the COCO images (default: beside the JSON)")
    types: list[Literal["conversation", "detail", "reasoning", "qa"]] = Field(
        list(TYPES), description="which data types to generate")
    questions_per_scene: int = Field(2, ge=1, le=10, description="qa type: graph-checkable questions per scene")
    reject_wrong: bool = Field(True, description="reject rows whose checkable answers contradict the scene graph")
    temperature: float = Field(0.7, ge=0, description="sampling temperature")
    max_tokens: int = Field(256, ge=16, description="token budget of each model answer")


def _model(name: str, template: str, options: Options, system: str | None = None) -> ModelStep:
    return ModelStep(name=name, prompt=template, system=system, output="response",
                     temperature=options.temperature, max_tokens=options.max_tokens)


def type_steps(kind: str, options: Options) -> list:
    verify = VerifySceneAnswers(name="verify", reject_wrong=options.reject_wrong)
    if kind == "conversation":  # captions only: the prompt template reads no boxes (pitfall i)
        return [_model("generate", "llava_conversation.j2", options, "llava_conversation_system.j2"),
                ParseLlava(name="parse", mode="conversation"), verify]
    if kind == "detail":
        return [_model("generate", "llava_detail.j2", options, "llava_detail_system.j2"),
                ParseLlava(name="parse", mode="detail"), verify]
    if kind == "reasoning":
        return [_model("generate", "llava_reasoning.j2", options, "llava_reasoning_system.j2"),
                ParseLlava(name="parse", mode="reasoning"), verify]
    return [SceneQuestions(name="questions", per_scene=options.questions_per_scene),
            _model("answer", "llava_qa.j2", options), ParseLlava(name="parse", mode="qa"), verify]


def build(options: Options) -> Pipeline:
    if options.coco:
        from synthloom.multimodal.coco import load_coco

        source = Source(generator=lambda: load_coco(options.coco or "", options.image_dir, options.coco_captions),
                        description=f"COCO-style images from {options.coco}")
    else:
        def scenes() -> list[dict]:
            from synthloom.multimodal.scenes import random_scene

            return [{"scene_id": f"scene-{options.scene_seed + i}",
                     "scene": random_scene(options.scene_seed + i, options.width, options.height,
                                           max_objects=options.max_objects).to_dict()}
                    for i in range(options.num_scenes)]

        source = Source(generator=scenes, description=f"{options.num_scenes} synthetic scenes")
    steps = [
        DrawScenes(name="draw"),
        Branch(name="types", branches={t: type_steps(t, options) for t in options.types}, branch_column="type"),
        LlavaFormat(name="format"),
        Select(name="columns", columns=OUTPUT_COLUMNS),
        ExportMultimodal(name="export", filename="llava", image_columns=["image"], llava_json=True,
                         required_checks=REQUIRED),
    ]
    return Pipeline(NAME, steps, source=source, models={"generator": "embedded"}, description=DESCRIPTION,
                    options={"image_columns": ["image"]}, shard_size=16,
                    required_checks=["scene"])  # every answer checked against the scene graph
