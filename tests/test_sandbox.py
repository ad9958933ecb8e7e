"""The code sandbox: normal behaviour, and escape attempts that must all fail (real bubblewrap)."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from synthloom.verify.code import ExecResult, SandboxLimits, SandboxPool, SandboxUnavailableError, Snippet

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHORT = SandboxLimits(wall_s=2.0, cpu_s=5, memory_bytes=512 << 20, max_processes=8, max_output_bytes=64 << 10)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as sandbox:
        yield sandbox


def run(pool: SandboxPool, code: str, limits: SandboxLimits | None = None) -> ExecResult:
    return pool.run(code, limits)


def test_normal_snippet_runs_with_stdout_stderr_and_exit_code(pool):
    result = run(pool, "import sys, math\nprint(math.factorial(5))\nprint('warn', file=sys.stderr)\nsys.exit(3)")
    assert (result.status, result.exit_code, result.stdout, result.stderr) == ("error", 3, "120\n", "warn\n")
    ok = run(pool, "print(__name__)")
    assert ok.status == "ok" and ok.exit_code == 0 and ok.stdout == "__main__\n"


def test_stdin_and_subprocesses_work_inside(pool):
    result = pool.run(Snippet(code="import subprocess, sys\nline = input()\n"
                                   "out = subprocess.run(['/bin/echo', line.upper()], capture_output=True, text=True)\n"
                                   "print(out.stdout.strip())", stdin="hello\n"))
    assert result.status == "ok", result.stderr
    assert result.stdout == "HELLO\n"


def test_exception_reports_error_with_traceback(pool):
    result = run(pool, "def f():\n    return 1 / 0\nf()")
    assert result.status == "error" and result.exit_code == 1
    assert "ZeroDivisionError" in result.stderr and 'File "<snippet>", line 2' in result.stderr


def test_assert_tests_are_counted_individually(pool):
    snippet = Snippet(code="def add(a, b):\n    return a + b if a < 10 else 0",
                      tests=("assert add(1, 2) == 3", "assert add(10, 1) == 11", "assert add(2, 2) == 4",
                             "assert add(1, 1) == 3"))
    result = pool.run(snippet)
    assert (result.tests_passed, result.tests_total, result.failed_tests) == (2, 4, (1, 3))
    assert result.status == "error" and not result.verified
    passing = pool.run(Snippet(code=snippet.code, tests=snippet.tests[:1] + snippet.tests[2:3]))
    assert passing.verified and passing.tests_passed == 2
    assert not run(pool, "x = 1").verified  # no tests: never counts as verified


def test_per_test_timeout_fails_only_that_test(pool):
    limits = SandboxLimits(wall_s=5.0, test_timeout_s=0.2)
    snippet = Snippet(code="def spin(n):\n    while n:\n        pass\n    return 0",
                      tests=("assert spin(0) == 0", "assert spin(1) == 0", "assert spin(0) == 0"))
    result = pool.run(snippet, limits)
    assert result.failed_tests == (1,) and result.tests_passed == 2
    assert result.duration_s < 3.0


def test_network_connect_to_a_real_listener_fails(pool):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                "s.sendall(b'escaped')\nprint('connected')")
        result = run(pool, code, SHORT)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()
    assert result.status == "error" and "connected" not in result.stdout
    assert "Error" in result.stderr
    listed = run(pool, "import socket\nprint(socket.if_nameindex())")
    assert listed.stdout.strip() == "[(1, 'lo')]"  # a private, empty network namespace


@pytest.mark.parametrize("target", ["/etc/shadow", "/etc/passwd", str(PROJECT_ROOT / "pyproject.toml"),
                                    str(PROJECT_ROOT / "src" / "synthloom" / "errors.py"), "/root/.bashrc"])
def test_host_files_are_invisible(pool, target):
    result = run(pool, f"print(open({target!r}).read())", SHORT)
    assert result.status == "error" and result.stdout == ""
    assert "FileNotFoundError" in result.stderr or "PermissionError" in result.stderr


def test_a_file_the_test_just_wrote_is_invisible(pool, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top-secret-token")
    result = run(pool, f"import os\nprint(os.path.exists({str(secret)!r}))\nprint(open({str(secret)!r}).read())",
                 SHORT)
    assert result.stdout == "False\n" and "top-secret-token" not in result.stdout + result.stderr
    listing = run(pool, "import os\nprint(sorted(os.listdir('/')))\nprint(os.path.exists('/root'))")
    top, root_exists = listing.stdout.splitlines()
    # the interpreter sits at /opt/python: nothing on the way to the checkout or the venv exists
    assert set(eval(top)) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "sbin", "tmp",
                              "usr"}
    assert root_exists == "False"


@pytest.mark.parametrize("target", [str(PROJECT_ROOT / "escape.txt"), "/usr/escape.txt", "/escape.txt",
                                    "/etc/escape.txt", str(PROJECT_ROOT / ".venv" / "escape.txt")])
def test_writing_outside_scratch_fails(pool, target):
    result = run(pool, f"open({target!r}, 'w').write('pwned')\nprint('wrote')", SHORT)
    if not target.startswith("/tmp/"):  # a checkout under /tmp is shadowed by the sandbox's own tmpfs
        assert result.status == "error" and "wrote" not in result.stdout
    assert not Path(target).exists()  # whatever the sandbox saw, the host file was never written


def test_writing_to_host_tmp_does_not_reach_the_host(pool, tmp_path):
    target = tmp_path / "escape.txt"
    result = run(pool, f"import os\nos.makedirs({str(tmp_path)!r}, exist_ok=True)\n"
                       f"open({str(target)!r}, 'w').write('pwned')", SHORT)
    assert result.status == "ok"  # it wrote into its own throw-away tmpfs ...
    assert not target.exists()  # ... not the host's /tmp


def test_process_count_is_limited(pool):
    code = ("import os, time\nn = 0\nfor _ in range(100):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(3)\n        os._exit(0)\n"
            "    n += 1\nprint(n)")
    result = run(pool, code, SHORT)
    assert result.status == "ok", result.stderr
    assert 0 < int(result.stdout) < SHORT.max_processes


def test_fork_bomb_is_contained(pool):
    before = time.monotonic()
    result = run(pool, "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
                 SandboxLimits(wall_s=1.5, max_processes=8))
    assert result.status == "timeout"
    assert time.monotonic() - before < 8
    assert run(pool, "print('alive')").stdout == "alive\n"


def test_memory_bomb_is_stopped(pool):
    # a generous wall clock: touching 512 MB takes seconds on a loaded 2-core machine
    limits = SandboxLimits(wall_s=20.0, cpu_s=10, memory_bytes=512 << 20)
    result = run(pool, "blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))", limits)
    assert result.status == "memory"
    one_shot = run(pool, "x = bytearray(4 << 30)", SHORT)
    assert one_shot.status == "memory"


def test_infinite_loop_is_killed_by_wall_clock(pool):
    result = run(pool, "while True:\n    pass", SandboxLimits(wall_s=1.0, cpu_s=30))
    assert result.status == "timeout" and result.exit_code == -signal.SIGKILL
    assert 0.9 < result.duration_s < 3.0
    sleeper = run(pool, "import time\ntime.sleep(60)", SandboxLimits(wall_s=0.5))
    assert sleeper.status == "timeout" and sleeper.duration_s < 2.0


def test_cpu_limit_stops_busy_code_before_the_wall_clock(pool):
    result = run(pool, "while True:\n    pass", SandboxLimits(wall_s=20.0, cpu_s=1))
    assert result.status == "timeout" and result.duration_s < 5.0


def test_huge_output_is_truncated(pool):
    limits = SandboxLimits(wall_s=10.0, max_output_bytes=32 << 10)
    result = run(pool, "import sys\nwhile True:\n    sys.stdout.write('x' * 4096)", limits)
    assert result.status == "output_limit"
    assert len(result.stdout) == limits.max_output_bytes and set(result.stdout) == {"x"}
    assert result.duration_s < 5.0


def test_environment_secrets_are_not_inherited(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-secret-4242")
    monkeypatch.setenv("SYNTHLOOM_TEST_TOKEN", "tok-fake-secret-4242")
    code = ("import os, glob\nprint(dict(os.environ))\nfor path in glob.glob('/proc/*/environ'):\n"
            "    try:\n        print(open(path, 'rb').read())\n    except OSError:\n        pass")
    with SandboxPool(workers=1) as fresh:
        result = fresh.run(code)
    assert result.status == "ok", result.stderr
    assert "fake-secret-4242" not in result.stdout
    assert "OPENAI_API_KEY" not in result.stdout and "SYNTHLOOM_TEST_TOKEN" not in result.stdout
    assert "'HOME': '/tmp/run-" in result.stdout


def test_snippet_cannot_kill_its_worker(pool):
    pids = sorted(pool.worker_pids())
    result = run(pool, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('survived')", SHORT)
    # its parent is outside its PID namespace: getppid() is 0, and kill(0) hits only its own group
    assert result.status == "killed" and result.exit_code == -signal.SIGKILL
    visible = ("import os, signal\nothers = [int(n) for n in os.listdir('/proc') if n.isdigit() and int(n) != os.getpid()]\n"
               "for pid in others:\n    for sig in (signal.SIGSTOP, signal.SIGKILL):\n        try:\n"
               "            os.kill(pid, sig)\n        except OSError:\n            pass\nprint(others)")
    for _ in range(pool.size * 2):  # reach every worker
        assert run(pool, visible, SHORT).stdout == "[1]\n"  # only the init of its own namespace is visible
    assert all(run(pool, "print('still here')").stdout == "still here\n" for _ in range(pool.size * 2))
    assert sorted(pool.worker_pids()) == pids


def test_scratch_is_fresh_for_every_snippet():
    with SandboxPool(workers=1) as single:
        first = single.run("import os\nopen('note.txt', 'w').write('left behind')\n"
                           "open('/tmp/shared.txt', 'w').write('left behind')\nprint(os.getcwd())")
        second = single.run("import os\nprint(os.getcwd())\nprint(os.listdir('.'))\n"
                            "print(os.path.exists('/tmp/shared.txt'))\nprint(os.listdir('/tmp'))")
    assert first.status == "ok" and second.status == "ok", first.stderr + second.stderr
    cwd, listing, shared, tmp_listing = second.stdout.splitlines()
    assert cwd != first.stdout.strip()
    assert (listing, shared) == ("[]", "False")
    # only the snippet's own scratch directory: nothing of the host's /tmp shows, even when the
    # checkout and its virtualenv live under /tmp (the interpreter is bound at /opt/python)
    assert eval(tmp_listing) == [os.path.basename(cwd)]


def test_namespaced_kernel_state_does_not_leak_between_snippets():
    with SandboxPool(workers=1) as single:
        first = single.run("import ctypes, socket\nlibc = ctypes.CDLL(None)\n"
                           "try:\n    open('/proc/sys/kernel/hostname', 'w').write('changed')\nexcept OSError:\n"
                           "    libc.sethostname(b'changed', 7)\nprint(libc.shmget(4242, 4096, 0o1666))")
        second = single.run("import socket, ctypes\nprint(socket.gethostname())\n"
                            "print(ctypes.CDLL(None).shmget(4242, 4096, 0o666))")
    assert first.status == "ok" and int(first.stdout) >= 0, first.stderr
    assert second.stdout.splitlines() == ["sandbox", "-1"]  # no such segment any more


def test_module_state_does_not_leak_between_snippets():
    with SandboxPool(workers=1) as single:
        single.run("import math, json\nmath.pi = 3\njson.dumps = None\nimport builtins\nbuiltins.leak = 1")
        result = single.run("import math, json\nprint(math.pi, json.dumps([1]), hasattr(__builtins__, 'leak'))")
    assert result.stdout == "3.141592653589793 [1] False\n"


def test_a_dead_worker_is_replaced():
    with SandboxPool(workers=1) as single:
        (pid,) = single.worker_pids()
        os.kill(pid, signal.SIGKILL)
        lost = single.run("print(1)")
        assert lost.status == "killed"
        assert single.run("print(2)").stdout == "2\n"
        assert single.worker_pids() != [pid]


async def test_run_many_from_a_coroutine_keeps_input_order(pool):
    results = await pool.run_many([f"print({i} * {i})" for i in range(12)])
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(12)]


def test_missing_bubblewrap_fails_closed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on PATH
    sandbox = SandboxPool(workers=1)
    with pytest.raises(SandboxUnavailableError, match="bubblewrap"):
        sandbox.start()
    sandbox.close()


def test_no_isolation_needs_explicit_opt_in_and_warns():
    with pytest.warns(RuntimeWarning, match="WITHOUT"):
        unsafe = SandboxPool(workers=1, isolation="none")
    with unsafe:
        result = unsafe.run(Snippet("def f():\n    return 2", tests=("assert f() == 2",)))
    assert result.verified


def test_disabled_user_namespaces_fail_closed_with_the_reason(monkeypatch, tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    sandbox = SandboxPool(workers=1)
    with pytest.raises(SandboxUnavailableError, match="cannot create namespaces.*No permissions"):
        sandbox.start()
    sandbox.close()
