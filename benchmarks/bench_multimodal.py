"""Multimodal throughput: Chromium render pages/s (browser pool vs one page, sequential) and scenes/s.

Renders the same synthesised pages (screenshot + DOM walk + simplification) twice: with a
BrowserPool of `--pool` pages rendering concurrently, and with a single page rendering one after
another (the baseline); prints pages/s of each and the ratio. Then draws and PNG-encodes random
scenes (scene graph -> Pillow image -> captions/boxes) and prints scenes/s.

    .venv/bin/python benchmarks/bench_multimodal.py [--pages 24] [--pool 4] [--scenes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import time

from synthloom.multimodal.html_synth import synth_page
from synthloom.multimodal.render import BrowserPool
from synthloom.multimodal.scenes import boxes_text, captions, draw_scene, random_scene
from synthloom.multimodal.simplify import linearize, simplify

VIEWPORT = (1024, 768)


async def render_pool(pages: list[str], size: int) -> float:
    async with BrowserPool(size) as pool:
        await pool.render(pages[0], VIEWPORT)  # warm-up, not timed
        start = time.perf_counter()
        results = await asyncio.gather(*(pool.render(p, VIEWPORT) for p in pages))
        elapsed = time.perf_counter() - start
    assert all(linearize(simplify(r.dom)) for r in results)
    return len(pages) / elapsed


async def render_sequential(pages: list[str]) -> float:
    async with BrowserPool(1) as pool:
        await pool.render(pages[0], VIEWPORT)
        start = time.perf_counter()
        for p in pages:
            r = await pool.render(p, VIEWPORT)
            linearize(simplify(r.dom))
        elapsed = time.perf_counter() - start
    return len(pages) / elapsed


def scenes_per_second(n: int) -> float:
    start = time.perf_counter()
    for seed in range(n):
        scene = random_scene(seed)
        buf = io.BytesIO()
        draw_scene(scene).save(buf, format="PNG")
        captions(scene, seed)
        boxes_text(scene)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=24)
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="8 pages, pool of 2, 50 scenes")
    args = ap.parse_args()
    if args.quick:
        args.pages, args.pool, args.scenes = 8, 2, 50
    pages = [synth_page(i).html for i in range(args.pages)]
    seq = asyncio.run(render_sequential(pages))
    pooled = asyncio.run(render_pool(pages, args.pool))
    print(f"render {VIEWPORT[0]}x{VIEWPORT[1]}: single page sequential {seq:.2f} pages/s, "
          f"pool of {args.pool} {pooled:.2f} pages/s, ratio {pooled / seq:.2f}x")
    print(f"scenes (draw + PNG + captions + boxes): {scenes_per_second(args.scenes):.1f} scenes/s")


if __name__ == "__main__":
    main()
