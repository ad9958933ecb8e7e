"""Warm sandbox worker: a long-lived interpreter that forks one clean child per snippet.

The pool starts this file with ``python -I -c <this source>`` inside bubblewrap, so it must use the
standard library only (the project tree is not mounted in the sandbox). The worker itself never
executes user code: for each request it forks a child that enters a fresh PID namespace (so it
cannot see or signal the worker), drops every capability, applies rlimits, moves into a fresh
scratch directory and runs the snippet and its tests. The worker watches the child from outside
(wall clock, output size) and wipes all writable places before the next request, so one snippet
cannot affect the next.

Wire format (worker stdin/stdout): frames of a 4-byte big-endian length and UTF-8 JSON.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import resource
import secrets
import selectors
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import types
from typing import Any, NoReturn

FRAME_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 256 << 20

# Imported once in the pristine parent so each forked child starts with them already loaded;
# this is what makes a fork cheaper than a fresh interpreter.
PRELOADED_MODULES = (
    "abc", "array", "bisect", "collections", "copy", "dataclasses", "datetime", "decimal", "enum",
    "fractions", "functools", "hashlib", "heapq", "io", "itertools", "json", "math", "operator",
    "random", "re", "statistics", "string", "sys", "textwrap", "threading", "typing", "unittest",
)

CLONE_NEWPID = 0x20000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
CHILD_SETUP_FAILED = 125
STATUS_FD = 3


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return FRAME_HEADER.pack(len(body)) + body


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def read_frame(fd: int) -> dict[str, Any] | None:
    header = _read_exact(fd, FRAME_HEADER.size)
    if header is None:
        return None
    (size,) = FRAME_HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {size} bytes is too large")
    body = _read_exact(fd, size)
    return None if body is None else json.loads(body)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


class PidNamespaces:
    """Puts each next fork into a fresh PID namespace as its PID 1 (needs CAP_SYS_ADMIN in our userns).

    unshare(CLONE_NEWPID) works only while our children's namespace is still our own, so before each
    unshare we point it back at our own namespace with setns.
    """

    def __init__(self) -> None:
        self._own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def fresh_for_next_fork(self) -> None:
        _check(_libc.setns(self._own, CLONE_NEWPID), "setns(own PID namespace)")
        _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")


def drop_all_privileges() -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable capability sets for good."""
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == errno.EINVAL:  # past the last capability this kernel knows
                break
            _check(-1, f"prctl(PR_CAPBSET_DROP, {cap})")
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


