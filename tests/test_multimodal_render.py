"""Pix2Struct pieces in real headless Chromium: visible-text simplification, linearisation, masking."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image, ImageChops, ImageDraw

from synthloom.multimodal.html_synth import synth_page
from synthloom.multimodal.mask import choose_masked, mask_image
from synthloom.multimodal.render import BrowserPool
from synthloom.multimodal.simplify import (
    choose_subtree,
    linearize,
    simplify,
    spans,
    texts,
)

pytestmark = pytest.mark.browser

VISIBILITY_PAGE = """<!doctype html><html><head><style>body{margin:10px;font:16px sans-serif}</style></head><body>
<h1>Visible heading</h1>
<p>First visible paragraph with <b>bold words</b> inside.</p>
<div style="display:none">hidden by display none</div>
<p style="visibility:hidden">hidden by visibility</p>
<div style="visibility:hidden"><span style="visibility:visible">child made visible</span> parent hidden text</div>
<p style="opacity:0">hidden by opacity</p>
<span style="position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)">screen reader only</span>
<div style="width:40px;height:0;overflow:hidden">clipped to nothing</div>
<div style="position:absolute;left:-5000px;top:20px">off screen left</div>
<ul><li>list item one</li><li>list item two</li></ul>
<img src="pics/cat.png" alt="a sleeping cat" width="60" height="40">
<img src="pics/hidden.png" alt="hidden image" style="display:none">
<script>var neverShown = "script text";</script>
<div style="height:2000px"></div>
<p>below the fold text</p>
</body></html>"""
VISIBLE = ["Visible heading", "First visible paragraph with", "bold words", "inside.", "child made visible",
           "list item one", "list item two"]


def render_all(jobs: list[tuple[str, tuple[int, int]]], size: int = 1):
    async def go():
        async with BrowserPool(size) as pool:
            return await asyncio.gather(*(pool.render(html, vp) for html, vp in jobs))
    return asyncio.run(go())


def test_simplified_html_holds_exactly_the_visible_text():
    (rendered,) = render_all([(VISIBILITY_PAGE, (800, 600))])
    tree = simplify(rendered.dom)
    assert texts(tree) == VISIBLE
    target = linearize(tree)
    for hidden in ["display none", "hidden by visibility", "parent hidden", "opacity", "screen reader",
                   "clipped", "off screen", "below the fold", "script text", "hidden image", "hidden.png"]:
        assert hidden not in target
    # images keep only their file name and alt text, no directories, tags or styles
    assert "<img_src=cat.png img_alt=a sleeping cat>" in target
    assert "pics/" not in target and "style=" not in target and "<li>" not in target and "<ul" not in target
    assert rendered.png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(rendered.png)).size == (800, 600)


def test_linearisation_collapses_single_child_chains_and_viewport_limits_text():
    page = ('<body style="margin:0;font:16px sans-serif"><div><div><section><p>Hello <i>there</i></p></section></div></div>'
            '<img src="http://x.org/a/b/z.png?q=1" alt="Alt" width="30" height="30"><p style="margin-top:300px">far</p></body>')
    small, tall = render_all([(page, (300, 120)), (page, (300, 800))])
    assert linearize(simplify(small.dom)) == "<<Hello <there>> <img_src=z.png img_alt=Alt>>"
    assert linearize(simplify(tall.dom)) == "<<Hello <there>> <img_src=z.png img_alt=Alt> <far>>"


def test_masked_screenshot_differs_only_inside_masked_spans():
    page = synth_page(7)
    (rendered,) = render_all([(page.html, (640, 480))])
    tree = simplify(rendered.dom)
    all_spans = spans(tree)
    assert len(all_spans) >= 4
    chosen = choose_masked(len(all_spans), 0.5, seed=3)
    assert len(chosen) == round(0.5 * len(all_spans))
    masked_png, painted = mask_image(rendered.png, [all_spans[i].box for i in chosen])
    assert len(painted) == len(chosen)
    before = Image.open(io.BytesIO(rendered.png)).convert("RGB")
    after = Image.open(io.BytesIO(masked_png)).convert("RGB")
    diff = ImageChops.difference(before, after).convert("L").point(lambda v: 255 if v else 0)
    region = Image.new("L", before.size, 0)
    for x0, y0, x1, y1 in painted:
        ImageDraw.Draw(region).rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
        assert diff.crop((x0, y0, x1, y1)).getbbox() is not None  # every masked span changed
    outside = ImageChops.multiply(diff, ImageChops.invert(region))
    assert outside.getbbox() is None  # nothing changed outside the masked spans


def test_subtree_choice_respects_the_budget():
    (rendered,) = render_all([(synth_page(3).html, (1024, 768))])
    tree = simplify(rendered.dom)
    full = linearize(tree)
    sub = choose_subtree(tree, budget=len(full) // 2)
    assert sub is not None and len(linearize(sub)) <= len(full) // 2
    assert linearize(sub) in full
    assert choose_subtree(tree, budget=len(full)) is tree
