"""Leaves issued through the operator, judged by the TLS clients of other stacks.

An RSA leaf is served by `openssl s_server` restricted to TLS 1.2 and a static RSA key
exchange (TLS_RSA_WITH_AES_128_GCM_SHA256), where the client encrypts the premaster
secret to the leaf's key: GnuTLS and Java's JSSE then require keyEncipherment
(RFC 5280 4.2.1.3, RFC 5246 7.4.2) and abort without it ("Key usage violation",
"KeyUsage does not allow key encipherment"). ECDSA and Ed25519 leaves must never carry it
(RFC 8813 section 3, RFC 8410 section 5).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration import certs
from tests.support import REPO_ROOT, free_port, wait_for

pytestmark = pytest.mark.integration

SERVER_NAME = "tls.example.com"  # the test namespaces are granted *.example.com
OPENSSL_CIPHER = "AES128-GCM-SHA256"  # TLS_RSA_WITH_AES_128_GCM_SHA256
# GnuTLS: TLS 1.2 only, and RSA key transport as the only key exchange.
GNUTLS_PRIORITY = "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA"
JAVA_CLIENT = REPO_ROOT / "tests" / "integration" / "clients" / "StaticRsaClient.java"


@dataclass(frozen=True)
class Served:
    port: int
    ca: Path


def issue(api_client, namespace: str, name: str, private_key: dict[str, str], tmp_path: Path):
    """Create a Certificate, wait until Ready, write its Secret's files under tmp_path."""
    certs.create(
        api_client,
        namespace,
        certs.certificate(name, dnsNames=[SERVER_NAME], privateKey=private_key),
    )
    wait_for(lambda: certs.is_ready(api_client, namespace, name), timeout=30, what=f"{name} Ready")
    sec = certs.secret(api_client, namespace, f"{name}-tls")
    pems = certs.secret_bytes(sec, "tls.crt").decode().split("-----END CERTIFICATE-----\n")
    leaf, chain = pems[0] + "-----END CERTIFICATE-----\n", pems[1] + "-----END CERTIFICATE-----\n"
    files = {"leaf.pem": leaf.encode(), "chain.pem": chain.encode()}
    files |= {"tls.key": certs.secret_bytes(sec, "tls.key")}
    files |= {"ca.crt": certs.secret_bytes(sec, "ca.crt")}
    for file_name, content in files.items():
        (tmp_path / file_name).write_bytes(content)
    return tmp_path


def openssl_text(path: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def rsa_server(api_client, namespace, running_operator, tmp_path) -> Iterator[Served]:
    """An RSA leaf from the operator, served over TLS 1.2 with static RSA key exchange only."""
    files = issue(api_client, namespace, "rsa", {"algorithm": "RSA"}, tmp_path)
    port = free_port()
    log = (tmp_path / "s_server.log").open("wb")
    server = subprocess.Popen(
        [
            *("openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}"),
            *("-cert", str(files / "leaf.pem"), "-cert_chain", str(files / "chain.pem")),
            *("-key", str(files / "tls.key"), "-tls1_2", "-cipher", OPENSSL_CIPHER),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, timeout=10, what="openssl s_server listening")
        yield Served(port=port, ca=files / "ca.crt")
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def test_rsa_leaf_carries_key_encipherment(rsa_server: Served) -> None:
    text = openssl_text(rsa_server.ca.parent / "leaf.pem")
    assert "Public Key Algorithm: rsaEncryption" in text
    assert "X509v3 Key Usage: critical\n                Digital Signature, Key Encipherment\n" in (
        text
    )


def test_gnutls_completes_a_static_rsa_key_exchange(rsa_server: Served) -> None:
    result = subprocess.run(
        [
            *("gnutls-cli", "--x509cafile", str(rsa_server.ca), "--priority", GNUTLS_PRIORITY),
            *("--verify-hostname", SERVER_NAME, "--sni-hostname", SERVER_NAME),
            *("-p", str(rsa_server.port), "127.0.0.1"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output  # before: "Key usage violation in certificate"
    assert "(TLS1.2-X.509)-(RSA)-(AES-128-GCM)" in output
    assert "The certificate is trusted." in output


def test_openssl_completes_a_static_rsa_key_exchange(rsa_server: Served) -> None:
    result = subprocess.run(
        [
            *("openssl", "s_client", "-connect", f"127.0.0.1:{rsa_server.port}"),
            *("-tls1_2", "-cipher", OPENSSL_CIPHER, "-CAfile", str(rsa_server.ca)),
            *("-servername", SERVER_NAME, "-verify_hostname", SERVER_NAME),
            "-verify_return_error",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Cipher is {OPENSSL_CIPHER}" in result.stdout
    assert "Verify return code: 0 (ok)" in result.stdout


@pytest.mark.skipif(shutil.which("java") is None, reason="no JDK on this machine (java)")
def test_java_jsse_completes_a_static_rsa_key_exchange(rsa_server: Served) -> None:
    result = subprocess.run(
        [
            *("java", str(JAVA_CLIENT), "127.0.0.1", str(rsa_server.port)),
            *(str(rsa_server.ca), SERVER_NAME),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Before: "KeyUsage does not allow key encipherment".
    assert result.returncode == 0, result.stdout + result.stderr
    assert "handshake completed: TLSv1.2 TLS_RSA_WITH_AES_128_GCM_SHA256" in result.stdout


@pytest.mark.parametrize("algorithm", ["ECDSA", "Ed25519"])
def test_non_rsa_leaves_never_carry_key_encipherment(
    api_client, namespace, running_operator, tmp_path, algorithm
) -> None:
    files = issue(api_client, namespace, algorithm.lower(), {"algorithm": algorithm}, tmp_path)
    text = openssl_text(files / "leaf.pem")
    assert "X509v3 Key Usage: critical\n                Digital Signature\n" in text
    assert "Key Encipherment" not in text and "Data Encipherment" not in text


@pytest.mark.parametrize(
    ("algorithm", "usage", "message"),
    [
        ("ECDSA", "key encipherment", "key encipherment and data encipherment need an RSA key"),
        ("Ed25519", "data encipherment", "key encipherment and data encipherment need an RSA key"),
        ("RSA", "key agreement", "key agreement needs an ECDSA key"),
    ],
)
def test_usages_the_key_cannot_honour_are_refused_at_apply(
    kubeconfig, namespace, operator, algorithm, usage, message
) -> None:
    body = certs.certificate(
        "refused",
        dnsNames=[SERVER_NAME],
        privateKey={"algorithm": algorithm},
        usages=["digital signature", usage, "server auth"],
    )
    result = certs.kubectl_apply(kubeconfig, namespace, body)
    assert result.returncode != 0
    assert "spec.usages" in result.stderr and message in result.stderr, result.stderr
