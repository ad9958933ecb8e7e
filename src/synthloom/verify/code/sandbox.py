"""How a sandbox worker is started: the bubblewrap command line, its mounts and its PID budget.

Isolation layers, outermost first:
  * bubblewrap: new user, mount, PID, network, IPC, UTS and cgroup namespaces; a read-only view of
    /usr and of the interpreter's base installation bound at the neutral path /opt/python (its own
    site-packages hidden, nothing of /root, the virtualenv or the project); a cleared environment;
    --die-with-parent and --new-session.
  * a pids cgroup per worker when the pool runs as root (the kernel exempts uid 0 from
    RLIMIT_NPROC, so a fork bomb would otherwise be unbounded); RLIMIT_NPROC otherwise.
  * per snippet, inside the worker (see worker.py): forked from a zygote that never holds another
    snippet's data; fresh PID, mount, UTS and IPC namespaces under an init that holds no pool fd;
    its own /proc, /tmp and /dev/shm, the rest of /dev read-only; no capabilities, non-dumpable;
    user namespaces off; rlimits.
"""

from __future__ import annotations

import atexit
import functools
import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from synthloom.errors import SynthloomError

Isolation = Literal["bwrap", "none"]
log = logging.getLogger(__name__)

# Where the interpreter's installation appears inside the sandbox: a name that says nothing of the host.
SANDBOX_PYTHON_ROOT = "/opt/python"
# Extra processes a worker needs besides the snippet's own: bwrap's monitor, bwrap's PID 1, the worker,
# its zygote, the snippet's init, and the next snippet's init and child (armed while this one runs).
WORKER_OVERHEAD_PROCESSES = 7
# Host files an interpreter may want that reveal nothing about the host.
HARMLESS_HOST_FILES = ("/etc/ld.so.cache", "/etc/localtime")
WORKER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
              "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}


class SandboxUnavailableError(SynthloomError):
    """Isolation was asked for but this machine cannot provide it."""


def worker_source() -> str:
    return (Path(__file__).with_name("worker.py")).read_text(encoding="utf-8")


def find_bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailableError(
            "code sandbox needs bubblewrap (`apt-get install bubblewrap`); "
            "pass isolation='none' to run code WITHOUT isolation at your own risk")
    return path


@dataclass(frozen=True)
class Interpreter:
    """A Python installation on the host, and what of it the sandbox gets.

    A virtualenv's interpreter is replaced by its base installation (a venv's pyvenv.cfg and its
    editable-install .pth files name host paths such as the checkout), and the sandbox gets only the
    runtime: the binary, libpython and the standard library, without site-packages, the stdlib's own
    test suite, build files or scripts whose shebangs name the host prefix.
    """

    prefix: str  # the base installation on the host
    binary: str  # its real executable on the host
    tree: str | None = None  # the neutral runtime tree bound at SANDBOX_PYTHON_ROOT (None: a /usr Python)
    env: tuple[tuple[str, str], ...] = field(default=())

    @property
    def sandbox_binary(self) -> str:
        if self.tree is None:
            return self.binary
        return SANDBOX_PYTHON_ROOT + "/bin/" + os.path.basename(self.binary)


_PROBE = ("import json,os,sys;print(json.dumps([sys.base_prefix,os.path.realpath(sys.executable),"
          "f'python{sys.version_info[0]}.{sys.version_info[1]}']))")
_interpreter_lock = threading.Lock()


def interpreter_for(python: str) -> Interpreter:
    """Probe `python` (any interpreter, a venv's included) for its base installation."""
    with _interpreter_lock:  # pools start their workers from several threads at once
        return _interpreter_for(python)


