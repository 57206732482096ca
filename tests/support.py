"""Helpers shared by the cluster test tiers: polling with deadlines, the project's kubectl."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(
    probe: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    retry_on: tuple[type[Exception], ...] = (Exception,),
) -> T:
    """Poll `probe` every `interval` seconds until it returns something truthy, and return
    that; raise AssertionError naming `what` after `timeout` seconds.

    An exception of a `retry_on` type counts as "not yet" (a probe may fail while the state
    converges, e.g. through an apiserver restart); any other propagates at once: pass
    `retry_on=()` when a failing probe is a failure, or a probe acts as well as reads.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except retry_on as error:
            last_error = error
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error})"
    )


@cache
def kubectl_path() -> str:
    """The project's own kubectl, of the Kubernetes version under test (KUBERNETES_VERSION,
    default hack/versions.env's), not whatever kubectl the machine has on PATH."""
    output = subprocess.run(
        [str(REPO_ROOT / "hack" / "build-binaries"), "kubectl"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return str(Path(output.strip().splitlines()[-1]) / "kubectl")


def kubectl(
    kubeconfig: str, *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_path(), "--kubeconfig", kubeconfig, *args],
        input=input,
        check=check,
        capture_output=True,
        text=True,
    )


def _ephemeral_ports() -> range:
    """The kernel's range for outgoing connections' local ports (Linux)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def _test_ports() -> range:
    """Where tests pick their ports: CERTSMITH_TEST_PORT_RANGE ("low-high", given to each
    of the integration tiers hack/test-integration runs side by side, so that one never
    takes a port the other's stopped operator will listen on again), else from 20000 to
    just below the kernel's ephemeral range."""
    given = os.environ.get("CERTSMITH_TEST_PORT_RANGE")
    if given:
        low, high = given.split("-")
        return range(int(low), int(high) + 1)
    return range(20000, _ephemeral_ports().start)


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now, out of the ephemeral range: a port the kernel hands out
    (bind to 0) can be taken by any outgoing connection before a server started later binds
    it, and the operator's own connections to the apiserver are many. Never the same port
    twice in one session: two replicas made before either starts would otherwise both see
    a port free and the second would fail to listen on it."""
    candidates = [port for port in _test_ports() if port not in _HANDED_OUT]
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port on 127.0.0.1 in the test ports")


def local_admission_objects(url: str) -> str:
    """The install's admission objects (YAML) for an operator run on this host: its webhook
    configurations (manifests/webhooks.yaml), each webhook called at `url` plus its Service
    path instead of through the Service (the apiserver runs here too), and its
    ValidatingAdmissionPolicy with the binding (manifests/admission-policy.yaml, for the
    namespace certsmith)."""
    documents = list(yaml.safe_load_all((REPO_ROOT / "manifests" / "webhooks.yaml").read_text()))
    for body in documents:
        for hook in body["webhooks"]:
            service = hook["clientConfig"].pop("service")
            hook["clientConfig"]["url"] = url.rstrip("/") + service["path"]
    policy = (REPO_ROOT / "manifests" / "admission-policy.yaml").read_text()
    documents.extend(body for body in yaml.safe_load_all(policy) if body)
    return yaml.safe_dump_all(documents)


INSTALL_FIELD_MANAGER = "certsmith-install"
"""The field manager the tiers apply the install's objects with, as a GitOps tool does."""
AS_THE_INSTALL = ("--server-side", f"--field-manager={INSTALL_FIELD_MANAGER}", "--force-conflicts")
"""`kubectl apply` / `kubectl diff` flags that act as the install (INSTALL_FIELD_MANAGER)."""


def install_admission(kubeconfig: str, url: str) -> None:
    """local_admission_objects(url) applied server-side by INSTALL_FIELD_MANAGER, as a
    GitOps tool applies the install: the caBundle the operator wrote stays (it owns that
    field), every other field is the install's again, and what was deleted is created."""
    kubectl(
        kubeconfig,
        "apply",
        *AS_THE_INSTALL,
        "-f",
        "-",
        input=local_admission_objects(url),
    )
