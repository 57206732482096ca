"""The webhook answers only the apiserver: callers must present its client certificate.

hack/cluster gives the apiserver a client certificate for webhooks (AdmissionConfiguration)
and the operator the CA that signed it; the admission tests elsewhere prove the apiserver
still gets through, these prove nobody else does.
"""

from __future__ import annotations

import http.client
import json
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from certsmith.pki import ca
from tests import builders
from tests.integration.conftest import webhook_client_pki

pytestmark = pytest.mark.integration


def _post(port: int, path: str, body: dict, context: ssl.SSLContext) -> tuple[int, dict]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request(
            "POST", path, json.dumps(body), headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.startswith(b"{") else {}
    finally:
        connection.close()


def _context(client_cert: Path | None = None, client_key: Path | None = None) -> ssl.SSLContext:
    # The server's identity is not what is under test here; the caller's is.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key)
    return context


def _review(namespace: str) -> dict:
    certificate = builders.certificate(
        "direct", namespace=namespace, dnsNames=["direct.example.com"]
    )
    return builders.admission_review(certificate, username="test")


@pytest.fixture
def apiserver_identity(kubeconfig: str) -> tuple[Path, Path]:
    directory = webhook_client_pki(kubeconfig)
    if directory is None:
        pytest.skip("this cluster gives the apiserver no webhook client certificate")
    return directory / "client.crt", directory / "client.key"


def test_only_the_apiserver_certificate_gets_an_answer(
    running_operator, namespace, apiserver_identity, tmp_path
):
    port = running_operator.webhook_port
    cert, key = apiserver_identity
    status, answer = _post(port, "/validate-certificate", _review(namespace), _context(cert, key))
    assert status == 200 and answer["response"]["allowed"] is True

    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _post(port, "/validate-certificate", _review(namespace), _context())

    stranger = ca.build_root(
        common_name="kube-apiserver-webhook-client",
        now=datetime.now(UTC) - timedelta(minutes=1),
        lifetime=timedelta(days=1),
    )
    stranger_cert, stranger_key = tmp_path / "stranger.crt", tmp_path / "stranger.key"
    stranger_cert.write_bytes(stranger.certificate.public_bytes(Encoding.PEM))
    stranger_key.write_bytes(
        stranger.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _post(
            port,
            "/validate-certificate",
            _review(namespace),
            _context(stranger_cert, stranger_key),
        )
