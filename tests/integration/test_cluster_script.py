"""hack/cluster as a developer runs it: a port another process holds stops `up` at once,
naming the port, and leaves nothing of its own running (another cluster's etcd on that port
would otherwise answer the readiness probe and hand the new apiserver that cluster's data).
Likewise a cluster of another Kubernetes version in the same state directory is never
reused, nor its data served."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, free_port

pytestmark = pytest.mark.integration


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


def kubernetes_version_under_test() -> str:
    """KUBERNETES_VERSION as hack/ resolves it (the environment's, else versions.env's)."""
    return subprocess.run(
        ["bash", "-c", 'source hack/versions.env && echo "${KUBERNETES_VERSION}"'],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def cluster_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "CERTSMITH_STATE": str(tmp_path / "state")}
    env["CERTSMITH_APISERVER_PORT"] = str(free_port())
    env["CERTSMITH_ETCD_PORT"] = str(free_port())
    env["CERTSMITH_CONTROLLER_MANAGER_PORT"] = str(free_port())
    return env


def run_cluster(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO_ROOT / "hack" / "cluster"), command, "apiserver"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_up_refuses_a_running_cluster_of_another_version(tmp_path: Path) -> None:
    """One state directory, two versions (hack/test-integration runs each in turn): a
    cluster of the other version still running there is named, not reused or stopped."""
    state = tmp_path / "state" / "apiserver"
    state.mkdir(parents=True)
    (state / "kubernetes-version").write_text("v1.0.0\n")
    stand_in = subprocess.Popen(["sleep", "300"])
    try:
        (state / "etcd.pid").write_text(f"{stand_in.pid}\n")
        result = run_cluster("up", cluster_env(tmp_path))
        assert stand_in.poll() is None, "up left the other cluster's process alone"
    finally:
        stand_in.kill()
        stand_in.wait()
    assert result.returncode == 1, result.stderr
    expected = kubernetes_version_under_test()
    assert f"runs Kubernetes v1.0.0, not {expected}: stop it first" in result.stderr
    assert (state / "kubernetes-version").read_text() == "v1.0.0\n"


def test_up_replaces_the_state_of_a_stopped_cluster_of_another_version(tmp_path: Path) -> None:
    """The etcd data of a stopped cluster of another version is not served to this one."""
    state = tmp_path / "state" / "apiserver"
    (state / "etcd").mkdir(parents=True)
    (state / "etcd" / "left-by-v1.0.0").write_text("")
    (state / "kubernetes-version").write_text("v1.0.0\n")
    env = cluster_env(tmp_path)
    try:
        result = run_cluster("up", env)
        assert result.returncode == 0, result.stderr
        assert "removing the state of a stopped v1.0.0 cluster" in result.stderr
        assert not (state / "etcd" / "left-by-v1.0.0").exists()
        expected = kubernetes_version_under_test()
        assert (state / "kubernetes-version").read_text() == f"{expected}\n"
    finally:
        run_cluster("down", env)
