"""Multimodal data: web-page rendering for Pix2Struct targets and synthetic scenes for LLaVA-style data.

Modules: `html_synth` (random realistic pages), `render` (Playwright/Chromium browser pool),
`simplify` (visible-node linearisation), `mask` (span masking in the image), `scenes` (scene
graphs drawn with Pillow), `scene_verify` (answers checked against the graph), `coco` (COCO-style
inputs), `images` (PNG files in the run directory and image columns in Parquet).
"""
