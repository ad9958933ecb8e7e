"""Warm sandbox worker: a long-lived interpreter that forks one clean, walled-off child per snippet.

The pool starts this file with ``python -I -c <this source>`` inside bubblewrap, so it must use the
standard library only (the project tree is not mounted in the sandbox). Processes (``--isolate``):

  worker   speaks the pool's framed protocol on fds it keeps off 0-2; never forked after start-up.
  zygote   forked by the worker before the first request, with the common modules preloaded. It
           never reads a request, an output or a nonce (it gets a slot number plus the child's pipe
           ends over a socket), so a snippet, a copy of it, holds no other snippet's data in memory.
           It keeps two children armed ahead of their requests.
  init     PID 1 of each snippet's fresh PID namespace: `sleep infinity`, holding only /dev/null and
           the snippet's fresh mount, UTS and IPC namespaces (a fresh tmpfs on /tmp and /dev/shm).
           Killing it kills every process of the namespace.
  snippet  PID 2 there, forked by the zygote. Before it waits for its request it mounts a read-only
           /proc of its own PID namespace (the worker, the zygote and bubblewrap are not in it),
           switches user namespaces off below, drops every capability, sets no_new_privs and turns
           non-dumpable (its /proc entries and memory are closed to other processes). With the
           request come rlimits, a seccomp filter, and then the code.

Nothing a snippet can reach holds the pool's channel. The pool's per-request nonce is read from the
wire by the worker only and never reaches the zygote or a child; a reply without it is rejected by
the pool (see pool.py). A snippet starts only once every process of the one before is gone.
Without ``--isolate`` (isolation='none') the same processes run with no namespaces at all.

Wire format (worker stdin/stdout): frames of a 4-byte big-endian length and UTF-8 JSON.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import errno
import json
import os
import resource
import secrets
import selectors
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
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

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
CHILD_SETUP_FAILED = 125
STATUS_FD = 3

# The snippet's private filesystem (--isolate): everything writable lives in fresh tmpfs mounts.
SNIPPET_TMP = "/tmp"
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")  # bubblewrap's --dev binds these
SHM_BYTES = 64 << 20
# System calls a snippet gets EPERM for. The kernel keyrings are shared by every process of one uid
# in a user namespace (so by all snippets of a worker): a key added by one is readable by the next.
# io_uring, userfaultfd and perf events are kernel surface no snippet needs.
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
DENIED_SYSCALLS = {
    "x86_64": {"add_key": 248, "request_key": 249, "keyctl": 250, "perf_event_open": 298, "userfaultfd": 323,
               "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427},
    "aarch64": {"add_key": 217, "request_key": 218, "keyctl": 219, "perf_event_open": 241, "userfaultfd": 282,
                "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427},
}
X32_SYSCALL_BIT = 0x40000000  # x86_64's x32 ABI numbers: the same calls under other numbers
# PID 1 of each snippet's namespace: it only has to exist (and, as init, ignores the snippet's signals).
INIT_ARGV = ["/usr/bin/sleep", "infinity"]


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
    """One frame, read with exact sizes: bytes after it stay in the pipe, not in our memory."""
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
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _c_string(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_c_string(source), target.encode(), _c_string(fstype), flags, _c_string(data)),
           f"mount {target}")


class SnippetNamespaces:
    """The zygote's way to give each next child fresh PID, mount, UTS and IPC namespaces.

    unshare(CLONE_NEWPID) works only while our children's namespace is still our own, so before each
    unshare we point it back at our own with setns. The mount, UTS and IPC namespaces are made by the
    zygote itself (so the snippet's init holds them, and the snippet's own exit does not wait for
    their teardown), then it returns to its own (needs CAP_SYS_ADMIN and CAP_SYS_CHROOT).
    """

    KINDS = (("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS), ("uts", CLONE_NEWUTS), ("ipc", CLONE_NEWIPC))

    def __init__(self) -> None:
        self._home = {kind: os.open(f"/proc/self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind, _ in self.KINDS}

    def enter_fresh(self, scratch_bytes: int) -> int:
        """Children forked from now on get new namespaces, with fresh tmpfs mounts on /tmp and /dev/shm.

        Returns an fd that keeps the new mount namespace alive: its tear-down (an RCU grace period)
        then happens when the zygote closes it, not in the exit of the snippet or its init."""
        _check(_libc.setns(self._home["pid"], CLONE_NEWPID), "setns(own PID namespace)")
        _check(_libc.unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC), "unshare(namespaces)")
        held = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)  # before a child mounts its /proc
        _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here propagates back
        _mount("tmpfs", SNIPPET_TMP, "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_bytes},mode=1777")
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size={min(scratch_bytes, SHM_BYTES)},mode=1777")
        return held

    def go_home(self) -> None:
        for kind, flag in self.KINDS[1:]:
            _check(_libc.setns(self._home[kind], flag), f"setns(own {kind} namespace)")


def seal_worker_devices() -> None:
    """Once, in the worker: make bubblewrap's /dev and its device-node binds read-only.

    The nodes are host inodes; a snippet whose uid maps to their owner could otherwise chmod, chown
    or touch them (host state, and a channel to the next snippet). Reads and writes still work.
    """
    for name in DEV_NODES:
        if os.path.exists(f"/dev/{name}"):
            _mount(None, f"/dev/{name}", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    # bubblewrap's own pty instance: ptys still open and vanish when closed, but no snippet can chmod
    # its ptmx for the next one.
    _mount(None, "/dev/pts", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    _mount(None, "/dev", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_private_proc() -> None:
    """Run by the snippet (PID 2 of its namespace) before it drops its capabilities: a read-only
    /proc that shows its own PID namespace only. /tmp and /dev/shm are fresh (see SnippetNamespaces);
    the rest of /dev is read-only (sealed once by the worker), so nothing else there can change."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # No user namespaces below ours (the limit covers every descendant namespace): a snippet cannot
    # regain capabilities in one, which keeps the kernel surface it can reach small.
    with open("/proc/sys/user/max_user_namespaces", "w", encoding="ascii") as handle:
        handle.write("0")
    # Read-only as a whole: sysctls, sysrq-trigger, /proc/irq, /proc/bus (uid 0 without capabilities
    # could write some of them) and the per-process knobs.
    _mount(None, "/proc", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


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


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp_program(machine: str) -> list[tuple[int, int, int, int]]:
    """A classic-BPF seccomp filter: EPERM for DENIED_SYSCALLS, for x32 numbers and for any other
    architecture's calling convention (e.g. int 0x80 on x86_64); everything else is allowed."""
    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EPERM
    numbers = sorted(DENIED_SYSCALLS[machine].values())
    deny_at = 5 + len(numbers) + 1  # index of the final `ret deny`
    program = [(load, 0, 0, 4), (jeq, 1, 0, AUDIT_ARCH[machine]), (ret, 0, 0, deny), (load, 0, 0, 0),
               (jge, deny_at - 5, 0, X32_SYSCALL_BIT)]
    for number in numbers:
        program.append((jeq, deny_at - len(program) - 1, 0, number))
    return program + [(ret, 0, 0, allow), (ret, 0, 0, deny)]


def install_seccomp_filter() -> None:
    machine = os.uname().machine
    if machine not in DENIED_SYSCALLS:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {machine}")
    program = seccomp_program(machine)
    filters = (_SockFilter * len(program))(*(_SockFilter(*op) for op in program))
    fprog = _SockFprog(len(program), filters)
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "prctl(PR_SET_SECCOMP)")