@functools.lru_cache(maxsize=8)
def _interpreter_for(python: str) -> Interpreter:
    try:
        prefix, binary, stdlib = json.loads(subprocess.run(
            [python, "-I", "-c", _PROBE], capture_output=True, text=True, check=True, timeout=30).stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SandboxUnavailableError(f"cannot inspect interpreter {python}: {exc}") from exc
    prefix = os.path.realpath(prefix)
    if prefix == "/usr" or prefix.startswith("/usr/"):  # a system Python: /usr is bound anyway
        return Interpreter(prefix=prefix, binary=binary)
    if not binary.startswith(prefix + os.sep) or not os.path.isdir(os.path.join(prefix, "lib", stdlib)):
        raise SandboxUnavailableError(f"interpreter {binary}: no standard library under {prefix}/lib/{stdlib}")
    env = ()
    if glob.glob(os.path.join(prefix, "lib", "libpython*.so*")):
        # A shared-library build finds libpython through an RPATH that names the host prefix.
        env = (("LD_LIBRARY_PATH", SANDBOX_PYTHON_ROOT + "/lib"),)
    return Interpreter(prefix=prefix, binary=binary, tree=_neutral_runtime_tree(prefix, binary, stdlib), env=env)


# Top-level stdlib entries a sandboxed snippet does not need and that name host paths or weigh a lot.
_LEFT_OUT_OF_STDLIB = ("site-packages", "test", "config-*", "__phello__")


def _neutral_runtime_tree(prefix: str, binary: str, stdlib: str) -> str:
    """Hard links (copies across file systems) of the runtime files in a fresh private directory.

    Bound at /opt/python, the sandbox sees neither the host prefix (a bind of it would name it in
    /proc/self/mountinfo) nor anything else under it. Built once per process (~3,500 links).
    """
    root = tempfile.mkdtemp(prefix="synthloom-python-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    os.makedirs(os.path.join(root, "bin"))
    _link_or_copy(binary, os.path.join(root, "bin", os.path.basename(binary)))
    os.makedirs(os.path.join(root, "lib"))
    for library in glob.glob(os.path.join(prefix, "lib", "libpython*.so*")):
        _link_or_copy(library, os.path.join(root, "lib", os.path.basename(library)), follow_symlinks=False)
    source = os.path.join(prefix, "lib", stdlib)
    target = os.path.join(root, "lib", stdlib)
    left_out = shutil.ignore_patterns(*_LEFT_OUT_OF_STDLIB)

    def ignore(directory: str, names: list[str]) -> set[str]:
        relocated = {n for n in names if n.startswith("_sysconfigdata")}  # written below, .pyc included
        return relocated | (left_out(directory, names) if directory == source else set())

    shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy, ignore=ignore)
    # sysconfig's data names the build prefix: relocate it to the neutral path (its .pyc is left out).
    for data in glob.glob(os.path.join(source, "_sysconfigdata*.py")):
        with open(data, encoding="utf-8") as handle:
            text = handle.read().replace(prefix, SANDBOX_PYTHON_ROOT)
        with open(os.path.join(target, os.path.basename(data)), "w", encoding="utf-8") as handle:
            handle.write(text)
    os.makedirs(os.path.join(target, "site-packages"))
    return root


def _link_or_copy(source: str, target: str, *, follow_symlinks: bool = True) -> None:
    if os.path.islink(source) and not follow_symlinks:
        os.symlink(os.readlink(source), target)
        return
    try:
        os.link(source, target)
    except OSError:  # another file system, or hard links not allowed here
        shutil.copy2(source, target)


@functools.lru_cache(maxsize=4)
def _bwrap_supports(bwrap: str, option: str) -> bool:
    result = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    return option in result.stdout + result.stderr


@dataclass
class PidsCgroup:
    """A pids cgroup holding one worker's whole process tree (used only when running as root)."""

    path: Path
    _current_max: int = -1

    @classmethod
    def create(cls, max_pids: int) -> PidsCgroup:
        errors = []
        for parent in _pids_cgroup_parents():
            group = parent / f"synthloom-sandbox-{uuid.uuid4().hex[:12]}"
            try:
                group.mkdir()
                if not (group / "pids.max").exists():
                    group.rmdir()
                    continue
                cgroup = cls(group)
                cgroup.set_max(max_pids)
                return cgroup
            except OSError as exc:
                errors.append(f"{parent}: {exc.strerror}")
                try:
                    group.rmdir()
                except OSError:
                    pass
        detail = "; ".join(errors) or "no pids cgroup controller mounted"
        raise SandboxUnavailableError(
            "code sandbox running as root cannot limit processes (the kernel exempts root from "
            f"RLIMIT_NPROC) and no writable pids cgroup was found ({detail}); run as a non-root user")

    def set_max(self, max_pids: int) -> None:
        if max_pids != self._current_max:
            (self.path / "pids.max").write_text(str(max_pids))
            self._current_max = max_pids

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def remove(self) -> None:
        """Kill whatever is still in the group, then remove it (it must be empty to go)."""
        deadline = time.monotonic() + 2.0
        while True:
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    log.warning("could not remove sandbox cgroup %s: %s", self.path, exc.strerror)
                    return
            time.sleep(0.01)


def _pids_cgroup_parents() -> list[Path]:
    """Candidate parent cgroups (ours, in the v1 pids hierarchy and in the unified v2 hierarchy)."""
    own: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            own[controllers] = path
    except OSError:
        return []
    parents = []
    for controllers, path in own.items():
        if "pids" in controllers.split(","):
            parents.append(Path("/sys/fs/cgroup/pids") / path.lstrip("/"))
    if "" in own:
        for base in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
            if (base / "cgroup.controllers").exists():
                parents.append(base / own[""].lstrip("/"))
    return [p for p in parents if p.is_dir()]


@dataclass
class WorkerLaunch:
    """Everything needed to start one worker process."""

    argv: list[str]
    env: dict[str, str]
    cgroup: PidsCgroup | None = None
    scratch_dir: str | None = None  # host-side scratch (isolation='none' only), removed with the worker
    # Processes of the worker itself that share the snippet's process budget; None: RLIMIT_NPROC can't
    # be a per-snippet limit here (isolation='none' counts all the user's processes) so it is left alone.
    process_overhead: int | None = WORKER_OVERHEAD_PROCESSES

    def nproc_rlimit(self, max_processes: int) -> int | None:
        return None if self.process_overhead is None else max_processes + self.process_overhead

    def set_max_processes(self, max_processes: int) -> None:
        """Apply one snippet's process budget to the worker's cgroup (a no-op without one)."""
        if self.cgroup is not None:
            self.cgroup.set_max(max_processes + WORKER_OVERHEAD_PROCESSES)

    def release(self) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.scratch_dir is not None:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)


