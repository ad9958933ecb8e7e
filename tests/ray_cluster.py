"""A real two-node Ray cluster on loopback for tests: `ray start --block` head + worker.

Started once per test session (import the `ray_cluster` fixture). Each `ray start --block`
process owns the Ray daemons it launched and stops them when it gets SIGTERM, so teardown ends
exactly the processes this fixture started (never `ray stop`, which would end every Ray process
on the machine). The cluster's address is `ray_cluster.address`; the test process is connected.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.openai_server import free_port

RAY = str(Path(sys.executable).with_name("ray"))
# A token of our own for this cluster (not ~/.ray/auth_token, which other Ray users may rewrite);
# set in os.environ so the test process and the drivers it spawns present it too.
AUTH_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass
class RayCluster:
    address: str
    temp_dir: str
    procs: list[subprocess.Popen]
    saved_env: dict[str, str | None]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args], env=os.environ.copy(),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_nodes(address: str, count: int, procs: list[subprocess.Popen], timeout: float = 90) -> None:
    import ray

    ray.init(address=address, log_to_driver=False)
    deadline = time.monotonic() + timeout
    while sum(n["Alive"] for n in ray.nodes()) < count:
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise RuntimeError(f"Ray cluster did not come up with {count} nodes")
        time.sleep(0.5)


def _reload_auth() -> None:
    """Make this process re-read the auth settings (Ray caches them once it is imported)."""
    try:
        from ray._private.authentication_test_utils import reset_auth_token_state
    except ImportError:  # older Ray: nothing cached
        return
    reset_auth_token_state()


def start_cluster() -> RayCluster:
    saved = {k: os.environ.get(k) for k in AUTH_ENV}
    os.environ.update({**AUTH_ENV, "RAY_AUTH_TOKEN": secrets.token_hex(16)})
    _reload_auth()
    temp_dir = tempfile.mkdtemp(prefix="slray-", dir="/tmp")  # short: Ray puts unix sockets here
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
    head = _start(["--head", "--port", str(port), "--temp-dir", temp_dir, "--include-dashboard", "false",
                   *common], Path(temp_dir) / "head.log")
    cluster = RayCluster(address, temp_dir, [head], saved)
    try:
        deadline = time.monotonic() + 90
        while not list(Path(temp_dir).glob("session_latest")) and time.monotonic() < deadline:
            if head.poll() is not None:
                raise RuntimeError((Path(temp_dir) / "head.log").read_text()[-2000:])
            time.sleep(0.3)
        cluster.procs.append(_start(["--address", address, *common], Path(temp_dir) / "worker.log"))
        _wait_nodes(address, 2, cluster.procs)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster: RayCluster) -> None:
    import ray

    ray.shutdown()
    for proc in reversed(cluster.procs):  # worker first, then head
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)  # a graceful stop takes ~30 s on a busy 2-core box
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    for k, v in cluster.saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _reload_auth()


@pytest.fixture(scope="session", name="ray_cluster")
def session_ray_cluster():
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
