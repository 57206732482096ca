"""Issue #18's first "Done when": a device outside the cluster (this test process, with keys
made here) enrols by CSR, calls an nginx mTLS server in the cluster through a port-forward,
and is refused once `kubectl certsmith revoke` put it in the CRL, while another device
carries on. The server (demo/revocation.yaml) mounts the trust bundle ConfigMap (ca.crt,
ca.crl) and reloads nginx when kubelet refreshes it."""

from __future__ import annotations

import base64
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.pods import apply_demo_manifest
from tests.support import kubectl, kubectl_path, wait_for

pytestmark = pytest.mark.e2e

PLUGIN = Path(sys.executable).parent / "kubectl-certsmith"
REFUSAL_TIMEOUT = 240  # kubelet refreshed mounted ConfigMaps in 60-90 s here; README says 2 min


def plugin(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLUGIN), "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def enrol(kubeconfig: str, namespace: str, name: str, dns: str, tmp: Path) -> Path:
    """What a device runs: a key of its own and a CSR (openssl), the CertificateRequest,
    its certificate once signed. The directory holding device.key, device.crt (leaf and
    intermediate), ca.crt."""
    home = tmp / name
    home.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "device.key",
            "-subj",
            f"/CN={dns}",
            "-addext",
            f"subjectAltName=DNS:{dns}",
            "-out",
            "device.csr",
        ],
        cwd=home,
        check=True,
        capture_output=True,
    )
    request = base64.b64encode((home / "device.csr").read_bytes()).decode()
    manifest = (
        "apiVersion: certsmith.dev/v1alpha1\nkind: CertificateRequest\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec: {{request: {request}, duration: 24h, usages: [client auth]}}\n"
    )
    kubectl(kubeconfig, "apply", "-f", "-", input=manifest)
    return home


def signed(kubeconfig: str, api: client.ApiClient, namespace: str, name: str, home: Path) -> int:
    """Wait until the request is signed; write device.crt and ca.crt; its serial."""

    def status() -> dict | None:
        body = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "certsmith.dev", "v1alpha1", namespace, "certificaterequests", name
        )
        found = body.get("status") or {}
        return found if found.get("certificate") else None

    found = wait_for(status, timeout=60, what=f"CertificateRequest {name} signed")
    (home / "device.crt").write_text(found["certificate"])
    (home / "ca.crt").write_text(found["ca"])
    return int(found["serialNumber"], 16)


def call(port: int, server_name: str, home: Path) -> str:
    """One HTTPS GET through the port-forward as the device: its status line, or why the
    TLS connection failed."""
    context = ssl.create_default_context(cafile=str(home / "ca.crt"))
    context.load_cert_chain(str(home / "device.crt"), str(home / "device.key"))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            request = f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n"
            tls.sendall(request.encode())
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
    except (OSError, ssl.SSLError) as error:
        return f"failed: {error}"
    return answer.decode(errors="replace").split("\r\n", 1)[0]


@pytest.fixture
def port_forward(certsmith_installed: str, e2e_namespace: str) -> Iterator[int]:
    """demo/revocation.yaml applied and Ready; a local port forwarded to its nginx."""
    apply_demo_manifest(certsmith_installed, "revocation.yaml", e2e_namespace)
    kubectl(
        certsmith_installed,
        "-n",
        e2e_namespace,
        "rollout",
        "status",
        "deployment/crl-server",
        "--timeout=180s",
    )
    forward = subprocess.Popen(
        [
            kubectl_path(),
            "--kubeconfig",
            certsmith_installed,
            "-n",
            e2e_namespace,
            "port-forward",
            "deployment/crl-server",
            ":8443",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert found, (
            f"port-forward said {line!r}: {forward.stderr.read() if forward.stderr else ''}"
        )
        yield int(found.group(1))
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_a_revoked_device_is_refused_and_another_carries_on(
    certsmith_installed: str,
    e2e_client: client.ApiClient,
    e2e_namespace: str,
    port_forward: int,
    tmp_path: Path,
) -> None:
    namespace, kubeconfig = e2e_namespace, certsmith_installed
    server = f"crl-server.{namespace}.svc"
    # A partner's name: not the namespace's own, so it waits for a person to approve it.
    lost = enrol(kubeconfig, namespace, "device-1", "device-1.devices.example", tmp_path)
    approved = plugin(
        kubeconfig, "approve", "device-1", "-n", namespace, "--reason", "DeviceVerified"
    )
    assert approved.returncode == 0, approved.stderr
    lost_serial = signed(kubeconfig, e2e_client, namespace, "device-1", lost)
    # A device with a name of the namespace's own: approved automatically.
    other = enrol(kubeconfig, namespace, "device-2", f"device-2.{namespace}.svc", tmp_path)
    signed(kubeconfig, e2e_client, namespace, "device-2", other)

    wait_for(
        lambda: call(port_forward, server, lost).endswith("200 OK"),
        timeout=60,
        what="device-1 served",
    )
    assert call(port_forward, server, other).endswith("200 OK")

    revoked = plugin(
        kubeconfig,
        "revoke",
        "certificaterequest/device-1",
        "-n",
        namespace,
        "--reason",
        "keyCompromise",
        "--wait",
    )
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    assert f"serial {lost_serial:x}" in revoked.stdout
    started = time.monotonic()
    carried_on = []

    def refused() -> bool:
        carried_on.append(call(port_forward, server, other))
        return call(port_forward, server, lost).endswith("400 Bad Request")

    wait_for(refused, timeout=REFUSAL_TIMEOUT, what="nginx refusing the revoked device", interval=2)
    elapsed = time.monotonic() - started
    print(f"revoked device refused {elapsed:.0f} s after kubectl certsmith revoke returned")
    assert all(line.endswith("200 OK") for line in carried_on), carried_on
    assert call(port_forward, server, other).endswith("200 OK")
    logs = kubectl(kubeconfig, "-n", namespace, "logs", "deployment/crl-server").stdout
    assert "reloading nginx" in logs
