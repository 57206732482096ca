"""A webhook serving pair that cannot be loaded leaves the server serving the one it had."""

from __future__ import annotations

import contextlib
import ssl
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from certsmith.admission import serving
from certsmith.admission.handlers import load_serving_pair


def write_pair(directory: Path, name: str) -> tuple[str, str]:
    chain, key = serving.placeholder_certificate(
        dns_names=[f"{name}.example"], now=datetime.now(UTC)
    )
    (directory / f"{name}.crt").write_bytes(chain)
    (directory / f"{name}.key").write_bytes(key)
    return str(directory / f"{name}.crt"), str(directory / f"{name}.key")


def served_name(context: ssl.SSLContext) -> str:
    """The DNS name of the certificate `context` presents in a handshake (memory BIOs)."""
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    back_in, back_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_side = context.wrap_bio(incoming, back_out, server_side=True)
    client_side = client.wrap_bio(back_in, outgoing)
    for _ in range(10):
        for side in (client_side, server_side):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        incoming.write(outgoing.read())
        back_in.write(back_out.read())
    der = client_side.getpeercert(binary_form=True)
    assert der is not None, "no handshake completed"
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    return str(names.value.get_values_for_type(x509.DNSName)[0])


def test_a_mismatched_pair_is_refused_and_the_old_one_still_served(tmp_path: Path) -> None:
    context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
    old_cert, old_key = write_pair(tmp_path, "old")
    assert load_serving_pair(context, old_cert, old_key) is None
    new_cert, _ = write_pair(tmp_path, "new")
    error = load_serving_pair(context, new_cert, old_key)  # a half-written pair
    assert isinstance(error, ssl.SSLError)
    assert served_name(context) == "old.example"


def test_a_good_pair_is_served(tmp_path: Path) -> None:
    context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
    assert load_serving_pair(context, *write_pair(tmp_path, "old")) is None
    assert load_serving_pair(context, *write_pair(tmp_path, "new")) is None
    assert served_name(context) == "new.example"
