"""Attacks of one snippet on the sandbox's other snippets and on the pool, each expected to fail.

Every attack runs on a pool with a single worker, so the snippet that tries to interfere and the
snippets it tries to interfere with share a worker (the worst case). Real bubblewrap throughout;
only the nonce check of the pool itself is driven by a scripted worker, since no real snippet can
reach the wire any more.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from synthloom.verify.code import SandboxLimits, SandboxPool, Snippet
from synthloom.verify.code.sandbox import WORKER_ENV, WorkerLaunch
from synthloom.verify.code.worker import DENIED_SYSCALLS, X32_SYSCALL_BIT

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WRONG_ADD = Snippet("def add(a, b):\n    return a - b", tests=("assert add(1, 2) == 3",))
RIGHT_ADD = Snippet("def add(a, b):\n    return a + b", tests=("assert add(1, 2) == 3",))

# Shared by the attacks: a reply frame that would mark request `i` verified, in the wire's format.
FORGE_PRELUDE = textwrap.dedent('''
    import glob, json, os, struct
    def frame(i, nonce=""):
        body = json.dumps({"id": i, "nonce": nonce, "status": "ok", "exit_code": 0, "stdout": "", "stderr": "",
                           "duration_s": 0.0, "tests_passed": 1, "tests_total": 1, "failed_tests": []}).encode()
        return struct.pack(">I", len(body)) + body
    FORGED = b"".join(frame(i) for i in range(64))
''')


@pytest.fixture(scope="module")
def single():
    with SandboxPool(workers=1) as pool:
        yield pool


def assert_worker_still_honest(pool: SandboxPool) -> None:
    """The next snippets get their own, true results: a wrong solution is not verified, a right one is."""
    wrong, right, echo = pool.run_batch([WRONG_ADD, RIGHT_ADD, "print('mine')"])
    assert (wrong.status, wrong.verified) == ("error", False)
    assert right.verified and right.tests_passed == 1
    assert echo.stdout == "mine\n"


def test_forged_frames_written_to_every_reachable_fd_change_no_result(single):
    attack = FORGE_PRELUDE + textwrap.dedent('''
        reached = []
        paths = ["/proc/1/fd/1", "/proc/1/fd/0", "/proc/1/fd/2", *glob.glob("/proc/*/fd/*"),
                 *glob.glob("/proc/*/task/*/fd/*"), *glob.glob("/proc/*/map_files/*"), *glob.glob("/dev/fd/*")]
        for path in paths:
            if path.startswith(("/proc/self/", "/proc/thread-self/", f"/proc/{os.getpid()}/", "/dev/fd/")):
                continue  # our own fds: stdout, stderr and the status pipe of this very snippet
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                os.write(fd, FORGED)
                reached.append(path)
            except OSError:
                pass
        for fd in range(3, 1024):  # any inherited descriptor at all
            try:
                os.write(fd, FORGED)
                reached.append(fd)
            except OSError:
                pass
        print(json.dumps(reached))
    ''')
    result = single.run(attack)
    assert result.status == "ok", result.stderr
    # fd 3 is the snippet's own status pipe (its own report); nothing else outside it was writable
    assert json.loads(result.stdout) in ([], [3])
    assert_worker_still_honest(single)


def test_fake_frames_printed_on_stdout_and_stderr_are_only_output(single):
    attack = FORGE_PRELUDE + textwrap.dedent('''
        import sys
        sys.stdout.buffer.write(FORGED)
        sys.stderr.buffer.write(FORGED)
        os.write(1, FORGED)
        os.write(2, FORGED)
    ''')
    before = single.worker_pids()
    result = single.run(Snippet(attack, tests=("assert False",)))
    assert result.status == "error" and not result.verified and result.tests_passed == 0
    assert result.stdout.count('"tests_passed": 1') == 128  # it came back as text, as printed
    assert_worker_still_honest(single)
    assert single.worker_pids() == before  # nothing broke the framing: the worker was never replaced


def test_the_snippets_proc_shows_only_its_own_namespace_and_nothing_of_its_init(single):
    probe = textwrap.dedent('''
        import ctypes, json, os
        libc = ctypes.CDLL(None, use_errno=True)
        out = {"pids": sorted(int(n) for n in os.listdir("/proc") if n.isdigit()), "open": [], "ptrace": [], "vm": []}
        for pid in out["pids"]:
            if pid == os.getpid():
                continue
            for name in ("mem", "environ", "fd/0", "fd/1", "fd/2", "root/etc/hostname", "cwd", "exe", "maps"):
                try:
                    with open(f"/proc/{pid}/{name}", "rb") as handle:
                        handle.read(1)
                    out["open"].append(f"{pid}/{name}")
                except OSError:
                    pass
            for fd in os.listdir(f"/proc/{pid}/fd") if os.access(f"/proc/{pid}/fd", os.R_OK) else []:
                try:
                    os.close(os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK))
                    out["open"].append(f"{pid}/fd/{fd}")
                except OSError:
                    pass
            for request in (16, 0x4206):  # PTRACE_ATTACH, PTRACE_SEIZE
                if libc.ptrace(request, pid, None, None) == 0:
                    out["ptrace"].append(pid)
            buf = ctypes.create_string_buffer(64)
            local = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 64)
            remote = (ctypes.c_void_p * 2)(0x400000, 64)
            if libc.process_vm_readv(pid, local, 1, remote, 1, 0) >= 0:
                out["vm"].append(pid)
        out["userns"] = libc.unshare(0x10000000)  # CLONE_NEWUSER: would give it capabilities again
        out["root"] = os.path.exists("/root")
        print(json.dumps(out))
    ''')
    result = single.run(probe)
    assert result.status == "ok", result.stderr
    seen = json.loads(result.stdout)
    assert seen["pids"] == [1, 2]  # its init and itself: the worker and bubblewrap are not there
    assert seen["open"] == [] and seen["ptrace"] == [] and seen["vm"] == []
    assert seen["userns"] == -1 and seen["root"] is False


def test_killing_or_stopping_everything_visible_leaves_the_worker_serving(single):
    before = single.worker_pids()
    attack = textwrap.dedent('''
        import os, signal
        for pid in [int(n) for n in os.listdir("/proc") if n.isdigit()] + list(range(1, 64)):
            for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):
                if pid != os.getpid():
                    try:
                        os.kill(pid, sig)
                    except OSError:
                        pass
        try:
            os.kill(-1, signal.SIGKILL)  # everything it may signal: its own namespace only, itself included
        except OSError:
            pass
        print("still here")
    ''')
    result = single.run(attack)
    assert result.status in ("ok", "killed")
    assert single.worker_pids() == before
    assert_worker_still_honest(single)


def test_nothing_a_snippet_leaves_anywhere_is_there_for_the_next_one(single):
    leave = textwrap.dedent('''
        import ctypes, os, socket, time
        marks = [os.path.join(d, "left-behind") for d in
                 ("/tmp", "/dev", "/dev/shm", "/dev/pts", os.getcwd(), os.path.expanduser("~"),
                  os.environ["TMPDIR"], "/", "/opt", "/opt/python", "/opt/python/lib/python3.11/site-packages",
                  "/usr", "/etc", "/proc")]
        written = []
        for path in marks:
            try:
                with open(path, "w") as handle:
                    handle.write("x")
                written.append(path)
            except OSError:
                pass
        os.mkfifo("/tmp/left-fifo")
        os.chmod("/dev/shm", 0o700)
        os.chmod("/tmp", 0o700)
        ctypes.CDLL(None).shmget(4243, 4096, 0o1666)
        listener = socket.socket(socket.AF_UNIX)
        listener.bind("\\0left-behind")
        listener.listen()
        if os.fork() == 0:  # a daemon that writes once the snippet is gone
            os.setsid()
            if os.fork() == 0:
                time.sleep(0.5)
                for path in marks + ["/tmp/late", "/dev/shm/late"]:
                    try:
                        open(path, "w").write("late")
                    except OSError:
                        pass
                os._exit(0)
            os._exit(0)
        print(sorted(written))
    ''')
    look = textwrap.dedent('''
        import ctypes, json, os, socket, time
        time.sleep(1.0)  # past the daemon's wake-up
        seen = {d: sorted(os.listdir(d)) for d in ("/tmp", "/dev", "/dev/shm", os.getcwd())}
        seen["pids"] = sorted(int(n) for n in os.listdir("/proc") if n.isdigit())
        seen["modes"] = [oct(os.stat(d).st_mode & 0o7777) for d in ("/tmp", "/dev/shm")]
        seen["shm"] = ctypes.CDLL(None).shmget(4243, 4096, 0o666)
        try:
            socket.socket(socket.AF_UNIX).connect("\\0left-behind")
            seen["socket"] = True
        except OSError:
            seen["socket"] = False
        print(json.dumps(seen))
    ''')
    first = single.run(leave)
    baseline = json.loads(single.run(look).stdout)  # what a snippet sees anyway
    assert first.status == "ok", first.stderr
    assert all(p.startswith("/tmp/") or p.startswith("/dev/shm/") for p in eval(first.stdout))
    single.run(leave)
    after = json.loads(single.run(look).stdout)
    cwd = next(k for k in after if k.startswith("/tmp/run-"))
    assert after["/tmp"] == [cwd.rsplit("/", 1)[1]] and after[cwd] == [] and after["/dev/shm"] == []
    assert after["/dev"] == baseline["/dev"] and "left-behind" not in after["/dev"]
    assert after["pids"] == [1, 2] and after["shm"] == -1 and after["socket"] is False
    assert after["modes"] == baseline["modes"] == ["0o1777", "0o1777"]


def test_a_snippets_code_and_output_are_not_in_the_next_ones_memory(single):
    # Each snippet is a copy of a process that never held a request or an output, so scanning its
    # own memory shows nothing of the snippets before it.
    secret = "q7" + "x" * 3 + "-left-in-memory-" + "9f3e"
    single.run(Snippet(f"s = {secret!r}\nprint(s * 3)", tests=(f"assert s == {secret!r}",), stdin=secret))
    scan = textwrap.dedent(f'''
        needle = {secret[::-1]!r}[::-1].encode()  # not in this snippet's own source as such
        found = []
        with open("/proc/self/mem", "rb", buffering=0) as mem:
            for line in open("/proc/self/maps"):
                span, perms = line.split()[:2]
                if not perms.startswith("r") or line.rstrip().endswith(("[vvar]", "[vsyscall]")):
                    continue
                start, end = (int(x, 16) for x in span.split("-"))
                try:
                    mem.seek(start)
                    data = mem.read(end - start)
                except (OSError, OverflowError, ValueError):
                    continue
                if data.count(needle) > 1:  # one copy is the needle itself
                    found.append(line.split()[-1])
        print(found)
    ''')
    result = single.run(scan)
    assert result.status == "ok", result.stderr
    assert result.stdout == "[]\n"


def test_a_fork_bomb_leaves_the_next_snippet_its_whole_process_budget(single):
    # The next child is forked ahead of its request; it must not be starved by a bomb still dying.
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    count = ("import os, time\nn = 0\nfor _ in range(64):\n    try:\n        pid = os.fork()\n"
             "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n"
             "    n += 1\nprint(n)")
    for _ in range(2):
        assert single.run(bomb, SandboxLimits(wall_s=0.5, max_processes=8)).status == "timeout"
        counted = single.run(count, SandboxLimits(wall_s=2.0, max_processes=8))
        assert (counted.status, counted.stdout) == ("ok", "7\n"), counted.stderr  # itself and 7 children


def test_kernel_keyrings_carry_nothing_to_the_next_snippet(single):
    # Keyrings are per uid and user namespace, so all snippets of a worker would share them.
    numbers = DENIED_SYSCALLS[os.uname().machine]
    calls = textwrap.dedent(f'''
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        ADD_KEY, KEYCTL, X32 = {numbers["add_key"]}, {numbers["keyctl"]}, {X32_SYSCALL_BIT}
        def add(ring, nr=ADD_KEY):
            return libc.syscall(nr, b"user", b"leak", b"secret-data", 11, ctypes.c_int(ring))
        def search(ring, nr=KEYCTL):
            return libc.syscall(nr, 10, ctypes.c_int(ring), b"user", b"leak", 0)  # KEYCTL_SEARCH
        def join():
            return libc.syscall(KEYCTL, 1, b"leak-ring")  # KEYCTL_JOIN_SESSION_KEYRING
    ''')
    leave = calls + "print([join(), *(add(r) for r in (-3, -4, -5)), add(-4, ADD_KEY | X32)])"
    look = calls + "print([join(), *(search(r) for r in (-3, -4, -5)), search(-4, KEYCTL | X32)])"
    assert single.run(leave).stdout == "[-1, -1, -1, -1, -1]\n"
    assert single.run(look).stdout == "[-1, -1, -1, -1, -1]\n"


def test_device_nodes_work_but_neither_they_nor_dev_can_be_changed(single):
    # The nodes are the host's inodes: as root-mapped uid a snippet could otherwise chmod the host's
    # /dev/null, or pass bits to the next snippet in its mode.
    probe = textwrap.dedent('''
        import json, os, pty
        changed = []
        entries = [os.path.join("/dev", n) for n in os.listdir("/dev") if n != "shm"]  # shm: a fresh mount of its own
        for path in entries + [os.path.join("/dev/pts", n) for n in os.listdir("/dev/pts")]:
            st = os.stat(path, follow_symlinks=False)
            changes = [("chown", lambda: os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)),
                       ("utime", lambda: os.utime(path, follow_symlinks=False))]
            if not os.path.islink(path):  # Linux has no lchmod
                changes.append(("chmod", lambda: os.chmod(path, st.st_mode & 0o7777)))
            for label, change in changes:
                try:
                    change()
                    changed.append(f"{label} {path}")
                except OSError:
                    pass
        for make in (lambda: open("/dev/new", "w"), lambda: os.mkdir("/dev/newdir"), lambda: os.mkfifo("/dev/fifo"),
                     lambda: os.symlink("/tmp", "/dev/link"), lambda: os.unlink("/dev/null")):
            try:
                make()
                changed.append("created or removed in /dev")
            except OSError:
                pass
        with open("/dev/null", "w") as sink:
            sink.write("discarded")
        master, _ = pty.openpty()
        print(json.dumps({"changed": changed, "random": len(open("/dev/urandom", "rb").read(8)), "pty": master > 0}))
    ''')
    result = single.run(probe)
    assert result.status == "ok", result.stderr
    assert json.loads(result.stdout) == {"changed": [], "random": 8, "pty": True}


def test_nothing_of_the_host_paths_shows_inside(single):
    probe = textwrap.dedent('''
        import json, os, sys
        texts = [sys.executable, sys.prefix, sys.exec_prefix, json.dumps(sys.path), json.dumps(dict(os.environ)),
                 os.getcwd(), open("/proc/self/maps").read(), open("/proc/self/cmdline").read(),
                 open("/proc/1/cmdline").read(), open("/proc/self/mountinfo").read(),
                 json.dumps(sorted(os.listdir("/"))), json.dumps(sorted(os.listdir("/opt")))]
        print(json.dumps(texts))
    ''')
    result = single.run(probe)
    assert result.status == "ok", result.stderr
    inside = "\n".join(json.loads(result.stdout))
    for host_path in ("/root", str(PROJECT_ROOT), ".venv", "site-packages/synthloom", str(Path(sys.prefix))):
        assert host_path not in inside, host_path
    assert single.run("import os\nos.listdir('/root')").stderr.rstrip().endswith(
        "FileNotFoundError: [Errno 2] No such file or directory: '/root'")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_a_lost_zygote_takes_its_worker_down_and_the_pool_replaces_it():
    with SandboxPool(workers=1) as pool:
        (outer,) = pool.worker_pids()
        tree, frontier = [], [outer]
        while frontier:
            frontier = [c for p in frontier for c in _children(p)]
            tree += frontier
        cmdline = {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in tree}
        # worker, zygote and the armed child share the worker's command line; the zygote is the worker's child
        pythons = [p for p in tree if b"synthloom-sandbox-worker" in cmdline[p] or b"--isolate" in cmdline[p]]
        (worker,) = [p for p in pythons if not any(p in _children(q) for q in pythons)]
        (zygote,) = [p for p in _children(worker) if p in pythons]
        os.kill(zygote, 9)
        lost = pool.run(RIGHT_ADD)
        assert (lost.status, lost.verified) == ("killed", False)
        assert_worker_still_honest(pool)
        assert pool.worker_pids() != [outer]


# -- the pool's own check, driven by a scripted worker ----------------------------------------------

FAKE_WORKER = textwrap.dedent('''
    import sys
    from synthloom.verify.code.worker import encode_frame, read_frame, write_all
    mode = sys.argv[1]
    write_all(1, encode_frame({"ready": True, "pid": 0}))
    while (request := read_frame(0)) is not None:
        nonce = read_frame(0)["nonce"]
        reply = {"status": "ok", "exit_code": 0, "stdout": mode, "stderr": "", "duration_s": 0.0,
                 "tests_passed": 1, "tests_total": 1, "failed_tests": [], "id": request["id"], "nonce": nonce}
        if mode == "wrong-nonce":
            reply["nonce"] = "0" * 32
        elif mode == "no-nonce":
            del reply["nonce"]
        elif mode == "wrong-id":
            reply["id"] = request["id"] + 1
        elif mode == "two-replies":  # a stale frame ahead of the real one
            write_all(1, encode_frame(dict(reply, nonce="f" * 32)))
        elif mode == "garbage":
            write_all(1, b"\\x00\\x00\\x00\\x02{x")
            continue
        write_all(1, encode_frame(reply))
''')


def scripted_pool(mode: str, monkeypatch) -> SandboxPool:
    pool = SandboxPool(workers=1)
    launches = []

    def launch() -> WorkerLaunch:
        launches.append(mode)
        return WorkerLaunch(argv=[sys.executable, "-c", FAKE_WORKER, mode], env=dict(WORKER_ENV), process_overhead=None)

    monkeypatch.setattr(pool, "_launch", launch)
    monkeypatch.setattr("synthloom.verify.code.pool.check_bwrap_works", lambda: None)
    pool.launches = launches  # type: ignore[attr-defined]
    return pool


@pytest.mark.parametrize("mode", ["wrong-nonce", "no-nonce", "wrong-id", "two-replies", "garbage"])
def test_the_pool_rejects_any_reply_but_the_requests_own_and_replaces_the_worker(mode, monkeypatch):
    with scripted_pool(mode, monkeypatch) as pool:
        first = pool.run(RIGHT_ADD)
        assert (first.status, first.verified) == ("killed", False)
        assert first.stderr.startswith("sandbox worker lost: ")
        assert "without this request's id and nonce" in first.stderr or "unreadable reply" in first.stderr
        assert len(pool.launches) == 2  # the worker that sent it was replaced


def test_the_pool_accepts_the_requests_own_reply(monkeypatch):
    with scripted_pool("honest", monkeypatch) as pool:
        results = pool.run_batch([RIGHT_ADD, RIGHT_ADD])
        assert all(r.verified and r.stdout == "honest" for r in results) and len(pool.launches) == 1
