"""A pool of warm sandboxed workers that runs many snippets in parallel.

Each worker is one long-lived interpreter inside bubblewrap (see sandbox.py) that forks a fresh,
isolated child per snippet (see worker.py), so a snippet pays for a fork instead of an interpreter
start plus a sandbox set-up. A worker that dies or stops answering is killed and replaced; the
snippet it was running is reported as killed/timeout, never retried (it may be what killed it).

Every request is followed by a fresh random nonce that the worker reads only after it has forked the
snippet's process, so no snippet ever holds it; a reply that does not carry this request's id and
nonce is rejected (the snippet counts as killed, never verified) and the worker is replaced.

The pool runs its own event loop on a background thread, so it serves both synchronous callers
(`run`, `run_batch`) and coroutines on any other loop (`run_many`, `arun`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import hmac
import itertools
import json
import logging
import os
import secrets
import sys
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from synthloom.errors import ConfigError
from synthloom.verify.code.results import ExecResult, SandboxLimits, Snippet
from synthloom.verify.code.sandbox import (
    Isolation,
    SandboxUnavailableError,
    WorkerLaunch,
    bwrap_launch,
    check_bwrap_works,
    unisolated_launch,
)
from synthloom.verify.code.worker import FRAME_HEADER, MAX_FRAME_BYTES, encode_frame

log = logging.getLogger(__name__)
T = TypeVar("T")

WORKER_START_TIMEOUT_S = 30.0
# How long past the snippet's own wall limit the pool waits for a worker before declaring it hung.
WORKER_GRACE_S = 5.0
UNISOLATED_WARNING = ("synthloom code sandbox: isolation='none' — untrusted code will run WITHOUT "
                      "namespaces: it can read your files, use the network and see other processes")


_open_pools: weakref.WeakSet[SandboxPool] = weakref.WeakSet()


@atexit.register
def _close_open_pools() -> None:
    """Pools left open at exit still remove their cgroups and scratch directories."""
    for pool in list(_open_pools):
        pool.close()


class WorkerLost(Exception):
    """The worker process died or stopped answering."""


class ForgedReply(WorkerLost):
    """A reply that is not the answer to the request in flight (wrong id or nonce)."""


class _Worker:
    """One sandboxed worker process and its framed pipe."""

    def __init__(self, launch: WorkerLaunch) -> None:
        self.launch = launch
        self.process: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[bytes] = deque(maxlen=20)
        self._stderr_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.launch.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self.launch.env, start_new_session=True)
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        try:
            hello = await asyncio.wait_for(self._read_frame(), WORKER_START_TIMEOUT_S)
        except (TimeoutError, WorkerLost) as exc:
            await self.kill()
            reason = self.stderr_tail() or f"{type(exc).__name__}"
            raise SandboxUnavailableError(f"sandbox worker failed to start: {reason}") from None
        if not hello.get("ready"):
            await self.kill()
            raise SandboxUnavailableError("sandbox worker failed to start: bad handshake")

    def stderr_tail(self) -> str:
        lines = b"".join(self._stderr_tail).decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    async def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while chunk := await self.process.stderr.read(4096):
            self._stderr_tail.append(chunk)

    async def _read_frame(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        try:
            header = await self.process.stdout.readexactly(FRAME_HEADER.size)
            (size,) = FRAME_HEADER.unpack(header)
            if size > MAX_FRAME_BYTES:
                raise WorkerLost(f"oversized frame ({size} bytes)")
            body = await self.process.stdout.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise WorkerLost("worker exited") from exc
        return json.loads(body)

    async def execute(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        nonce = secrets.token_hex(16)
        try:
            self.process.stdin.write(encode_frame(request) + encode_frame({"nonce": nonce}))
            await self.process.stdin.drain()
            reply = await asyncio.wait_for(self._read_frame(), timeout_s)
        except (ConnectionError, BrokenPipeError) as exc:
            raise WorkerLost("worker exited") from exc
        except TimeoutError as exc:
            raise WorkerLost("worker stopped answering") from exc
        except ValueError as exc:
            raise ForgedReply(f"unreadable reply ({exc})") from exc
        if not isinstance(reply, dict) or reply.get("id") != request["id"] or not hmac.compare_digest(
                str(reply.get("nonce", "")).encode(), nonce.encode()):
            raise ForgedReply("a reply without this request's id and nonce")
        return reply

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            try:
                self.process.kill()  # bwrap --die-with-parent / PID namespace take the rest down
            except ProcessLookupError:
                pass
            await self.process.wait()
        if self._stderr_task is not None:
            self._stderr_task.cancel()
        # Synchronous on purpose: at interpreter exit executor threads are no longer available.
        self.launch.release()

    async def close(self) -> None:
        if self.process is not None and self.process.stdin is not None and self.process.returncode is None:
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 2.0)
            except TimeoutError:
                pass
        await self.kill()


class SandboxPool:
    """Runs untrusted Python snippets in isolated, resource-limited processes, many at a time.

    isolation="bwrap" (default) fails closed with SandboxUnavailableError when bubblewrap or user
    namespaces are missing; isolation="none" runs without any isolation after a loud warning.
    """

    def __init__(self, workers: int | None = None, limits: SandboxLimits | None = None,
                 isolation: Isolation = "bwrap", python: str | None = None,
                 scratch_bytes: int = 256 << 20) -> None:
        if isolation not in ("bwrap", "none"):
            raise ConfigError(f"unknown sandbox isolation {isolation!r} (expected 'bwrap' or 'none')")
        self.size = workers or os.cpu_count() or 1
        if self.size < 1:
            raise ConfigError(f"sandbox pool needs at least one worker, got {workers}")
        self.limits = limits or SandboxLimits()
        self.isolation = isolation
        self.python = python or sys.executable
        self.scratch_bytes = scratch_bytes
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._idle: asyncio.Queue[_Worker | None] | None = None  # None: the pool is broken
        self._workers: set[_Worker] = set()
        self._start_lock = threading.Lock()
        self._started = False
        self._closed = False
        if isolation == "none":
            warnings.warn(UNISOLATED_WARNING, RuntimeWarning, stacklevel=2)
            log.warning(UNISOLATED_WARNING)

    # -- public API -------------------------------------------------------------------------

    def run(self, snippet: str | Snippet, limits: SandboxLimits | None = None) -> ExecResult:
        return self.run_batch([snippet], limits)[0]

    def run_batch(self, snippets: Iterable[str | Snippet], limits: SandboxLimits | None = None) -> list[ExecResult]:
        return self._submit(self._run_all(list(snippets), limits)).result()

    async def run_many(self, snippets: Iterable[str | Snippet],
                       limits: SandboxLimits | None = None) -> list[ExecResult]:
        """Run every snippet (in parallel across the workers); results come back in input order."""
        return await asyncio.wrap_future(self._submit(self._run_all(list(snippets), limits)))

    async def arun(self, snippet: str | Snippet, limits: SandboxLimits | None = None) -> ExecResult:
        return (await self.run_many([snippet], limits))[0]

    def start(self) -> SandboxPool:
        """Start every worker now (otherwise the first call does); raises if isolation is unavailable."""
        self._submit(self._ensure_started()).result()
        return self

    def close(self) -> None:
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
        if self._loop is not None and self._thread is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SandboxPool:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> SandboxPool:
        await asyncio.wrap_future(self._submit(self._ensure_started()))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.close)

    def worker_pids(self) -> list[int]:
        """Host PIDs of the live workers' outermost processes (for monitoring and tests)."""
        return [w.process.pid for w in self._workers if w.process is not None and w.process.returncode is None]

    # -- internals --------------------------------------------------------------------------

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._closed:
            coro.close()
            raise SandboxUnavailableError("sandbox pool is closed")
        with self._start_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="synthloom-sandbox",
                                                daemon=True)
                self._thread.start()
                _open_pools.add(self)
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _launch(self) -> WorkerLaunch:
        if self.isolation == "none":
            return unisolated_launch(self.python, self.limits.max_processes)
        return bwrap_launch(self.python, self.limits.max_processes, self.scratch_bytes)

    async def _spawn(self) -> _Worker:
        launch = await asyncio.to_thread(self._launch)
        worker = _Worker(launch)
        await worker.start()
        self._workers.add(worker)
        return worker

    async def _ensure_started(self) -> None:
        if self._started:
            return
        if self.isolation == "bwrap":
            await asyncio.to_thread(check_bwrap_works)
        self._idle = asyncio.Queue()
        results = await asyncio.gather(*(self._spawn() for _ in range(self.size)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self._shutdown()
            raise failures[0]
        for worker in results:
            self._idle.put_nowait(worker)  # type: ignore[arg-type]
        self._started = True

    async def _run_all(self, snippets: list[str | Snippet], limits: SandboxLimits | None) -> list[ExecResult]:
        await self._ensure_started()
        effective = limits or self.limits
        prepared = [Snippet.coerce(s) for s in snippets]
        return list(await asyncio.gather(*(self._run_one(s, effective) for s in prepared)))

    async def _run_one(self, snippet: Snippet, limits: SandboxLimits) -> ExecResult:
        assert self._idle is not None
        worker = await self._idle.get()
        if worker is None:
            self._idle.put_nowait(None)  # wake the next waiter too
            raise SandboxUnavailableError("sandbox pool is broken: a worker could not be restarted")
        wire_limits = limits.to_wire() | {"nproc_rlimit": worker.launch.nproc_rlimit(limits.max_processes)}
        request = {"id": next(self._ids), "code": snippet.code, "tests": list(snippet.tests),
                   "stdin": snippet.stdin, "limits": wire_limits}
        try:
            worker.launch.set_max_processes(limits.max_processes)
            reply = await worker.execute(request, limits.wall_s + WORKER_GRACE_S)
        except WorkerLost as exc:
            log.warning("sandbox worker lost (%s); replacing it", exc)
            self._workers.discard(worker)
            await worker.kill()
            await self._replace_worker()
            status = "timeout" if "answering" in str(exc) and not isinstance(exc, ForgedReply) else "killed"
            return ExecResult(status=status, exit_code=None, stdout="", stderr=f"sandbox worker lost: {exc}",
                              duration_s=0.0, tests_total=len(snippet.tests),
                              failed_tests=tuple(range(len(snippet.tests))))
        except BaseException:
            self._idle.put_nowait(worker)
            raise
        self._idle.put_nowait(worker)
        return ExecResult.from_wire(reply)

    async def _replace_worker(self) -> None:
        assert self._idle is not None
        try:
            self._idle.put_nowait(await self._spawn())
        except Exception as exc:
            log.error("sandbox worker could not be restarted: %s", exc)
            self._idle.put_nowait(None)

    async def _shutdown(self) -> None:
        workers, self._workers = list(self._workers), set()
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
