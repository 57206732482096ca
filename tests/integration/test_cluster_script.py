"""hack/cluster as a developer runs it: a port another process holds stops `up` at once,
naming the port, and leaves nothing of its own running (another cluster's etcd on that port
would otherwise answer the readiness probe and hand the new apiserver that cluster's data)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("taken", ["CERTSMITH_ETCD_PORT", "CERTSMITH_CONTROLLER_MANAGER_PORT"])
def test_up_refuses_a_port_another_process_holds(tmp_path: Path, taken: str) -> None:
    ports = {
        "CERTSMITH_APISERVER_PORT": free_port(),
        "CERTSMITH_ETCD_PORT": free_port(),
        "CERTSMITH_CONTROLLER_MANAGER_PORT": free_port(),
    }
    env = {**os.environ, "CERTSMITH_STATE": str(tmp_path / "state")}
    env |= {name: str(port) for name, port in ports.items()}
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports[taken]))
        squatter.listen()
        try:
            result = subprocess.run(
                [str(REPO_ROOT / "hack" / "cluster"), "up", "apiserver"],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
        finally:
            subprocess.run(
                [str(REPO_ROOT / "hack" / "cluster"), "down", "apiserver"],
                env=env,
                capture_output=True,
                timeout=120,
            )
    assert result.returncode == 1, result.stderr
    assert f"port {ports[taken]} on 127.0.0.1 is taken by another process" in result.stderr
    pids = sorted((tmp_path / "state" / "apiserver").glob("*.pid"))
    assert pids == [], "a failed up leaves no pid files (nothing of its own running)"
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "state")], capture_output=True, text=True
    ).stdout
    assert leftovers == "", leftovers
