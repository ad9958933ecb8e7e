"""Code-execution sandbox: run untrusted Python in isolated, resource-limited processes."""

from synthloom.verify.code.pool import SandboxPool
from synthloom.verify.code.results import ExecResult, ExecStatus, SandboxLimits, Snippet
from synthloom.verify.code.sandbox import Isolation, SandboxUnavailableError

__all__ = ["ExecResult", "ExecStatus", "Isolation", "SandboxLimits", "SandboxPool", "SandboxUnavailableError",
           "Snippet"]
