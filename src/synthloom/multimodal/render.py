"""Render HTML in headless Chromium (Debian's `chromium`, driven by Playwright) with a page pool.

Each render returns the viewport screenshot (PNG) and the DOM walk of `dom.js`: elements with
their boxes, visible text fragments with their line rectangles, images with src and alt text.
Pages are served from a fake origin (http://synthloom.local/) through request interception, so
relative image paths resolve to the page's asset directory (or a generated placeholder) and no
request ever leaves the machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlparse

from synthloom.errors import ConfigError

ORIGIN = "http://synthloom.local"
PAGE_URL = f"{ORIGIN}/__page__.html"
# Flags that work as root in a container; without the background-networking ones Chromium keeps
# retrying the (closed) network for updates, safe-browsing lists and sync.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", "--font-render-hinting=none"]
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp", ".svg": "image/svg+xml"}
DOM_JS = (Path(__file__).with_name("dom.js")).read_text(encoding="utf-8")


def find_chromium() -> str:
    """The Chromium executable: $SYNTHLOOM_CHROMIUM, else the first of the usual names on PATH."""
    env = os.environ.get("SYNTHLOOM_CHROMIUM")
    if env:
        if not Path(env).exists():
            raise ConfigError(f"SYNTHLOOM_CHROMIUM={env} does not exist")
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError("Chromium not found: install it (apt-get install chromium) or set SYNTHLOOM_CHROMIUM")


@dataclass
class Rendered:
    png: bytes
    dom: dict[str, Any]  # {"width", "height", "root"}: see dom.js
    viewport: tuple[int, int]


@dataclass
class _Job:
    html: str
    asset_dir: Path | None


def placeholder_png(name: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """A flat picture whose colour depends on the file name (stands in for missing images)."""
    from PIL import Image, ImageDraw

    h = hashlib.sha256(name.encode()).digest()
    img = Image.new("RGB", size, (64 + h[0] % 160, 64 + h[1] % 160, 64 + h[2] % 160))
    ImageDraw.Draw(img).line([(0, 0), size], fill=(255, 255, 255), width=2)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class BrowserPool:
    """One Chromium process with `size` pages (each in its own context) rendering concurrently.

    Use `async with BrowserPool(size) as pool: await pool.render(html, (w, h))`.
    """

    def __init__(self, size: int = 2, executable: str | None = None, timeout_ms: int = 20000):
        if size < 1:
            raise ConfigError("browser pool size must be >= 1")
        self.size, self.timeout_ms = size, timeout_ms
        self.executable = executable or find_chromium()
        self._pw: Any = None
        self._browser: Any = None
        self._pages: asyncio.Queue | None = None
        self._jobs: dict[int, _Job] = {}

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        self._pw = await async_playwright().start()
        try:
            # launch() gives every browser a fresh temporary profile (user-data dir) of its own
            self._browser = await self._pw.chromium.launch(
                executable_path=self.executable, headless=True, args=CHROMIUM_ARGS, timeout=60000)
        except PlaywrightError as e:
            await self._pw.stop()
            raise ConfigError(f"cannot start Chromium at {self.executable}: {str(e).splitlines()[0]}") from None
        self._pages = asyncio.Queue()
        for i in range(self.size):
            context = await self._browser.new_context(device_scale_factor=1)
            page = await context.new_page()
            page.set_default_timeout(self.timeout_ms)
            await page.route("**/*", self._handler(i))
            await self._pages.put((i, page))

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        if self._pw is not None:
            await self._pw.stop()
            self._pw = None

    def _handler(self, slot: int) -> Any:
        async def handle(route: Any) -> None:  # one-argument handler: Playwright passes only the route
            await self._serve(route, slot)
        return handle

    async def _serve(self, route: Any, slot: int) -> None:
        url = route.request.url
        if not url.startswith(ORIGIN + "/"):
            await route.abort()  # never touch the network
            return
        job = self._jobs.get(slot)
        if url == PAGE_URL and job is not None:
            await route.fulfill(status=200, content_type="text/html; charset=utf-8", body=job.html)
            return
        rel = unquote(urlparse(url).path).lstrip("/")
        suffix = Path(rel).suffix.lower()
        if job is not None and job.asset_dir is not None:
            base = job.asset_dir.resolve()
            path = (base / rel).resolve()
            if path.is_file() and path.is_relative_to(base):
                await route.fulfill(status=200, body=path.read_bytes(),
                                    content_type=IMAGE_TYPES.get(suffix, "application/octet-stream"))
                return
        if suffix in IMAGE_TYPES:
            await route.fulfill(status=200, content_type="image/png", body=placeholder_png(rel))
            return
        await route.fulfill(status=404, body="")

    async def render(self, html: str, viewport: tuple[int, int], asset_dir: str | Path | None = None) -> Rendered:
        if self._pages is None:
            raise RuntimeError("BrowserPool.render called before start()")
        slot, page = await self._pages.get()
        try:
            self._jobs[slot] = _Job(html, Path(asset_dir) if asset_dir else None)
            await page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
            await page.goto(PAGE_URL, wait_until="load")
            dom = await page.evaluate(DOM_JS)
            png = await page.screenshot(type="png", animations="disabled", caret="hide")
            return Rendered(png=png, dom=dom, viewport=viewport)
        finally:
            self._jobs.pop(slot, None)
            await self._pages.put((slot, page))


class SharedPool:
    """A BrowserPool shared by concurrent callers in one event loop, closed when the last one leaves.

    Pipeline steps process several shards at once; they all use one browser through this, and
    the browser goes away when no shard is rendering (steps have no teardown hook).
    """

    def __init__(self, size: int):
        self.size = size
        self._pool: BrowserPool | None = None
        self._users = 0
        self._lock: asyncio.Lock | None = None

    async def acquire(self) -> BrowserPool:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._pool is None:
                pool = BrowserPool(self.size)
                await pool.start()
                self._pool = pool
            self._users += 1
            return self._pool

    async def release(self) -> None:
        assert self._lock is not None
        async with self._lock:
            self._users -= 1
            if self._users == 0 and self._pool is not None:
                pool, self._pool = self._pool, None
                await pool.close()
                self._lock = None