class _TestTimeout(BaseException):
    """SIGALRM: one test ran past its own limit (a BaseException, so `except Exception` can't swallow it)."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _TestTimeout()


def _exit_code_of(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _child_setup(request: dict[str, Any], scratch: str, fds: dict[str, int], drop_caps: bool) -> None:
    limits = request["limits"]
    os.setsid()
    stdin_text = request.get("stdin", "")
    if stdin_text:  # via an unlinked file: no pipe to feed, no deadlock on large input
        stdin_path = os.path.join(scratch, ".stdin")
        with open(stdin_path, "w", encoding="utf-8") as handle:
            handle.write(stdin_text)
        stdin_fd = os.open(stdin_path, os.O_RDONLY)
        os.unlink(stdin_path)
    else:
        stdin_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin_fd, 0)
    os.dup2(fds["stdout"], 1)
    os.dup2(fds["stderr"], 2)
    os.dup2(fds["status"], STATUS_FD)
    os.closerange(STATUS_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # incl. the wire to the pool
    if drop_caps:
        # Private hostname and SysV IPC: what a snippet sets or leaves there dies with it.
        _check(_libc.unshare(CLONE_NEWUTS | CLONE_NEWIPC), "unshare(CLONE_NEWUTS | CLONE_NEWIPC)")
        drop_all_privileges()
    os.chdir(scratch)
    os.environ.clear()
    os.environ.update({
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    tempfile.tempdir = scratch
    rlimits = [
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_CPU, limits["cpu_s"]),
        (resource.RLIMIT_FSIZE, limits["max_file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["max_open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]
    if limits.get("nproc_rlimit") is not None:
        rlimits.append((resource.RLIMIT_NPROC, limits["nproc_rlimit"]))
    for name, value in rlimits:
        resource.setrlimit(name, (value, value))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.stdin = open(0, encoding="utf-8", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.argv = ["-c"]
    sys.path.insert(0, "")  # like `python -c`: the working directory (the scratch dir) is importable


def _run_snippet(request: dict[str, Any], nonce: str) -> NoReturn:
    """Run the code, then each test in the same namespace; report counts on the status fd and exit."""
    tests: list[str] = request.get("tests", [])
    test_timeout = request["limits"].get("test_timeout_s")
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    report: dict[str, Any] = {"nonce": nonce, "memory": False, "passed": 0, "failed": []}
    exit_code = 0
    try:
        exec(compile(request["code"], "<snippet>", "exec"), main.__dict__)
    except SystemExit as exc:
        exit_code = _exit_code_of(exc)
        report["failed"] = list(range(len(tests)))
    except MemoryError:
        report["memory"] = True
        print("MemoryError", file=sys.stderr)
        exit_code = 1
        report["failed"] = list(range(len(tests)))
    except BaseException as exc:
        # Skip this harness's own frame so the traceback reads like `python -c` would print it.
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        exit_code = 1
        report["failed"] = list(range(len(tests)))
    else:
        for index, test in enumerate(tests):
            try:
                if test_timeout:
                    signal.setitimer(signal.ITIMER_REAL, test_timeout)
                try:
                    exec(compile(test, f"<test {index}>", "exec"), main.__dict__)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                report["passed"] += 1
            except BaseException as exc:  # a failing test must not stop the others
                report["failed"].append(index)
                if isinstance(exc, MemoryError):
                    report["memory"] = True
                label = "timed out" if isinstance(exc, _TestTimeout) else f"{type(exc).__name__}: {exc}"
                print(f"test {index} failed: {label}", file=sys.stderr)
        if report["failed"]:
            exit_code = 1
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()  # type: ignore[attr-defined]  # wait for non-daemon threads, like the interpreter
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    try:
        write_all(STATUS_FD, b"\n" + json.dumps(report).encode() + b"\n")
    except OSError:
        pass
    os._exit(exit_code)


class Worker:
    def __init__(self, scratch_root: str, wipe_dirs: list[str], pid_namespace: bool, drop_caps: bool,
                 keep: list[str] | None = None) -> None:
        self.scratch_root = scratch_root
        self.wipe_dirs = [scratch_root, *wipe_dirs]
        # read-only interpreter mounts that live under the scratch root (a venv in /tmp/...)
        self.keep = {os.path.normpath(k) for k in keep or []}
        self.pid_namespaces = PidNamespaces() if pid_namespace else None
        self.drop_caps = drop_caps

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        limits = request["limits"]
        scratch = tempfile.mkdtemp(prefix="run-", dir=self.scratch_root)
        nonce = secrets.token_hex(16)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        status_r, status_w = os.pipe()
        if self.pid_namespaces is not None:
            self.pid_namespaces.fresh_for_next_fork()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                _child_setup(request, scratch, {"stdout": out_w, "stderr": err_w, "status": status_w}, self.drop_caps)
            except BaseException as exc:
                os.write(err_w, f"sandbox child setup failed: {exc}\n".encode())
                os._exit(CHILD_SETUP_FAILED)
            _run_snippet(request, nonce)
        for fd in (out_w, err_w, status_w):
            os.close(fd)
        try:
            outcome = self._watch(pid, started, limits, {out_r: "stdout", err_r: "stderr", status_r: "status"})
        finally:
            for fd in (out_r, err_r, status_r):
                os.close(fd)
            self._wipe()
        outcome["duration_s"] = time.monotonic() - started
        return self._classify(outcome, request, nonce)

    def _watch(self, pid: int, started: float, limits: dict[str, Any], streams: dict[int, str]) -> dict[str, Any]:
        cap = int(limits["max_output_bytes"])
        buffers = {name: bytearray() for name in streams.values()}
        pidfd = os.pidfd_open(pid)
        selector = selectors.DefaultSelector()
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        selector.register(pidfd, selectors.EVENT_READ)
        open_streams = set(streams)
        exited_at: float | None = None
        timed_out = over_output = False
        deadline = started + float(limits["wall_s"])
        try:
            while open_streams or exited_at is None:
                now = time.monotonic()
                if now >= deadline:
                    timed_out = True
                    break
                # Without a PID namespace a grandchild may hold the pipes after the child exits.
                if exited_at is not None and now - exited_at > 0.2:
                    break
                wait = deadline - now if exited_at is None else min(deadline - now, 0.2)
                for key, _ in selector.select(wait):
                    fd = key.fd
                    if fd == pidfd:
                        exited_at = time.monotonic()
                        selector.unregister(pidfd)
                        continue
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        selector.unregister(fd)
                        open_streams.discard(fd)
                        continue
                    name = streams[fd]
                    room = (cap if name != "status" else 1 << 16) - len(buffers[name])
                    buffers[name] += chunk[:max(room, 0)]
                    if len(chunk) > room and name != "status":
                        over_output = True
                if over_output:
                    break
        finally:
            selector.close()
            os.close(pidfd)
        self._kill_tree(pid)
        _, wait_status, usage = os.wait4(pid, 0)
        return {
            "buffers": buffers, "timed_out": timed_out, "over_output": over_output, "wait_status": wait_status,
            "cpu_s": usage.ru_utime + usage.ru_stime,
        }

    def _kill_tree(self, pid: int) -> None:
        # With a PID namespace, killing its init kills every process the snippet started.
        for kill in (os.kill, os.killpg):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _wipe(self) -> None:
        for directory in self.wipe_dirs:
            self._wipe_dir(directory)

    def _wipe_dir(self, directory: str) -> None:
        """Delete everything in `directory` except read-only interpreter mounts (and the path to them)."""
        try:
            entries = os.listdir(directory)
        except OSError:
            return
        for name in entries:
            path = os.path.join(directory, name)
            if path in self.keep:
                continue
            if any(k.startswith(path + os.sep) for k in self.keep):
                self._wipe_dir(path)  # a parent of a mount: clear its other contents
            elif os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    @staticmethod
    def _classify(outcome: dict[str, Any], request: dict[str, Any], nonce: str) -> dict[str, Any]:
        buffers = outcome["buffers"]
        total_tests = len(request.get("tests", []))
        report = _parse_report(bytes(buffers["status"]), nonce)
        wait_status = outcome["wait_status"]
        signum = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
        exit_code = -signum if signum is not None else os.WEXITSTATUS(wait_status)
        stderr = buffers["stderr"].decode("utf-8", "replace")
        cpu_limit = float(request["limits"]["cpu_s"])
        if outcome["over_output"]:
            status = "output_limit"
        elif outcome["timed_out"] or signum == signal.SIGXCPU or (
                # The kernel's RLIMIT_CPU kill lands a little before rusage shows the full limit.
                signum == signal.SIGKILL and outcome["cpu_s"] >= cpu_limit * 0.9):
            status = "timeout"
        elif (report and report["memory"]) or (exit_code != 0 and stderr.rstrip().endswith("MemoryError")):
            status = "memory"
        elif signum is not None:
            status = "killed"
        elif exit_code == 0:
            status = "ok"
        else:
            status = "error"
        passed = int(report["passed"]) if report else 0
        failed = [int(i) for i in report["failed"]] if report else list(range(total_tests))
        if status != "ok" and report is None:
            passed = 0
        return {
            "status": status, "exit_code": exit_code, "stdout": buffers["stdout"].decode("utf-8", "replace"),
            "stderr": stderr, "duration_s": outcome["duration_s"], "tests_passed": min(passed, total_tests),
            "tests_total": total_tests, "failed_tests": failed, "cpu_s": outcome["cpu_s"],
        }


def _parse_report(raw: bytes, nonce: str) -> dict[str, Any] | None:
    """The child's last status line, if it carries this run's nonce (anything else is ignored)."""
    for line in reversed(raw.splitlines()):
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict) and report.get("nonce") == nonce:
            return report
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="synthloom-sandbox-worker")
    parser.add_argument("--scratch-root", required=True)
    parser.add_argument("--wipe", action="append", default=[])
    parser.add_argument("--pid-namespace", action="store_true")
    parser.add_argument("--drop-caps", action="store_true")
    parser.add_argument("--keep", action="append", default=[])
    args = parser.parse_args(argv)
    for name in PRELOADED_MODULES:
        __import__(name)
    # The wire to the pool moves off fds 0/1 so a child's stdio can never reach it.
    wire_in, wire_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    worker = Worker(args.scratch_root, args.wipe, args.pid_namespace, args.drop_caps, args.keep)
    if worker.pid_namespaces is not None:
        worker.pid_namespaces.fresh_for_next_fork()  # fail at start-up, not on the first snippet
    write_all(wire_out, encode_frame({"ready": True, "pid": os.getpid()}))
    while True:
        request = read_frame(wire_in)
        if request is None:
            return
        try:
            reply = worker.run(request)
        except Exception as exc:  # a sandbox fault, not the snippet's: report it, keep serving
            reply = {"status": "killed", "exit_code": None, "stdout": "", "stderr": f"sandbox worker error: {exc}",
                     "duration_s": 0.0, "tests_total": len(request.get("tests", []))}
        reply["id"] = request.get("id")
        write_all(wire_out, encode_frame(reply))


if __name__ == "__main__":
    main(sys.argv[1:])
