"""A real two-node Ray cluster on loopback for tests: `ray start --block` head + worker.

Started once per test session (import the `ray_cluster` fixture). Each `ray start --block`
process owns the Ray daemons it launched and stops them when it gets SIGTERM, so teardown ends
exactly the processes this fixture started (never `ray stop`, which would end every Ray process
on the machine). The cluster's address is `ray_cluster.address`; the test process is connected.
"""

from __future__ import annotations

import os
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
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}


@dataclass
class RayCluster:
    address: str
    temp_dir: str
    procs: list[subprocess.Popen]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args], env=ENV,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_nodes(address: str, count: int, procs: list[subprocess.Popen], timeout: float = 90) -> None:
    import ray

    ray.init(address=address, log_to_driver=False)
    deadline = time.monotonic() + timeout
    while sum(n["Alive"] for n in ray.nodes()) < count:
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise RuntimeError(f"Ray cluster did not come up with {count} nodes")
        time.sleep(0.5)


def start_cluster() -> RayCluster:
    temp_dir = tempfile.mkdtemp(prefix="slray-", dir="/tmp")  # short: Ray puts unix sockets here
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
    head = _start(["--head", "--port", str(port), "--temp-dir", temp_dir, "--include-dashboard", "false",
                   *common], Path(temp_dir) / "head.log")
    procs = [head]
    deadline = time.monotonic() + 90
    while not list(Path(temp_dir).glob("session_latest")) and time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError((Path(temp_dir) / "head.log").read_text()[-2000:])
        time.sleep(0.3)
    procs.append(_start(["--address", address, *common], Path(temp_dir) / "worker.log"))
    _wait_nodes(address, 2, procs)
    return RayCluster(address, temp_dir, procs)


def stop_cluster(cluster: RayCluster) -> None:
    import ray

    ray.shutdown()
    for proc in reversed(cluster.procs):  # worker first, then head
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster():
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