def bwrap_launch(python: str, max_processes: int, scratch_bytes: int) -> WorkerLaunch:
    bwrap = find_bwrap()
    interpreter = interpreter_for(python)
    argv = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
            "--clearenv", "--hostname", "sandbox",
            # Let the worker give each snippet its own namespaces and mounts and switch user namespaces
            # off below it; the snippet drops every capability.
            "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_SYS_RESOURCE", "--cap-add", "CAP_SYS_CHROOT",
            "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for path in HARMLESS_HOST_FILES:
        argv += ["--ro-bind-try", path, path]
    if interpreter.tree is not None:
        argv += ["--ro-bind", interpreter.tree, SANDBOX_PYTHON_ROOT]
    # The worker's own /proc and /dev; each snippet gets fresh ones (and a fresh /tmp) from the worker.
    argv += ["--proc", "/proc", "--dev", "/dev", "--dir", "/tmp", "--remount-ro", "/", "--chdir", "/"]
    env = dict(WORKER_ENV) | dict(interpreter.env)
    for name, value in env.items():
        argv += ["--setenv", name, value]
    argv += [interpreter.sandbox_binary, "-I", "-c", worker_source(), "--isolate",
             "--scratch-bytes", str(scratch_bytes)]
    launch = WorkerLaunch(argv=argv, env=env)
    if os.geteuid() == 0:
        launch.cgroup = PidsCgroup.create(max_processes + WORKER_OVERHEAD_PROCESSES)
        # Join the cgroup before bwrap forks, so every process of the sandbox is counted.
        launch.argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', launch.cgroup.procs_file, *argv]
    return launch


def unisolated_launch(python: str, max_processes: int) -> WorkerLaunch:
    scratch = tempfile.mkdtemp(prefix="synthloom-unsandboxed-")
    argv = [python, "-I", "-c", worker_source(), "--scratch-root", scratch]
    # RLIMIT_NPROC counts every process of this user on the host here, so it cannot be a per-snippet limit.
    return WorkerLaunch(argv=argv, env=dict(WORKER_ENV), scratch_dir=scratch, process_overhead=None)


def check_bwrap_works() -> None:
    """Fail closed, with bubblewrap's own reason, when namespaces are unavailable on this machine."""
    _probe_bwrap(find_bwrap())


@functools.lru_cache(maxsize=4)
def _probe_bwrap(bwrap: str) -> None:
    try:
        result = subprocess.run([bwrap, "--unshare-all", "--unshare-user", "--die-with-parent",
                                 "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailableError(f"bubblewrap cannot run: {exc}") from exc
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise SandboxUnavailableError(
            f"bubblewrap cannot create namespaces here ({reason}); enable unprivileged user namespaces "
            "or pass isolation='none' to run code WITHOUT isolation at your own risk")
