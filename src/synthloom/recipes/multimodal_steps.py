"""Pipeline steps for the multimodal recipes (pix2struct, llava).

Images travel as PNG files under `run_dir/images/`, referenced by relative path in an `image`
column; `export_multimodal` writes the Parquet file with embedded images and the LLaVA JSON.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import PrivateAttr

from synthloom.errors import ConfigError
from synthloom.multimodal import images as img_io
from synthloom.multimodal.html_synth import synth_page
from synthloom.multimodal.mask import choose_masked, draw_outline, mask_image
from synthloom.multimodal.render import SharedPool
from synthloom.multimodal.scene_verify import check_answer, scene_questions
from synthloom.multimodal.scenes import Scene, boxes_text, captions, draw_scene
from synthloom.multimodal.simplify import (
    bounding_box,
    choose_subtree,
    linearize,
    simplify,
    spans,
)
from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.records import META, Row, meta_of
from synthloom.verdicts import Verdict

SCENE_METHOD = "scene_graph:question_rules+mentions"

# LLaVA pairs each detailed description with one of these instructions (gist of its list)
DETAIL_INSTRUCTIONS = (
    "Describe the following image in detail.",
    "Provide a detailed description of the given image.",
    "Give an elaborate explanation of the image you see.",
    "Share a comprehensive rundown of the presented image.",
    "Offer a thorough analysis of the image.",
    "Explain the various aspects of the image before you.",
    "Clarify the contents of the displayed image with great detail.",
    "Write an exhaustive depiction of the given image.",
)


def _run_dir(ctx: StepContext) -> Path:
    if ctx.run_dir is None:
        raise ConfigError(f"step {ctx.step_name!r} stores images and needs a run directory")
    return Path(ctx.run_dir)


# --- Pix2Struct ---------------------------------------------------------------------------------

@register_step("synth_page")
class BuildPage(Step):
    """A random realistic HTML page per row from `page_seed` (+ `topic`), optionally with model text."""

    text_column: str | None = None  # model-written paragraphs (blank-line separated) to put in the page

    def input_columns(self) -> set[str]:
        return {"page_seed"} | ({self.text_column} if self.text_column else set())

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"page_id", "html"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out = []
        for row in rows:
            texts = None
            if self.text_column:
                texts = [t.strip() for t in re.split(r"\n\s*\n", str(row.get(self.text_column) or "")) if t.strip()]
            page = synth_page(int(row["page_seed"]), row.get("topic"), texts)
            out.append(ctx.derive(row, {"page_id": page.page_id, "html": page.html}))
        return out


@register_step("render_pages")
class RenderPages(Step):
    """Render each page in headless Chromium at every viewport: screenshot + simplified-HTML target.

    The target is the largest visible subtree whose linearisation fits `budget` characters; when
    it is not the whole page its bounding box is drawn on the screenshot (Pix2Struct).
    """

    viewports: list[tuple[int, int]] = [(1024, 1024)]
    budget: int = 3000
    pool_size: int = 2
    html_column: str = "html"

    _shared: SharedPool | None = PrivateAttr(default=None)

    def input_columns(self) -> set[str]:
        return {self.html_column}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"image", "target", "viewport", "spans", "subtree_box", "whole_page"}

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        if self._shared is None:
            self._shared = SharedPool(self.pool_size)
        pool = await self._shared.acquire()
        try:
            jobs = [(row, tuple(vp)) for row in rows for vp in self.viewports]
            results = await asyncio.gather(*(pool.render(str(row[self.html_column]), vp, row.get("asset_dir"))
                                             for row, vp in jobs), return_exceptions=True)
        finally:
            await self._shared.release()
        per_row: dict[int, list[Any]] = {id(r): [] for r in rows}
        for (row, vp), res in zip(jobs, results):
            per_row[id(row)].append(self._one(row, vp, res, ctx))
        return [per_row[id(r)] for r in rows]

    def _one(self, row: Row, vp: tuple[int, int], res: Any, ctx: StepContext) -> Any:
        size = f"{vp[0]}x{vp[1]}"
        if isinstance(res, BaseException):
            return Rejected("render_error", row, f"{size}: {str(res).splitlines()[0][:200]}")
        tree = simplify(res.dom)
        if tree is None:
            return Rejected("nothing_visible", row, size)
        sub = choose_subtree(tree, self.budget)
        if sub is None:
            return Rejected("target_too_long", row, f"{size}: no visible subtree fits {self.budget} characters")
        box = bounding_box(sub)
        png = res.png if sub is tree or box is None else draw_outline(res.png, box)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(row.get("page_id", "page")))[:40] + f"-{size}"
        image = img_io.save_png(_run_dir(ctx), png, stem)
        return ctx.derive(row, {"image": image, "target": linearize(sub), "viewport": list(vp),
                                "spans": [list(s.box) for s in spans(sub)],
                                "subtree_box": list(box) if box else None, "whole_page": sub is tree})


@register_step("mask_spans")
class MaskSpans(Step):
    """Masking variant: cover `ratio` of the target's text spans in the image; the target is unchanged."""

    ratio: float = 0.5
    keep_unmasked: bool = True

    def input_columns(self) -> set[str]:
        return {"image", "spans"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"variant", "masked_boxes", "unmasked_image"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        if not 0 < self.ratio <= 1:
            raise ConfigError(f"step {self.name!r}: ratio must be in (0, 1], got {self.ratio}")
        out: list[Any] = []
        for row in rows:
            made: list[Any] = []
            if self.keep_unmasked:
                made.append(ctx.derive(row, {"variant": "full", "masked_boxes": [], "unmasked_image": row["image"]}))
            chosen = choose_masked(len(row["spans"]), self.ratio, ctx.seed_for(row))
            if not chosen:
                made.append(Rejected("no_text_to_mask", row))
            else:
                png = img_io.read_image_bytes(_run_dir(ctx), row["image"])
                masked, painted = mask_image(png, [row["spans"][i] for i in chosen])
                image = img_io.save_png(_run_dir(ctx), masked, "masked")
                made.append(ctx.derive(row, {"image": image, "variant": "masked", "unmasked_image": row["image"],
                                             "masked_boxes": [list(b) for b in painted]}))
            out.append(made)
        return out


# --- LLaVA ----------------------------------------------------------------------------------------

@register_step("draw_scenes")
class DrawScenes(Step):
    """Draw each scene graph (or copy the user's image), and derive captions and normalised boxes."""

    cpu_heavy: ClassVar[bool] = False  # drawing a small scene takes ~1 ms

    def input_columns(self) -> set[str]:
        return {"scene"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"image", "captions", "boxes"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out = []
        for row in rows:
            scene = Scene.from_dict(row["scene"])
            if row.get("image_ref"):
                image = img_io.save_png(_run_dir(ctx), _as_png(row["image_ref"]), "coco")
            else:
                image = img_io.save_image(_run_dir(ctx), draw_scene(scene), "scene")
            caps = list(row.get("captions") or []) or captions(scene, seed=ctx.seed_for(row))
            out.append(ctx.derive(row, {"image": image, "captions": caps, "boxes": boxes_text(scene)}))
        return out


def _as_png(path: str) -> bytes:
    import io

    from PIL import Image

    from synthloom.errors import BadInputError

    try:
        with Image.open(path) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="PNG")
            return buf.getvalue()
    except (OSError, ValueError) as e:
        raise BadInputError(f"cannot read image {path}: {e}") from None


@register_step("scene_questions")
class SceneQuestions(Step):
    """Checkable questions drawn from the scene graph (counts, colours, left/right, labels)."""

    per_scene: int = 2

    def input_columns(self) -> set[str]:
        return {"scene"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"question", "gold"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            pairs = scene_questions(Scene.from_dict(row["scene"]), ctx.seed_for(row), self.per_scene)
            out.append([ctx.derive(row, {"question": q, "gold": a}) for q, a in pairs]
                       or [Rejected("no_checkable_question", row)])
        return out


QA_BLOCK = re.compile(r"(?:Question|Q)\s*:\s*(.+?)\s*(?:===+\s*)?(?:Answer|A)\s*:\s*(.+?)\s*(?====|(?:Question|Q)\s*:|$)",
                      re.DOTALL | re.IGNORECASE)


def parse_turns(text: str, mode: str) -> list[dict[str, str]]:
    """LLaVA's `Question:\\n…\\n===\\nAnswer:\\n…\\n===` blocks as [{q, a}]; [] when there are none."""
    turns = []
    for q, a in QA_BLOCK.findall(text):
        q, a = " ".join(q.split()), a.strip().strip("=").strip()
        if q and a:
            turns.append({"q": q, "a": a})
    return turns[:1] if mode == "reasoning" else turns


@register_step("parse_llava")
class ParseLlava(Step):
    """Turn a model response into conversation turns [{q, a}] for one of the LLaVA data types."""

    mode: Literal["conversation", "detail", "reasoning", "qa"]
    column: str = "response"

    def input_columns(self) -> set[str]:
        return {self.column} | ({"question"} if self.mode == "qa" else set())

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"turns", "type"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            text = str(row[self.column]).strip()
            if self.mode == "detail":
                instr = random.Random(ctx.seed_for(row)).choice(DETAIL_INSTRUCTIONS)
                turns = [{"q": instr, "a": text}] if len(text) >= 20 else []
            elif self.mode == "qa":
                turns = [{"q": str(row["question"]), "a": text}] if text else []
            else:
                # the prompt ends with "Question:", so the completion usually starts inside the block
                if not re.match(r"\s*(?:question|q)\s*:", text, re.IGNORECASE):
                    text = "Question: " + text
                turns = parse_turns(text, self.mode)
            if not turns:
                out.append(Rejected("parse_error", row, f"no {self.mode} turns in: {text[:160]!r}"))
            else:
                out.append(ctx.derive(row, {"turns": turns, "type": self.mode}))
        return out


@register_step("verify_scene")
class VerifySceneAnswers(Step):
    """Check every answer against the scene graph; verdict in `_meta.verdicts.scene`.

    ok=True: every answer checked and right (a question-specific check, or for descriptions and
    free-form turns every object, colour, count and relation they mention holds); ok=False: some
    answer contradicts the graph or invents something (rejected as wrong_answer when
    `reject_wrong`); ok=None: some answer names nothing checkable — the recipe requires the
    `scene` check, so such rows never reach train.
    """

    reject_wrong: bool = True

    def input_columns(self) -> set[str]:
        return {"turns", "scene"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"turn_checks"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            scene = Scene.from_dict(row["scene"])
            checks = [check_answer(t["q"], t["a"], scene) for t in row["turns"]]
            row = ctx.derive(row, {"turn_checks": [c.to_dict() for c in checks]})
            wrong = [c for c in checks if c.status == "wrong"]
            unknown = [c for c in checks if c.status == "unverifiable"]
            if wrong:
                detail = "; ".join(f"{c.kind}: {c.detail}" for c in wrong)
                verdict = Verdict.failed(SCENE_METHOD, detail)
            elif unknown:
                detail = "; ".join(f"{c.kind}: {c.detail}" for c in unknown)
                verdict = Verdict.unknown(SCENE_METHOD, f"{len(unknown)} of {len(checks)} answers unverifiable: {detail}")
            else:
                verdict = Verdict.passed(SCENE_METHOD, f"all {len(checks)} answers checked against the scene graph")
            verdict.record(row, "scene")
            out.append(Rejected("wrong_answer", row, verdict.evidence) if wrong and self.reject_wrong else row)
        return out


@register_step("llava_format")
class LlavaFormat(Step):
    """LLaVA training conversations: [{from: human, value: "<image>\\n…"}, {from: gpt, value: …}, …]."""


    def input_columns(self) -> set[str]:
        return {"turns", "image"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"id", "conversations"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out = []
        for row in rows:
            conv = []
            for i, t in enumerate(row["turns"]):
                # LLaVA puts the image token first or last in the first question at random
                first = (f"<image>\n{t['q']}" if ctx.seed_for(row) % 2 else f"{t['q']}\n<image>") if i == 0 else t["q"]
                conv += [{"from": "human", "value": first}, {"from": "gpt", "value": t["a"]}]
            rid = meta_of(row).get("id", "")
            out.append(ctx.derive(row, {"id": rid, "conversations": conv}))
        return out


# --- export ---------------------------------------------------------------------------------------

@register_step("export_multimodal")
class ExportMultimodal(Step):
    """Write `data/<name>.parquet` with embedded images (a `datasets` Image feature) and, for LLaVA,
    `data/<name>.json` in LLaVA's conversation format. Rows pass through unchanged.
    """

    is_global: ClassVar[bool] = True
    filename: str = "multimodal"
    image_columns: list[str] = ["image"]
    llava_json: bool = False
    columns: list[str] | None = None  # columns of the Parquet file (default: all but _meta)
    # the pipeline's required checks: export runs before the runner's gate, so only rows the gate
    # will pass go into these training files (the rest still flow on, to be rejected there)
    required_checks: list[str] | None = None

    def input_columns(self) -> set[str]:
        return set(self.image_columns) | ({"id", "image", "conversations"} if self.llava_json else set())

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        import pyarrow.parquet as pq

        from synthloom.io import (
            PROVENANCE_KEY,
            atomic_path,
            rows_to_table,
            write_text_atomic,
        )

        from synthloom.verdicts import gate_reason

        data = _run_dir(ctx) / "data"
        keep = self.columns
        passing = rows if self.required_checks is None else [
            r for r in rows if gate_reason(r, self.required_checks) is None]
        table_rows = [{k: v for k, v in r.items() if (keep is None and k != META) or (keep and k in keep)}
                      | {META: r.get(META)} for r in passing]
        if passing:
            table = img_io.with_image_columns(rows_to_table(table_rows), self.image_columns, _run_dir(ctx))
            label = {"synthetic": True, "generator": "synthloom", "recipe": ctx.recipe}
            table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                   PROVENANCE_KEY: json.dumps(label).encode()})
            with atomic_path(data / f"{self.filename}.parquet") as tmp:
                pq.write_table(table, tmp, compression="zstd")
        if self.llava_json:
            items = [{"id": r["id"], "image": r["image"], "conversations": r["conversations"],
                      "type": r.get("type")} for r in passing]
            write_text_atomic(data / f"{self.filename}.json", json.dumps(items, ensure_ascii=False, indent=1))
        return rows
