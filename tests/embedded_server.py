"""A real `synthloom serve` subprocess on a free loopback port, for tests that talk HTTP to it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_embedded(model: str = "embedded?n_slots=4&n_ctx=4096", *extra: str, start_timeout: float = 120) -> Iterator[str]:
    """Start the server, wait for /health, yield its base URL (no /v1), stop it on exit."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "synthloom.llm.server", "--model", model, "--port", str(port), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"synthloom serve exited early: {proc.stderr.read()[-500:]}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"synthloom serve did not answer /health within {start_timeout:.0f} s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
