"""`kubectl certsmith revoke`: its arguments and the annotations it writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certsmith.api import names
from certsmith.cli import main, revoke
from certsmith.cli.api import CliError
from certsmith.pki import crl

NOW = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ("web", "Certificate", "web"),
        ("certificate/web", "Certificate", "web"),
        ("certificates.certsmith.dev/web", "Certificate", "web"),
        ("certificaterequest/cam-1", "CertificateRequest", "cam-1"),
        ("CertificateRequests/cam-1", "CertificateRequest", "cam-1"),
        ("certificaterequests.certsmith.dev/cam-1", "CertificateRequest", "cam-1"),
    ],
)
def test_targets(text, kind, name) -> None:
    assert revoke.parse_target(text) == revoke.Target(kind, name)


@pytest.mark.parametrize("text", ["secret/web", "certificate/", "csr/x"])
def test_bad_targets(text) -> None:
    with pytest.raises(CliError, match="revoke a certificate/NAME"):
        revoke.parse_target(text)


@pytest.mark.parametrize(
    ("kind", "reissue", "expected_reissue"),
    [
        ("Certificate", True, None),
        ("Certificate", False, "false"),
        ("CertificateRequest", False, "absent"),
    ],
)
def test_request_annotations(kind, reissue, expected_reissue) -> None:
    annotations = revoke.request_annotations(
        now=NOW, reason="keyCompromise", reissue=reissue, kind=kind, serial="0abc"
    )
    assert annotations[names.REVOKE_REQUEST_ANNOTATION] == "2026-06-01T12:00:00.123456Z"
    assert annotations[names.REVOKE_SERIAL_ANNOTATION] == "0abc"
    assert annotations[names.REVOKE_REASON_ANNOTATION] == "keyCompromise"
    if expected_reissue == "absent":
        assert names.REVOKE_REISSUE_ANNOTATION not in annotations
    else:
        assert annotations[names.REVOKE_REISSUE_ANNOTATION] == expected_reissue


def test_pending_until_the_operator_removes_the_annotation() -> None:
    at = "2026-06-01T12:00:00.123456Z"
    assert revoke.pending({"metadata": {"annotations": {names.REVOKE_REQUEST_ANNOTATION: at}}}, at)
    assert not revoke.pending({"metadata": {"annotations": {}}}, at)
    # A newer request by someone else is theirs to wait for.
    newer = {"metadata": {"annotations": {names.REVOKE_REQUEST_ANNOTATION: "later"}}}
    assert not revoke.pending(newer, at)


def test_reasons() -> None:
    assert revoke.check_reason("cessationOfOperation") == "cessationOfOperation"
    with pytest.raises(CliError, match=r"^--reason: 'certificateHold' is not a revocation reason"):
        revoke.check_reason("certificateHold")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["revoke", "web"], ("web", None, "unspecified", True, "cluster-root")),
        (
            ["revoke", "certificaterequest/cam", "--reason", "keyCompromise", "--no-reissue"],
            ("certificaterequest/cam", None, "keyCompromise", False, "cluster-root"),
        ),
        (
            ["revoke", "--serial", "0a:1b", "--authority", "partners"],
            (None, "0a:1b", "unspecified", True, "partners"),
        ),
    ],
)
def test_the_parser(argv, expected) -> None:
    args = main.build_parser().parse_args(argv)
    assert (args.target, args.serial, args.reason, args.reissue, args.authority) == expected


@pytest.mark.parametrize(
    ("serial", "problem"),
    [
        ("00:00:00", "is 0: a serial number is positive"),
        ("80" + "00" * 19, "longer than 20 octets"),
    ],
)
def test_a_bad_serial_is_bad_usage(capsys, serial, problem) -> None:
    with pytest.raises(SystemExit) as exit_:
        main.build_parser().parse_args(["revoke", "--serial", serial])
    assert exit_.value.code == 2
    assert problem in capsys.readouterr().err


def event(reason: str, at: str, kind: str = "Certificate", message: str = "m") -> dict[str, object]:
    return {
        "reason": reason,
        "lastTimestamp": at,
        "message": message,
        "involvedObject": {"kind": kind, "name": "web"},
    }


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], None),
        ([event("Revoked", "2026-06-01T11:59:59Z")], None),
        ([event("Revoked", "2026-06-01T12:00:00Z", message="ok")], (True, "ok")),
        ([event("Revoked", "2026-06-01T12:00:01Z", kind="CertificateRequest")], None),
        ([event("Renewed", "2026-06-01T12:00:01Z")], None),
        (
            [
                event("Revoked", "2026-06-01T12:00:01Z", message="old"),
                event("InvalidRevocation", "2026-06-01T12:00:02Z", message="refused"),
            ],
            (False, "refused"),
        ),
        ([event("RevocationRecordFull", "2026-06-01T12:00:02Z", message="full")], (False, "full")),
    ],
)
def test_the_outcome_is_the_newest_event_since_the_request(events, expected) -> None:
    found = revoke.outcome(events, kind="Certificate", requested_at="2026-06-01T12:00:00.123456Z")
    assert found == expected


def test_a_bad_reason_is_bad_usage(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main.build_parser().parse_args(["revoke", "web", "--reason", "hold"])
    assert exit_.value.code == 2
    assert "is not a revocation reason" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("private_key", "kept"),
    [(None, False), ({"rotationPolicy": "Always"}, False), ({"rotationPolicy": "Never"}, True)],
)
def test_a_certificate_that_keeps_its_key_is_named(private_key, kept) -> None:
    spec = {} if private_key is None else {"privateKey": private_key}
    assert revoke.keeps_its_key({"spec": spec}) is kept


def _held(namespace: str, name: str, serial: str | None, issuer: str | None) -> dict[str, Any]:
    spec = {} if issuer is None else {"issuerRef": {"name": issuer}}
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
        "status": {} if serial is None else {"serialNumber": serial},
    }


@pytest.mark.parametrize(
    ("items", "serial", "found"),
    [
        ([], 0x1234, None),
        ([_held("shop", "a", None, "t2")], 0x1234, None),
        ([_held("shop", "a", "zz", "t2")], 0x1234, None),
        ([_held("shop", "a", "1235", "t2")], 0x1234, None),
        ([_held("shop", "a", "12:34", "t2")], 0x1234, ("Certificate shop/a", "t2")),
        ([_held("shop", "b", "001234", None)], 0x1234, ("Certificate shop/b", "cluster-root")),
    ],
)
def test_the_object_holding_a_serial_and_its_authority(items, serial, found) -> None:
    assert revoke.holder(items, "Certificate", serial) == found


def test_the_trust_bundles_whose_crls_do_not_list_a_serial_yet(intermediate) -> None:
    def bundle(name: str, serials: list[int], pem: str | None = None) -> dict[str, Any]:
        listing = crl.build_crl(
            issuer=intermediate,
            entries=[crl.Revoked(s, NOW, "keyCompromise") for s in serials],
            number=1,
            this_update=NOW,
            next_update=NOW + timedelta(days=1),
        )
        return {
            "metadata": {"name": name},
            "data": {"ca.crl": crl.to_pem(listing) if pem is None else pem},
        }

    configmaps = [
        bundle("listing", [5, 6]),
        bundle("stale", [6]),
        bundle("damaged", [], pem="-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"),
        {"metadata": {"name": "no-crl"}, "data": {"ca.crt": ""}},
    ]
    assert revoke.not_listing(configmaps, 5) == ["stale", "damaged", "no-crl"]
    assert revoke.not_listing(configmaps[:1], 5) == []
