"""CRLs and the revocation record: entries, reasons, CRL numbers, expiry, nextUpdate,
checked with cryptography and with `openssl crl -verify` / `openssl verify -crl_check_all`."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from certsmith.api import model, names
from certsmith.api.model import parse_certificate_spec
from certsmith.authorities import revocation, trust_bundle
from certsmith.pki import ca, crl, inspect, issue, keys
from certsmith.pki.keys import PrivateKeySpec
from tests import builders

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)


def leaf(intermediate: ca.CAKeyPair, *, crl_url: str | None = None) -> x509.Certificate:
    spec = parse_certificate_spec(builders.spec(dnsNames=["web.shop.svc"]))
    key = keys.generate_private_key(PrivateKeySpec(algorithm="ECDSA", size=256))
    return issue.build_leaf(
        spec=spec, public_key=key.public_key(), issuer=intermediate, now=NOW, crl_url=crl_url
    )


def request(
    serial: int | None,
    *,
    at: str = "2026-06-01T11:00:00.000001Z",
    name: str = "web",
    not_after: datetime = LATER,
) -> revocation.Request:
    return revocation.Request(
        kind="Certificate",
        namespace="shop",
        name=name,
        requested_at=at,
        reason="keyCompromise",
        reissue=True,
        serial=serial,
        not_after=not_after,
    )


def crls(record: revocation.Record) -> list[x509.CertificateRevocationList]:
    pem = record.crl_pem.encode()
    marker = b"-----BEGIN X509 CRL-----"
    return [x509.load_pem_x509_crl(marker + part) for part in pem.split(marker)[1:]]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("keyCompromise", x509.ReasonFlags.key_compromise),
        ("cACompromise", x509.ReasonFlags.ca_compromise),
        ("affiliationChanged", x509.ReasonFlags.affiliation_changed),
        ("superseded", x509.ReasonFlags.superseded),
        ("cessationOfOperation", x509.ReasonFlags.cessation_of_operation),
        ("privilegeWithdrawn", x509.ReasonFlags.privilege_withdrawn),
        ("unspecified", None),
    ],
)
def test_each_reason_is_written_as_its_crl_reason_code(root, intermediate, name, code) -> None:
    built = crl.build_crl(
        issuer=intermediate,
        entries=[crl.Revoked(0x1F, NOW, name)],
        number=7,
        this_update=NOW,
        next_update=NOW + timedelta(hours=24),
    )
    entry = built.get_revoked_certificate_by_serial_number(0x1F)
    assert entry is not None
    assert entry.revocation_date_utc == NOW
    reasons = [e.value.reason for e in entry.extensions if isinstance(e.value, x509.CRLReason)]
    assert reasons == ([] if code is None else [code])
    assert built.is_signature_valid(intermediate.key.public_key())
    assert built.issuer == intermediate.certificate.subject
    assert built.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    assert built.next_update_utc == NOW + timedelta(hours=24)


@pytest.mark.parametrize("reason", ["certificateHold", "removeFromCRL", "KeyCompromise", ""])
def test_reasons_certsmith_refuses(reason) -> None:
    with pytest.raises(revocation.InvalidRequest, match=f"^{names.REVOKE_REASON_ANNOTATION}: "):
        revocation.parse_reason(reason or "x y", names.REVOKE_REASON_ANNOTATION)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1f", 0x1F), ("0A:1B", 0x0A1B), ("ff" * 20, int("ff" * 20, 16))],
)
def test_serials_in_hex(text, value) -> None:
    assert crl.parse_serial(text) == value


@pytest.mark.parametrize("text", ["", "xyz", "f" * 41, "12 34", "-1"])
def test_bad_serials(text) -> None:
    with pytest.raises(ValueError, match="is not a serial number in hex"):
        crl.parse_serial(text)


def test_a_published_record_lists_the_revoked_serial_and_an_empty_root_crl(
    root, intermediate
) -> None:
    record = revocation.with_requests(
        revocation.Record(), [request(0xABC)], {}, now=NOW, serial_not_after=LATER
    )
    published = revocation.publish(record, intermediate=intermediate, root=root, now=NOW)
    first, second = crls(published)
    assert [r.serial_number for r in first] == [0xABC]
    assert first.is_signature_valid(intermediate.key.public_key())
    assert len(second) == 0
    assert second.is_signature_valid(root.key.public_key())
    assert second.issuer == root.certificate.subject
    assert published.number == 1
    assert published.this_update == NOW
    assert first.next_update_utc == NOW + revocation.CRL_VALIDITY
    entry = published.entries[0]
    assert (entry.source, entry.reason, entry.not_after) == (
        "Certificate shop/web",
        "keyCompromise",
        LATER,
    )
    assert entry.revoked_at == datetime(2026, 6, 1, 11, 0, 0, tzinfo=UTC)


def test_nothing_changes_before_the_crl_is_due_then_the_number_grows(root, intermediate) -> None:
    first = revocation.publish(revocation.Record(), intermediate=intermediate, root=root, now=NOW)
    due = NOW + revocation.REPUBLISH_AFTER
    assert revocation.republish_at(first) == due
    same = revocation.publish(
        first, intermediate=intermediate, root=root, now=due - timedelta(seconds=1)
    )
    assert same is first
    again = revocation.publish(first, intermediate=intermediate, root=root, now=due)
    assert (again.number, again.this_update) == (2, due)
    numbers = [
        c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for c in crls(again)
    ]
    assert numbers == [2, 2]


def test_a_new_entry_publishes_at_once_with_the_next_number(root, intermediate) -> None:
    first = revocation.publish(revocation.Record(), intermediate=intermediate, root=root, now=NOW)
    added = revocation.with_requests(
        first, [request(5)], {}, now=NOW + timedelta(minutes=1), serial_not_after=LATER
    )
    second = revocation.publish(
        added, intermediate=intermediate, root=root, now=NOW + timedelta(minutes=1)
    )
    assert second.number == 2
    assert [r.serial_number for r in crls(second)[0]] == [5]


def test_expired_entries_are_dropped(root, intermediate) -> None:
    record = revocation.with_requests(
        revocation.Record(),
        [request(1, not_after=NOW + timedelta(hours=1)), request(2, name="api", not_after=LATER)],
        {},
        now=NOW,
        serial_not_after=LATER,
    )
    published = revocation.publish(record, intermediate=intermediate, root=root, now=NOW)
    assert [r.serial_number for r in crls(published)[0]] == [1, 2]
    assert revocation.next_change(published) == NOW + timedelta(hours=1)
    after = revocation.publish(
        published, intermediate=intermediate, root=root, now=NOW + timedelta(hours=1)
    )
    assert [r.serial_number for r in crls(after)[0]] == [2]
    assert after.number == 2


def test_another_intermediate_signs_a_new_crl(root, intermediate) -> None:
    first = revocation.publish(revocation.Record(), intermediate=intermediate, root=root, now=NOW)
    renewed = ca.build_intermediate(
        issuer=root, common_name="intermediate", now=NOW, lifetime=timedelta(days=365)
    )
    second = revocation.publish(first, intermediate=renewed, root=root, now=NOW)
    assert second.number == 2
    assert crls(second)[0].is_signature_valid(renewed.key.public_key())


def test_a_request_is_applied_once_and_a_serial_revoked_once() -> None:
    once = revocation.with_requests(
        revocation.Record(), [request(9)], {9: "superseded"}, now=NOW, serial_not_after=LATER
    )
    assert [(e.serial, e.reason, e.source) for e in once.entries] == [
        (9, "keyCompromise", "Certificate shop/web")
    ]
    twice = revocation.with_requests(once, [request(9)], {}, now=NOW, serial_not_after=LATER)
    assert twice.entries == once.entries
    assert revocation.applied(once, request(9))
    # Re-issued, then revoked again: a new request on the same object, a new serial.
    later = request(10, at="2026-06-02T00:00:00.000001Z")
    assert not revocation.applied(once, later)
    again = revocation.with_requests(once, [later], {}, now=NOW, serial_not_after=LATER)
    assert [e.serial for e in again.entries] == [9, 10]


def test_a_request_without_a_serial_revokes_nothing() -> None:
    record = revocation.with_requests(
        revocation.Record(), [request(None)], {}, now=NOW, serial_not_after=LATER
    )
    assert record.entries == ()


def test_a_bare_serial_stays_until_the_intermediate_expires() -> None:
    record = revocation.with_requests(
        revocation.Record(), [], {0x77: "cessationOfOperation"}, now=NOW, serial_not_after=LATER
    )
    assert [(e.serial, e.reason, e.not_after, e.source, e.revoked_at) for e in record.entries] == [
        (0x77, "cessationOfOperation", LATER, "serial", NOW)
    ]


def test_the_record_round_trips_through_its_configmap(root, intermediate) -> None:
    record = revocation.publish(
        revocation.with_requests(
            revocation.Record(),
            [request(0xABC)],
            {3: "superseded"},
            now=NOW,
            serial_not_after=LATER,
        ),
        intermediate=intermediate,
        root=root,
        now=NOW,
    )
    assert revocation.load(revocation.dump(record)) == record
    assert revocation.load(None) == revocation.Record()


@pytest.mark.parametrize(
    "data", [{revocation.RECORD_KEY: "{"}, {revocation.RECORD_KEY: '{"entries": [{}]}'}]
)
def test_a_damaged_record_is_an_error(data) -> None:
    with pytest.raises(ValueError, match="is not a revocation record"):
        revocation.load(data)


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, None),
        (
            {names.REVOKE_REQUEST_ANNOTATION: "t1"},
            ("t1", "unspecified", True, 0xAB),
        ),
        (
            {
                names.REVOKE_REQUEST_ANNOTATION: "t2",
                names.REVOKE_REASON_ANNOTATION: "superseded",
                names.REVOKE_REISSUE_ANNOTATION: "false",
            },
            ("t2", "superseded", False, 0xAB),
        ),
    ],
)
def test_a_request_on_a_certificate(annotations, expected) -> None:
    body = {
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "status": {"serialNumber": "ab", "notAfter": "2026-07-01T12:00:00Z"},
    }
    found = revocation.request_of("Certificate", body)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert (found.requested_at, found.reason, found.reissue, found.serial) == expected
    assert found.not_after == LATER
    assert found.source == "Certificate shop/web"


def test_a_certificate_request_is_never_reissued() -> None:
    body = {
        "metadata": {
            "name": "cam",
            "namespace": "d",
            "annotations": {names.REVOKE_REQUEST_ANNOTATION: "t"},
        },
        "status": {},
    }
    found = revocation.request_of("CertificateRequest", body)
    assert found is not None
    assert (found.reissue, found.serial, found.not_after) == (False, None, None)


def test_serial_annotations_on_an_authority() -> None:
    found, problems = revocation.serial_requests(
        {
            "revoke.certsmith.dev/0a1b": "keyCompromise",
            "revoke.certsmith.dev/zz": "keyCompromise",
            "revoke.certsmith.dev/ff": "certificateHold",
            "other": "x",
        }
    )
    assert found == {0x0A1B: "keyCompromise"}
    assert len(problems) == 2
    assert all(p.startswith("revoke.certsmith.dev/") for p in problems)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, None),
        ({"crl": {}}, None),
        ({"crl": {"distributionPointURL": "http://crl.example/x.crl"}}, "http://crl.example/x.crl"),
        ({"crl": {"distributionPointURL": "https://crl.example/"}}, "https://crl.example/"),
    ],
)
def test_crl_url(spec, expected) -> None:
    assert revocation.crl_url(spec) == expected


@pytest.mark.parametrize("url", ["ftp://x/y", "crl.example/x", "http://", "http://a b/", 3])
def test_bad_crl_url(url) -> None:
    with pytest.raises(model.InvalidSpec, match=r"^spec\.crl\.distributionPointURL: "):
        revocation.crl_url({"crl": {"distributionPointURL": url}})


def test_a_leaf_names_its_distribution_point_only_when_asked(intermediate) -> None:
    url = "http://certsmith-crl.certsmith.svc/crl/cluster-root.crl"
    named = leaf(intermediate, crl_url=url).extensions.get_extension_for_class(
        x509.CRLDistributionPoints
    )
    assert not named.critical
    assert [[n.value for n in p.full_name or []] for p in named.value] == [[url]]
    with pytest.raises(x509.ExtensionNotFound):
        leaf(intermediate).extensions.get_extension_for_class(x509.CRLDistributionPoints)


def test_the_bundle_configmap_carries_the_crl() -> None:
    body = trust_bundle.bundle_configmap(
        name="certsmith-ca", namespace="shop", authority="cluster-root", pem=b"ROOTS", crl="CRLS"
    )
    assert body["data"] == {"ca.crt": "ROOTS", "ca.crl": "CRLS"}
    assert trust_bundle.is_current(body, b"ROOTS", "cluster-root", "CRLS")
    assert not trust_bundle.is_current(body, b"ROOTS", "cluster-root", "NEWER")
    edited = {**body, "data": {"ca.crt": "ROOTS"}}
    assert not trust_bundle.is_current(edited, b"ROOTS", "cluster-root", "CRLS")


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_openssl_verifies_the_crls_and_refuses_the_revoked_leaf(
    root, intermediate, tmp_path
) -> None:
    revoked, other = leaf(intermediate), leaf(intermediate)
    record = revocation.with_requests(
        revocation.Record(),
        [request(revoked.serial_number, not_after=revoked.not_valid_after_utc)],
        {},
        now=NOW,
        serial_not_after=LATER,
    )
    published = revocation.publish(record, intermediate=intermediate, root=root, now=NOW)
    crl_file = write(tmp_path / "ca.crl", published.crl_pem.encode())
    root_file = write(tmp_path / "root.pem", inspect.certificates_to_pem([root.certificate]))
    chain = write(tmp_path / "chain.pem", inspect.certificates_to_pem([intermediate.certificate]))
    at = ["-attime", str(int((NOW + timedelta(minutes=5)).timestamp()))]
    # openssl crl -verify checks the first CRL of the file against -CAfile.
    both = write(
        tmp_path / "cas.pem",
        inspect.certificates_to_pem([intermediate.certificate, root.certificate]),
    )
    checked = subprocess.run(
        ["openssl", "crl", "-in", crl_file, "-noout", "-verify", "-CAfile", both],
        capture_output=True,
        text=True,
    )
    assert "verify OK" in checked.stdout + checked.stderr

    def verify(certificate: x509.Certificate) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "openssl",
                "verify",
                *at,
                "-crl_check_all",
                "-CRLfile",
                crl_file,
                "-CAfile",
                root_file,
                "-untrusted",
                chain,
                write(tmp_path / "leaf.pem", inspect.certificates_to_pem([certificate])),
            ],
            capture_output=True,
            text=True,
        )

    assert verify(other).returncode == 0, verify(other).stderr
    refused = verify(revoked)
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr


def test_a_record_with_a_damaged_crl_is_an_error(root, intermediate) -> None:
    data = revocation.dump(
        revocation.publish(revocation.Record(), intermediate=intermediate, root=root, now=NOW)
    )
    data[revocation.CRL_KEY] = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"
    with pytest.raises(ValueError, match="is not a revocation record"):
        revocation.load(data)
