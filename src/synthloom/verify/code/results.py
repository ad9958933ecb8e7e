"""Value types shared by the sandbox pool and its callers: limits, snippets and results."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from synthloom.errors import ConfigError

ExecStatus = Literal["ok", "error", "timeout", "memory", "output_limit", "killed"]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits applied to every snippet (each snippet gets its own fresh process)."""

    wall_s: float = 10.0  # wall-clock limit, enforced from outside by killing the snippet's process tree
    cpu_s: int = 10  # RLIMIT_CPU of the snippet process
    memory_bytes: int = 1 << 30  # RLIMIT_AS (address space) of the snippet process
    max_processes: int = 16  # processes the snippet may have alive at once (itself included)
    max_output_bytes: int = 1 << 20  # per stream (stdout, stderr); beyond it the snippet is killed
    max_file_bytes: int = 64 << 20  # RLIMIT_FSIZE: largest file the snippet may write
    max_open_files: int = 256  # RLIMIT_NOFILE
    test_timeout_s: float | None = None  # optional per-assert limit (CodeT uses 0.1 s)

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "memory_bytes", "max_processes", "max_output_bytes",
                     "max_file_bytes", "max_open_files"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"sandbox limit {name} must be positive, got {getattr(self, name)!r}")
        if self.test_timeout_s is not None and self.test_timeout_s <= 0:
            raise ConfigError(f"sandbox limit test_timeout_s must be positive, got {self.test_timeout_s!r}")

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Snippet:
    """Python source to run, optionally followed by test statements (typically asserts).

    Each test runs after `code` in the same namespace and is counted separately, so callers can
    tell which tests a solution passes (CodeT's dual agreement needs exactly that).
    """

    code: str
    tests: tuple[str, ...] = ()
    stdin: str = ""

    @classmethod
    def coerce(cls, item: str | Snippet) -> Snippet:
        if isinstance(item, Snippet):
            return item
        if isinstance(item, str):
            return cls(code=item)
        raise TypeError(f"expected a str or Snippet, got {type(item).__name__}")


@dataclass(frozen=True)
class ExecResult:
    """What happened to one snippet."""

    status: ExecStatus
    exit_code: int | None  # negative: killed by that signal; None: never ran
    stdout: str
    stderr: str  # truncated to the output limit
    duration_s: float
    tests_passed: int = 0
    tests_total: int = 0
    failed_tests: tuple[int, ...] = field(default_factory=tuple)  # indexes into Snippet.tests

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def verified(self) -> bool:
        """Ran cleanly and passed every test; code with no tests never counts as verified."""
        return self.ok and self.tests_total > 0 and self.tests_passed == self.tests_total

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ExecResult:
        return cls(
            status=data["status"],
            exit_code=data.get("exit_code"),
            stdout=data.get("stdout", ""),
            stderr=data.get("stderr", ""),
            duration_s=float(data.get("duration_s", 0.0)),
            tests_passed=int(data.get("tests_passed", 0)),
            tests_total=int(data.get("tests_total", 0)),
            failed_tests=tuple(int(i) for i in data.get("failed_tests", ())),
        )
