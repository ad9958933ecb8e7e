"""The embedded engine's defaults for a shared machine (issue 18): llama.cpp's OpenMP threads wait
passively unless the environment says otherwise, and the thread count follows the CPUs this
process may use. Each case runs a fresh interpreter (libgomp reads its settings once, at load)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from synthloom.errors import ConfigError


def _fresh(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**base, "OMP_DISPLAY_ENV": "VERBOSE", **env})


IMPORT = "import os, synthloom.llm.embedded_llama; print('left', os.environ.get('OMP_WAIT_POLICY'))"


def test_openmp_waits_passively_by_default_without_leaking_the_setting():
    out = _fresh(IMPORT)
    assert out.returncode == 0, out.stderr
    assert "GOMP_SPINCOUNT = '0'" in out.stderr  # libgomp's own report: no spinning at barriers
    assert "left None" in out.stdout  # child processes and other OpenMP libraries are unaffected


@pytest.mark.parametrize("env, shown", [({"OMP_WAIT_POLICY": "ACTIVE"}, "GOMP_SPINCOUNT = '30000000000'"),
                                        ({"GOMP_SPINCOUNT": "1000"}, "GOMP_SPINCOUNT = '1000'")])
def test_an_explicit_wait_policy_wins(env, shown):
    out = _fresh(IMPORT, **env)
    assert out.returncode == 0 and shown in out.stderr


def test_threads_follow_the_cpus_this_process_may_use():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from synthloom.llm.embedded import EmbeddedModel, physical_cores; "
            "m = EmbeddedModel(n_slots=1, n_ctx=256); print(physical_cores(), m.options.n_threads); m.close()")
    out = _fresh(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]


@pytest.mark.parametrize("bad", [0, -2, True, "2"])
def test_a_bad_thread_count_is_a_one_line_config_error(bad):
    from synthloom.llm.embedded import EmbeddedModel

    with pytest.raises(ConfigError, match="n_threads must be a positive integer"):
        EmbeddedModel(n_threads=bad, n_slots=1, n_ctx=256)
