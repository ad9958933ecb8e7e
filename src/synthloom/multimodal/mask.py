"""Pix2Struct masking: cover ~half the text spans *in the screenshot* with crossed-out opaque boxes.

The target stays the full linearised subtree (pitfall ii): only pixels change. Also draws the
chosen subtree's bounding box, which tells the model which part of the page the target covers.
"""

from __future__ import annotations

import io
import math
import random

from PIL import Image, ImageDraw

from synthloom.multimodal.simplify import Box

IntBox = tuple[int, int, int, int]


def pixel_box(box: Box | list[float], width: int, height: int) -> IntBox:
    """Outward-rounded integer box clipped to the image: [x0, x1) x [y0, y1)."""
    x0, y0, x1, y1 = box
    return (max(0, math.floor(x0)), max(0, math.floor(y0)), min(width, math.ceil(x1)), min(height, math.ceil(y1)))


def choose_masked(n_spans: int, ratio: float, seed: int) -> list[int]:
    """Indices of the spans to mask: round(ratio * n), at least one when there is any span."""
    if n_spans == 0:
        return []
    k = min(n_spans, max(1, round(ratio * n_spans)))
    return sorted(random.Random(seed).sample(range(n_spans), k))


def mask_image(png: bytes, boxes: list[Box | list[float]], fill: tuple[int, int, int] = (96, 96, 96),
               cross: tuple[int, int, int] = (255, 255, 255)) -> tuple[bytes, list[IntBox]]:
    """PNG with each box painted opaque and crossed out; returns it and the integer boxes painted.

    Every pixel changed lies inside one of the returned boxes.
    """
    img = Image.open(io.BytesIO(png)).convert("RGB")
    draw = ImageDraw.Draw(img)
    painted: list[IntBox] = []
    for box in boxes:
        x0, y0, x1, y1 = pixel_box(box, img.width, img.height)
        if x1 <= x0 or y1 <= y0:
            continue
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill)
        draw.line([(x0, y0), (x1 - 1, y1 - 1)], fill=cross, width=1)
        draw.line([(x0, y1 - 1), (x1 - 1, y0)], fill=cross, width=1)
        painted.append((x0, y0, x1, y1))
    return _png(img), painted


def draw_outline(png: bytes, box: Box | list[float], colour: tuple[int, int, int] = (220, 30, 30), width: int = 2) -> bytes:
    """PNG with a rectangle outline around `box` (Pix2Struct marks the chosen subtree this way)."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    x0, y0, x1, y1 = pixel_box(box, img.width, img.height)
    pad = width + 1
    ImageDraw.Draw(img).rectangle([max(0, x0 - pad), max(0, y0 - pad), min(img.width - 1, x1 + pad - 1),
                                   min(img.height - 1, y1 + pad - 1)], outline=colour, width=width)
    return _png(img)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