def make_non_dumpable() -> None:
    # Non-dumpable: /proc/<pid>/{fd,mem,environ,...} and ptrace need CAP_SYS_PTRACE, which no snippet has.
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def _close_fds_except(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep):
        if fd > low:  # closerange(n, n) would reach close_range(n, UINT_MAX): every fd
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


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


# Zygote -> worker messages: (kind, slot, value, cpu seconds). ARMED: value = the child's PID;
# EXITED: value = its wait status; REAPED: every process of the slot is gone.
ZYGOTE_MESSAGE = struct.Struct(">Bqid")
ARMED, EXITED, REAPED = 1, 2, 3
MAX_SPENT_MOUNTS = 2  # finished snippets' mount namespaces the zygote may hold before it tears one down
SLOT_PREFIX = "slot-"  # scratch directories without --isolate: <scratch root>/slot-<n>-*


class Zygote:
    """The pristine process every snippet is forked from (itself forked before the first request).

    It never reads a request, an output or a nonce: it gets only a slot number plus the child's pipe
    ends, so no snippet inherits another snippet's data in its copy of memory. Children are forked
    ("armed") ahead of their requests, one while the previous one runs, so namespace set-up and
    tear-down stay off the path from a request to its reply.
    """

    def __init__(self, control: socket.socket, isolate: bool, scratch_root: str, scratch_bytes: int) -> None:
        self.control = control
        self.isolate = isolate
        self.scratch_root = scratch_root
        self.scratch_bytes = scratch_bytes
        self.namespaces = SnippetNamespaces() if isolate else None
        self.selector = selectors.DefaultSelector()
        self.dying: set[int] = set()  # slots whose init has been killed but not reaped yet
        self.deferred: list[tuple[int, dict[str, int]]] = []  # arms that found no process to spare
        self.spent: list[int] = []  # fds holding finished snippets' mount namespaces

    def serve(self) -> NoReturn:
        try:
            if self.namespaces is not None:  # fail at start-up, not on the first snippet
                os.close(self.namespaces.enter_fresh(1 << 16))
                self.namespaces.go_home()
                if not os.access(INIT_ARGV[0], os.X_OK):
                    raise OSError(errno.ENOENT, f"no {INIT_ARGV[0]} in the sandbox")
        except OSError as exc:
            self.control.send(f"{type(exc).__name__}: {exc}".encode())
            os._exit(1)
        self.control.send(b"ok")
        self.selector.register(self.control, selectors.EVENT_READ, None)
        while True:
            events = self.selector.select(0 if self.spent else None)
            if not events and self.spent:  # idle: now tear down a finished snippet's mounts
                os.close(self.spent.pop(0))
            for key, _ in events:
                if key.data is None:
                    self._on_arm()
                else:
                    self.selector.unregister(key.fd)
                    os.close(key.fd)
                    key.data()

    def _on_arm(self) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(self.control, 64, 4)
        except OSError:
            os._exit(0)
        if len(fds) != 4:
            os._exit(0)  # the worker went away
        (slot,) = struct.unpack(">q", message)
        for fd in fds:
            os.set_inheritable(fd, False)  # the init must not hold them
        self._arm(slot, dict(zip(("request", "stdout", "stderr", "status"), fds, strict=True)))

    def _arm(self, slot: int, fds: dict[str, int]) -> None:
        try:
            init_pid, pid, mounts = self._fork_child(fds, slot)
        except OSError as exc:
            if exc.errno == errno.EAGAIN and self.dying:
                # Out of processes while an earlier snippet's are still dying: try again once gone.
                self.deferred.append((slot, fds))
                return
            os.write(fds["stderr"], f"sandbox child setup failed: {exc}\n".encode())
            init_pid, pid, mounts = 0, -1, None
        for fd in fds.values():
            os.close(fd)
        self._tell_worker(ZYGOTE_MESSAGE.pack(ARMED, slot, pid, 0.0))  # the worker kills it at a limit
        if pid > 0:
            self._when_gone(pid, lambda: self._on_exit(slot, init_pid, pid, mounts))
        else:
            self._on_exit(slot, init_pid, pid, mounts)

    def _fork_child(self, fds: dict[str, int], slot: int) -> tuple[int, int, int | None]:
        init_pid, mounts = 0, None
        try:
            if self.namespaces is not None:
                mounts = self.namespaces.enter_fresh(self.scratch_bytes)
                # PID 1 of the snippet's namespace: a placeholder that holds only /dev/null and the
                # namespaces. Killing it kills every process the snippet left behind.
                init_pid = os.posix_spawn(INIT_ARGV[0], INIT_ARGV, {}, file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0), (os.POSIX_SPAWN_DUP2, 0, 1),
                    (os.POSIX_SPAWN_DUP2, 0, 2)], setsid=True)
            pid = os.fork()
        except OSError:
            self._go_home()
            if mounts is not None:
                os.close(mounts)
            if init_pid:
                os.kill(init_pid, signal.SIGKILL)
                os.waitpid(init_pid, 0)
            raise
        if pid == 0:
            if mounts is not None:
                os.close(mounts)
            self._snippet_main(fds, slot)
        self._go_home()  # the child keeps the fresh namespaces
        return init_pid, pid, mounts

    def _go_home(self) -> None:
        if self.namespaces is not None:
            self.namespaces.go_home()

    def _when_gone(self, pid: int, then: Callable[[], None]) -> None:
        self.selector.register(os.pidfd_open(pid), selectors.EVENT_READ, then)

    def _on_exit(self, slot: int, init_pid: int, pid: int, mounts: int | None) -> None:
        wait_status, cpu_s = CHILD_SETUP_FAILED << 8, 0.0
        if pid > 0:
            _, wait_status, usage = os.wait4(pid, 0)
            cpu_s = usage.ru_utime + usage.ru_stime
        # Whatever the snippet left running dies now: the whole namespace with its init or, without
        # namespaces, the snippet's process group (it called setsid).
        for kill, target in ((os.kill, init_pid), (os.killpg, pid)):
            if target > 0:
                try:
                    kill(target, signal.SIGKILL)
                except OSError:
                    pass
        self._tell_worker(ZYGOTE_MESSAGE.pack(EXITED, slot, wait_status, cpu_s))
        if mounts is not None:
            self.spent.append(mounts)
            if len(self.spent) > MAX_SPENT_MOUNTS:  # never idle: do not let finished tmpfs pile up
                os.close(self.spent.pop(0))
        if init_pid:
            # The init dies only once every process of its namespace has: then the slot is clear.
            self.dying.add(slot)
            self._when_gone(init_pid, lambda: self._on_reaped(slot, init_pid))
        else:
            self._tell_worker(ZYGOTE_MESSAGE.pack(REAPED, slot, 0, 0.0))

    def _on_reaped(self, slot: int, init_pid: int) -> None:
        os.waitpid(init_pid, 0)
        self.dying.discard(slot)
        self._tell_worker(ZYGOTE_MESSAGE.pack(REAPED, slot, 0, 0.0))
        if not self.dying:
            waiting, self.deferred = self.deferred, []
            for args in waiting:
                self._arm(*args)

    def _tell_worker(self, message: bytes) -> None:
        try:
            self.control.send(message)
        except OSError:
            os._exit(0)  # the worker is gone (pool closed): so are we

    def _snippet_main(self, fds: dict[str, int], slot: int) -> NoReturn:
        """Armed ahead of its request: everything that does not depend on it is done first."""
        try:
            self.control.close()
            scratch_root, prefix = self.scratch_root, f"{SLOT_PREFIX}{slot}-"  # a shared host directory
            if self.isolate:
                mount_private_proc()
                scratch_root, prefix = SNIPPET_TMP, "run-"  # its own tmpfs
                drop_all_privileges()
                make_non_dumpable()
            scratch = tempfile.mkdtemp(prefix=prefix, dir=scratch_root)
            with open(fds.pop("request"), "rb") as handle:  # blocks until the worker has a request
                envelope = json.loads(handle.read())
            request = envelope["request"]
            _child_setup(request, scratch, fds, self.isolate)
        except BaseException as exc:
            try:
                os.write(fds["stderr"], f"sandbox child setup failed: {exc}\n".encode())
            except OSError:
                pass  # the worker is gone (pool closed before this armed child got a request)
            os._exit(CHILD_SETUP_FAILED)
        _run_snippet(request, envelope["key"])


def _child_setup(request: dict[str, Any], scratch: str, fds: dict[str, int], isolate: bool) -> None:
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
    os.closerange(STATUS_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    os.chdir(scratch)
    # The worker's environment is already scrubbed (bubblewrap --clearenv, or the pool's own env).
    environment = {k: v for k, v in os.environ.items() if k not in ("HOME", "TMPDIR", "PWD")}
    os.environ.clear()
    os.environ.update(environment | {"HOME": scratch, "TMPDIR": scratch})
    tempfile.tempdir = scratch
    rlimits = [
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        # SIGXCPU at the limit names the cause; the hard limit a second later catches code ignoring it.
        (resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1)),
        (resource.RLIMIT_FSIZE, limits["max_file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["max_open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]
    if limits.get("nproc_rlimit") is not None:
        rlimits.append((resource.RLIMIT_NPROC, limits["nproc_rlimit"]))
    for name, value in rlimits:
        resource.setrlimit(name, value if isinstance(value, tuple) else (value, value))
    if isolate:
        install_seccomp_filter()  # needs no_new_privs, set above; the last step before user code
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.stdin = open(0, encoding="utf-8", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.argv = ["-c"]
    sys.path.insert(0, "")  # like `python -c`: the working directory (the scratch dir) is importable


def _run_snippet(request: dict[str, Any], report_key: str) -> NoReturn:
    """Run the code, then each test in the same namespace; report counts on the status fd and exit."""
    tests: list[str] = request.get("tests", [])
    test_timeout = request["limits"].get("test_timeout_s")
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    report: dict[str, Any] = {"key": report_key, "memory": False, "passed": 0, "failed": []}
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
    report["exit"] = exit_code
    try:
        write_all(STATUS_FD, b"\n" + json.dumps(report).encode() + b"\n")
    except OSError:
        pass
    os._exit(exit_code)


class ZygoteLost(Exception):
    """The zygote died (it never runs user code, so this is not a snippet's doing): the worker exits
    and the pool replaces it."""


class Worker:
    """Speaks the pool's protocol; asks the zygote for one child per request and watches it."""

    def __init__(self, isolate: bool, scratch_root: str, scratch_bytes: int) -> None:
        self.isolate = isolate
        self.scratch_root = scratch_root  # host-side scratch (no --isolate), wiped after each snippet
        if isolate:
            seal_worker_devices()
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()  # before any request: the zygote's memory never holds one
        if pid == 0:
            self.control.close()
            _close_fds_except({0, 1, 2, theirs.fileno()})  # 0 and 1 stay /dev/null
            Zygote(theirs, isolate, scratch_root, scratch_bytes).serve()
        theirs.close()
        self.zygote_pid = pid
        hello = self.control.recv(4096)
        if hello != b"ok":
            raise RuntimeError(f"sandbox zygote failed to start: {hello.decode(errors='replace') or 'exited'}")
        self._next_slot = 0
        self._inbox: dict[int, dict[int, tuple[int, float]]] = {}  # slot -> message kind -> (value, cpu)
        self._previous: int | None = None
        # Two children armed ahead: the next request's, and the one after it, so that both exist
        # before a snippet starts (they share its process budget) and none is forked while it runs.
        self._spares = collections.deque([self._arm(), self._arm()])

    def prepare_next(self) -> None:
        """After a reply has gone out: arm a child for the request after next."""
        self._spares.append(self._arm())

    def _arm(self) -> tuple[int, dict[str, tuple[int, int]]]:
        """Have the zygote fork the next child now; it sets up and waits for its request."""
        slot, self._next_slot = self._next_slot, self._next_slot + 1
        pipes = {name: os.pipe() for name in ("request", "stdout", "stderr", "status")}
        child_ends = [pipes["request"][0], *(pipes[name][1] for name in ("stdout", "stderr", "status"))]
        try:
            socket.send_fds(self.control, [struct.pack(">q", slot)], child_ends)
        except OSError as exc:
            raise ZygoteLost(str(exc)) from exc
        finally:
            for fd in child_ends:
                os.close(fd)
        return slot, pipes

    def run(self, request: dict[str, Any], read_nonce: Callable[[], None]) -> dict[str, Any]:
        """Run one request on the armed child; `read_nonce` takes the pool's nonce off the wire (it
        never reaches the zygote or the child)."""
        limits = request["limits"]
        report_key = secrets.token_hex(16)
        slot, pipes = self._spares.popleft()
        if self._previous is not None:
            # Nothing of the previous snippet may still exist when this one's code starts.
            self._await(self._previous, REAPED)
            del self._inbox[self._previous]
        self._previous = slot
        for armed, _ in (self._spares[0], (slot, None)):
            self._await(armed, ARMED)
        started = time.monotonic()
        try:
            try:
                write_all(pipes["request"][1], json.dumps({"request": request, "key": report_key}).encode())
            except BrokenPipeError:
                pass  # the child died in set-up; its stderr says why
            finally:
                os.close(pipes["request"][1])
            read_nonce()
            streams = {pipes[name][0]: name for name in ("stdout", "stderr", "status")}
            outcome = self._watch(slot, started, limits, streams, report_key)
        finally:
            for name in ("stdout", "stderr", "status"):
                os.close(pipes[name][0])
            if not self.isolate:
                self._wipe(self.scratch_root, f"{SLOT_PREFIX}{slot}-")
        outcome["duration_s"] = time.monotonic() - started
        return self._classify(outcome, request, report_key)

    def _receive(self, flags: int = 0) -> bool:
        """File one zygote message in the inbox; False when `flags` say not to wait and none is there."""
        try:
            message = self.control.recv(64, flags)
        except BlockingIOError:
            return False
        except OSError as exc:
            raise ZygoteLost(str(exc)) from exc
        if not message:
            raise ZygoteLost("sandbox zygote exited")
        kind, slot, value, cpu_s = ZYGOTE_MESSAGE.unpack(message)
        self._inbox.setdefault(slot, {})[kind] = (value, cpu_s)
        return True

    def _await(self, slot: int, kind: int) -> tuple[int, float]:
        while kind not in self._inbox.get(slot, {}):
            self._receive()
        return self._inbox[slot][kind]

    def _watch(self, slot: int, started: float, limits: dict[str, Any], streams: dict[int, str],
               report_key: str) -> dict[str, Any]:
        cap = int(limits["max_output_bytes"])
        buffers = {name: bytearray() for name in streams.values()}
        selector = selectors.DefaultSelector()
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        selector.register(self.control, selectors.EVENT_READ)
        inbox = self._inbox.setdefault(slot, {})
        open_streams = set(streams)
        report: dict[str, Any] | None = None
        exited_at: float | None = None
        timed_out = over_output = False
        deadline = started + float(limits["wall_s"])
        try:
            while (EXITED not in inbox and report is None) or open_streams:
                now = time.monotonic()
                if now >= deadline:
                    timed_out = True
                    break
                # Without a PID namespace a grandchild may hold the pipes after the child exits.
                if exited_at is not None and now - exited_at > 0.2:
                    break
                wait = deadline - now if exited_at is None else min(deadline - now, 0.2)
                for key, _ in selector.select(wait):
                    if key.fileobj is self.control:
                        self._receive()
                        if EXITED in inbox and exited_at is None:
                            exited_at = time.monotonic()
                        continue
                    fd = key.fd
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        selector.unregister(fd)
                        open_streams.discard(fd)
                        if not open_streams and EXITED not in inbox:
                            # Every stream closed: with its report written, the child is exiting.
                            # Answer now (it is killed to make sure); its exit message comes later.
                            report = _parse_report(bytes(buffers["status"]), report_key)
                            report = report if report is not None and "exit" in report else None
                        continue
                    name = streams[fd]
                    limited = name != "status"
                    room = (cap if limited else 1 << 16) - len(buffers[name])
                    buffers[name] += chunk[:max(room, 0)]
                    if len(chunk) > room and limited:
                        over_output = True
                if over_output:
                    break
        finally:
            selector.close()
        if EXITED not in inbox:  # at a limit, or answered from its report: make sure it is gone
            self._kill(slot)
            if report is not None and not (timed_out or over_output):
                return {"buffers": buffers, "timed_out": False, "over_output": False,
                        "wait_status": (int(report["exit"]) & 0xFF) << 8, "cpu_s": 0.0}
        wait_status, cpu_s = self._await(slot, EXITED)
        return {"buffers": buffers, "timed_out": timed_out, "over_output": over_output, "wait_status": wait_status,
                "cpu_s": cpu_s}

    def _kill(self, slot: int) -> None:
        """SIGKILL the slot's child unless the zygote has already reaped it."""
        pid, _ = self._await(slot, ARMED)
        if pid <= 0:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            # Opened before the zygote reported the exit: the PID could only be another process's if
            # the PID counter wrapped within that instant.
            while EXITED not in self._inbox[slot] and self._receive(socket.MSG_DONTWAIT):
                pass
            if EXITED not in self._inbox[slot]:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)

    def _wipe(self, directory: str, prefix: str) -> None:
        for name in (n for n in os.listdir(directory) if n.startswith(prefix)):
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    @staticmethod
    def _classify(outcome: dict[str, Any], request: dict[str, Any], report_key: str) -> dict[str, Any]:
        buffers = outcome["buffers"]
        total_tests = len(request.get("tests", []))
        report = _parse_report(bytes(buffers["status"]), report_key)
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


def _parse_report(raw: bytes, report_key: str) -> dict[str, Any] | None:
    """The child's last status line, if it carries this run's key (anything else is ignored)."""
    for line in reversed(raw.splitlines()):
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict) and report.get("key") == report_key:
            return report
    return None


def serve(worker: Worker, wire_in: int, wire_out: int) -> None:
    """Answer request frames until the pool closes the wire. Each request frame is followed by a
    nonce frame; the reply carries the request's id and that nonce."""
    while True:
        request = read_frame(wire_in)
        if request is None:
            return
        nonce: list[Any] = []

        def read_nonce() -> None:
            if not nonce:
                frame = read_frame(wire_in)
                nonce.append(frame.get("nonce") if frame else None)

        try:
            reply = worker.run(request, read_nonce)
        except ZygoteLost:
            return  # no reply: the pool reports this snippet as killed and starts a fresh worker
        except Exception as exc:  # a sandbox fault, not the snippet's: report it, keep serving
            reply = {"status": "killed", "exit_code": None, "stdout": "", "stderr": f"sandbox worker error: {exc}",
                     "duration_s": 0.0, "tests_total": len(request.get("tests", []))}
        read_nonce()  # keep the wire in step even when the run failed before reading it
        if nonce[0] is None:
            return  # the pool went away mid-request
        reply["id"] = request.get("id")
        reply["nonce"] = nonce[0]
        write_all(wire_out, encode_frame(reply))
        try:
            worker.prepare_next()
        except ZygoteLost:
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="synthloom-sandbox-worker")
    parser.add_argument("--isolate", action="store_true",
                        help="per snippet: PID, mount, UTS, IPC namespaces, private /proc /dev /tmp, no caps")
    parser.add_argument("--scratch-root", default=SNIPPET_TMP)
    parser.add_argument("--scratch-bytes", type=int, default=256 << 20)
    args = parser.parse_args(argv)
    for name in PRELOADED_MODULES:
        __import__(name)
    # The wire to the pool moves off fds 0/1 so a child's stdio can never reach it.
    wire_in, wire_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    worker = Worker(args.isolate, args.scratch_root, args.scratch_bytes)
    write_all(wire_out, encode_frame({"ready": True, "pid": os.getpid()}))
    serve(worker, wire_in, wire_out)


if __name__ == "__main__":
    main(sys.argv[1:])
