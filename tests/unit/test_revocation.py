"""CRLs and the revocation record: entries, reasons, CRL numbers, expiry, nextUpdate,
checked with cryptography and with `openssl crl -verify` / `openssl verify -crl_check_all`."""

from __future__ import annotations

import dataclasses
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from certsmith.api import model, names
from certsmith.api.model import parse_certificate_spec
from certsmith.authorities import revocation, trust_bundle
from certsmith.certificates import status
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
    *,
    at: str = "2026-06-01T11:00:00.000001Z",
    name: str = "web",
    pinned: int | None = None,
    reason: str = "keyCompromise",
) -> revocation.Request:
    return revocation.Request(
        kind="Certificate",
        namespace="shop",
        name=name,
        requested_at=at,
        reason=reason,
        reissue=True,
        pinned=pinned,
    )


def target(serial: int, *, not_after: datetime = LATER, issuer: str = "") -> revocation.Target:
    return revocation.Target(serial, not_after, issuer)


def revoke(
    record: revocation.Record,
    targets: list[tuple[revocation.Request, revocation.Target]],
    serials: dict[int, str] | None = None,
    **kwargs: object,
) -> revocation.Record:
    updated, _ = revocation.with_requests(
        record, targets, serials or {}, now=NOW, serial_not_after=LATER, **kwargs
    )
    return updated


def signers(intermediate: ca.CAKeyPair, root: ca.CAKeyPair) -> revocation.Signers:
    return revocation.Signers((intermediate,), (root,))


def crls(record: revocation.Record) -> list[x509.CertificateRevocationList]:
    return crl.split_pem(record.crl_pem)


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
    [
        ("1f", 0x1F),
        ("0A:1B", 0x0A1B),
        ("7f" + "ff" * 19, 2**159 - 1),
        ("00:7f" + ":ff" * 19, 2**159 - 1),
        ("0001", 1),
    ],
)
def test_serials_in_hex(text, value) -> None:
    assert crl.parse_serial(text) == value


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is not a serial number in hex"),
        ("xyz", "is not a serial number in hex"),
        ("12 34", "is not a serial number in hex"),
        ("-1", "is not a serial number in hex"),
        ("0", "is 0: a serial number is positive"),
        ("00:00:00", "is 0: a serial number is positive"),
        ("80" + "00" * 19, "longer than 20 octets"),
        ("00" + "ff" * 20, "longer than 20 octets"),
    ],
)
def test_bad_serials(text, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        crl.parse_serial(text)


def test_a_published_record_lists_the_revoked_serial_and_an_empty_root_crl(
    root, intermediate
) -> None:
    own = crl.key_id(intermediate.certificate)
    record = revoke(revocation.Record(), [(request(), target(0xABC, issuer=own))])
    published = revocation.publish(record, signers=signers(intermediate, root), now=NOW)
    first, second = crls(published)
    assert [r.serial_number for r in first] == [0xABC]
    assert first.is_signature_valid(intermediate.key.public_key())
    assert len(second) == 0
    assert second.is_signature_valid(root.key.public_key())
    assert second.issuer == root.certificate.subject
    assert published.number == 1
    # thisUpdate is backdated by the clock skew allowed, as leaves' notBefore.
    assert published.this_update == NOW - timedelta(minutes=1)
    assert first.last_update_utc == NOW - timedelta(minutes=1)
    assert first.next_update_utc == NOW + revocation.CRL_VALIDITY
    assert published.signers == (own, crl.key_id(root.certificate))
    entry = published.entries[0]
    assert (entry.source, entry.reason, entry.not_after, entry.issuer) == (
        "Certificate shop/web",
        "keyCompromise",
        LATER,
        own,
    )
    assert entry.revoked_at == datetime(2026, 6, 1, 11, 0, 0, tzinfo=UTC)


def test_nothing_changes_before_the_crl_is_due_then_the_number_grows(root, intermediate) -> None:
    both = signers(intermediate, root)
    first = revocation.publish(revocation.Record(), signers=both, now=NOW)
    due = first.this_update + revocation.REPUBLISH_AFTER
    assert revocation.republish_at(first) == due
    same = revocation.publish(first, signers=both, now=due - timedelta(seconds=1))
    assert same is first
    again = revocation.publish(first, signers=both, now=due)
    assert (again.number, again.this_update) == (2, due - revocation.CLOCK_SKEW)
    numbers = [
        c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for c in crls(again)
    ]
    assert numbers == [2, 2]


def test_the_number_never_goes_below_the_floor(root, intermediate) -> None:
    published = revocation.publish(
        revocation.Record(), signers=signers(intermediate, root), now=NOW, floor=14
    )
    assert published.number == 15


def test_an_older_record_restored_is_signed_again_above_the_floor(root, intermediate) -> None:
    # A backup of CRL 6 restored after CRL 9 was published: its CRLs are not served again.
    both = signers(intermediate, root)
    backup = revocation.publish(revocation.Record(number=5), signers=both, now=NOW)
    assert backup.number == 6
    again = revocation.publish(backup, signers=both, now=NOW + timedelta(minutes=1), floor=9)
    assert again.number == 10
    assert [
        c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for c in crls(again)
    ] == [10, 10]


def test_a_restored_record_keeps_every_revocation_published_since(root, intermediate) -> None:
    own = crl.key_id(intermediate.certificate)
    backup = revoke(revocation.Record(), [(request(name="a"), target(1, issuer=own))])
    published = revoke(
        backup,
        [(request(name="b"), target(2, issuer=own))],
        {3: "superseded"},
    )
    merged, missing = revocation.with_published(backup, published)
    assert sorted(e.serial for e in missing) == [2, 3]
    assert sorted((e.serial, e.issuer, e.reason) for e in merged.entries) == [
        (1, own, "keyCompromise"),
        (2, own, "keyCompromise"),
        (3, "", "superseded"),
    ]
    assert merged.crl_pem == ""
    assert revocation.with_published(published, backup) == (published, ())


def test_a_new_entry_publishes_at_once_with_the_next_number(root, intermediate) -> None:
    both = signers(intermediate, root)
    first = revocation.publish(revocation.Record(), signers=both, now=NOW)
    added = revoke(first, [(request(), target(5))])
    second = revocation.publish(added, signers=both, now=NOW + timedelta(minutes=1))
    assert second.number == 2
    assert [r.serial_number for r in crls(second)[0]] == [5]


def test_expired_entries_are_dropped(root, intermediate) -> None:
    both = signers(intermediate, root)
    record = revoke(
        revocation.Record(),
        [
            (request(), target(1, not_after=NOW + timedelta(hours=1))),
            (request(name="api"), target(2)),
        ],
    )
    published = revocation.publish(record, signers=both, now=NOW)
    assert [r.serial_number for r in crls(published)[0]] == [1, 2]
    assert revocation.next_change(published) == NOW + timedelta(hours=1)
    after = revocation.publish(published, signers=both, now=NOW + timedelta(hours=1))
    assert [r.serial_number for r in crls(after)[0]] == [2]
    assert after.number == 2


def test_each_issuing_ca_has_its_own_crl_listing_its_own_leaves(root, intermediate) -> None:
    renewed = ca.build_intermediate(
        issuer=root, common_name="intermediate", now=NOW, lifetime=timedelta(days=365)
    )
    old, new = crl.key_id(intermediate.certificate), crl.key_id(renewed.certificate)
    record = revoke(
        revocation.Record(),
        [
            (request(name="a"), target(1, issuer=old)),
            (request(name="b"), target(2, issuer=new)),
        ],
        {3: "superseded"},
        intermediates=2,
    )
    published = revocation.publish(
        record, signers=revocation.Signers((renewed, intermediate), (root,)), now=NOW
    )
    first, second, third = crls(published)
    assert crl.authority_key_id(first) == new
    assert sorted(r.serial_number for r in first) == [2, 3]
    assert crl.authority_key_id(second) == old
    assert sorted(r.serial_number for r in second) == [1, 3]
    assert second.is_signature_valid(intermediate.key.public_key())
    assert len(third) == 0


def test_an_intermediate_made_after_a_bare_serial_does_not_list_it(root, intermediate) -> None:
    # A record at its capacity, then an intermediate renewal: the renewed intermediate's CRL
    # lists only what was revoked after it existed, so the record does not grow by the bare
    # serials again (it would pass the ConfigMap's 1 MiB and no CRL would be published).
    record = revoke(revocation.Record(), [], {serial: "superseded" for serial in range(1, 401)})
    before = revocation.publish(record, signers=signers(intermediate, root), now=NOW)
    renewed = ca.build_intermediate(
        issuer=root, common_name="intermediate", now=NOW + timedelta(hours=1), lifetime=LATER - NOW
    )
    both = revocation.Signers((renewed, intermediate), (root,))
    after = revocation.publish(before, signers=both, now=NOW + timedelta(hours=1))
    new, old, root_crl = crls(after)
    assert (len(new), len(old), len(root_crl)) == (0, 400, 0)
    added = revocation.record_bytes(after) - revocation.record_bytes(before)
    assert 0 < added < 2_000  # one empty CRL more, not 400 entries
    later, _ = revocation.with_requests(
        after, [], {0x999: "keyCompromise"}, now=NOW + timedelta(hours=2), serial_not_after=LATER
    )
    listed = crls(revocation.publish(later, signers=both, now=NOW + timedelta(hours=2)))
    assert [0x999 in {r.serial_number for r in c} for c in listed] == [True, True, False]


@pytest.mark.parametrize(
    ("issuer", "revoked_after_renewal", "in_renewed", "in_old"),
    [
        ("renewed", False, True, False),
        ("old", True, False, True),
        ("", False, False, True),
        ("", True, True, True),
    ],
)
def test_which_intermediate_lists_an_entry(
    root, intermediate, issuer, revoked_after_renewal, in_renewed, in_old
) -> None:
    renewed = ca.build_intermediate(
        issuer=root, common_name="intermediate", now=NOW, lifetime=timedelta(days=365)
    )
    key_ids = {
        "renewed": crl.key_id(renewed.certificate),
        "old": crl.key_id(intermediate.certificate),
    }
    at = NOW + timedelta(seconds=1) if revoked_after_renewal else NOW - timedelta(minutes=2)
    entry = revocation.Entry(5, at, "superseded", LATER, "serial", key_ids.get(issuer, ""))
    assert revocation.lists(renewed.certificate, entry) is in_renewed
    assert revocation.lists(intermediate.certificate, entry) is in_old


def test_a_bare_serial_rebuilt_from_two_crls_stays_bare(root, intermediate) -> None:
    renewed = ca.build_intermediate(
        issuer=root, common_name="intermediate", now=NOW, lifetime=timedelta(days=400)
    )
    both = revocation.Signers((renewed, intermediate), (root,))
    record = revocation.publish(
        revoke(revocation.Record(), [], {0x77: "keyCompromise"}, intermediates=2),
        signers=both,
        now=NOW + timedelta(minutes=1),
    )
    rebuilt = revocation.entries_from_crls(record.crl_pem, both, NOW)
    assert [(e.serial, e.issuer, e.not_after) for e in rebuilt] == [
        (0x77, "", renewed.certificate.not_valid_after_utc)
    ]


def test_entries_of_an_intermediate_whose_key_is_lost_are_named(root, intermediate) -> None:
    renewed = ca.build_intermediate(
        issuer=root, common_name="intermediate", now=NOW, lifetime=timedelta(days=365)
    )
    old, new = crl.key_id(intermediate.certificate), crl.key_id(renewed.certificate)
    record = revoke(
        revocation.Record(),
        [
            (request(name="a"), target(1, issuer=old)),
            (request(name="b"), target(2, issuer=new)),
            (request(name="c"), target(3, issuer="ab" * 20, not_after=NOW)),
        ],
        {4: "superseded"},
    )
    only_new = revocation.Signers((renewed,), (root,))
    assert revocation.unsigned(record, only_new, NOW) == (old,)
    both = revocation.Signers((renewed, intermediate), (root,))
    assert revocation.unsigned(record, both, NOW) == ()


def test_another_intermediate_signs_new_crls(root, intermediate) -> None:
    first = revocation.publish(revocation.Record(), signers=signers(intermediate, root), now=NOW)
    renewed = ca.build_intermediate(
        issuer=root, common_name="intermediate", now=NOW, lifetime=timedelta(days=365)
    )
    second = revocation.publish(
        first, signers=revocation.Signers((renewed, intermediate), (root,)), now=NOW
    )
    assert second.number == 2
    assert crls(second)[0].is_signature_valid(renewed.key.public_key())
    assert crls(second)[1].is_signature_valid(intermediate.key.public_key())


def test_retained_keeps_earlier_intermediates_until_they_expire_and_their_roots(root) -> None:
    start = NOW - timedelta(days=10)
    old = ca.build_intermediate(
        issuer=root, common_name="i", now=start, lifetime=timedelta(days=30)
    )
    new_root = ca.build_root(common_name="root2", now=start, lifetime=timedelta(days=3650))
    current = ca.build_intermediate(
        issuer=new_root, common_name="i", now=NOW, lifetime=timedelta(days=30)
    )
    kept = revocation.retained([old, root], intermediate=current, root=new_root, now=NOW)
    assert kept.intermediates == (current, old)
    assert kept.roots == (new_root, root)
    # Once the old intermediate expired, its root's CRL is no longer needed either.
    later = revocation.retained(
        [old, root, current, new_root],
        intermediate=current,
        root=new_root,
        now=start + timedelta(days=31),
    )
    assert later.intermediates == (current,)
    assert later.roots == (new_root,)


def test_the_signers_round_trip_through_their_secret(root, intermediate) -> None:
    data = revocation.signers_data(signers(intermediate, root))
    assert sorted(data) == sorted(
        f"{crl.key_id(p.certificate)}.{ext}" for p in (intermediate, root) for ext in ("crt", "key")
    )
    loaded = revocation.load_signers(data)
    assert sorted(p.certificate.serial_number for p in loaded) == sorted(
        p.certificate.serial_number for p in (intermediate, root)
    )
    assert revocation.load_signers({"x.crt": "bm90"}) == []


def test_a_revoked_serial_keeps_its_entry_and_takes_a_new_reason() -> None:
    once, changes = revocation.with_requests(
        revocation.Record(),
        [(request(), target(9))],
        {9: "superseded"},
        now=NOW,
        serial_not_after=LATER,
    )
    assert [(e.serial, e.reason, e.source) for e in once.entries] == [
        (9, "superseded", "Certificate shop/web")
    ]
    assert changes["Certificate shop/web"] == revocation.Change(True, "revoked (keyCompromise)")
    assert changes["serial 9"].recorded
    assert changes["serial 9"].message == "reason changed from keyCompromise to superseded"
    same, changes = revocation.with_requests(
        once, [(request(reason="superseded"), target(9))], {}, now=NOW, serial_not_after=LATER
    )
    assert same is once
    assert changes["Certificate shop/web"].message == (
        "revoked already (superseded, 2026-06-01T11:00:00Z)"
    )
    again, changes = revocation.with_requests(
        once, [(request(), target(9))], {}, now=NOW, serial_not_after=LATER
    )
    assert [(e.serial, e.reason, e.revoked_at) for e in again.entries] == [
        (9, "keyCompromise", once.entries[0].revoked_at)
    ]
    assert changes["Certificate shop/web"].message == (
        "reason changed from superseded to keyCompromise"
    )


def test_a_bare_serial_stays_until_the_intermediate_expires() -> None:
    record = revoke(revocation.Record(), [], {0x77: "cessationOfOperation"})
    assert [
        (e.serial, e.reason, e.not_after, e.source, e.revoked_at, e.issuer) for e in record.entries
    ] == [(0x77, "cessationOfOperation", LATER, "serial", NOW, "")]


def test_a_full_record_refuses_more_and_keeps_what_it_has() -> None:
    base = revocation.record_bytes(revocation.Record())
    cost = revocation.entry_bytes(revocation.Entry(1, NOW, "superseded", LATER, "serial"))
    record, changes = revocation.with_requests(
        revocation.Record(),
        [],
        {1: "superseded", 2: "superseded", 3: "superseded"},
        now=NOW,
        serial_not_after=LATER,
        max_bytes=base + 2 * cost,
    )
    assert [e.serial for e in record.entries] == [1, 2]
    assert not changes["serial 3"].recorded
    assert changes["serial 3"].message.startswith("the revocation record is full (2 entries, ")


def test_the_record_round_trips_through_its_configmap(root, intermediate) -> None:
    own = crl.key_id(intermediate.certificate)
    record = revocation.publish(
        revoke(revocation.Record(), [(request(), target(0xABC, issuer=own))], {3: "superseded"}),
        signers=signers(intermediate, root),
        now=NOW,
    )
    assert revocation.load(revocation.dump(record)) == record
    assert revocation.load(None) == revocation.Record()


def test_a_lost_record_is_rebuilt_from_the_published_crls(root, intermediate) -> None:
    own = crl.key_id(intermediate.certificate)
    record = revocation.publish(
        revoke(revocation.Record(), [(request(), target(0xABC, issuer=own))]),
        signers=signers(intermediate, root),
        now=NOW,
    )
    rebuilt = revocation.entries_from_crls(record.crl_pem, signers(intermediate, root), NOW)
    assert [(e.serial, e.reason, e.issuer, e.not_after) for e in rebuilt] == [
        (0xABC, "keyCompromise", own, intermediate.certificate.not_valid_after_utc)
    ]


@pytest.mark.parametrize(
    "data",
    [
        {revocation.RECORD_KEY: "{"},
        {revocation.RECORD_KEY: '{"entries": [{}]}'},
        {revocation.RECORD_KEY: '{"version": 1, "entries": []}'},
        {
            revocation.RECORD_KEY: '{"version": 2, "crlNumber": 1, "signers": [], '
            '"issuers": [], "entries": [["0", 1, 0, 2, -1, "serial"]]}'
        },
    ],
)
def test_a_damaged_record_is_an_error(data) -> None:
    with pytest.raises(ValueError, match="is not a revocation record"):
        revocation.load(data)


def annotated(annotations: dict[str, str]) -> dict[str, object]:
    return {"metadata": {"name": "web", "namespace": "shop", "annotations": annotations}}


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, None),
        (
            {names.REVOKE_REQUEST_ANNOTATION: "2026-06-01T11:00:00Z"},
            ("2026-06-01T11:00:00Z", "unspecified", True, None),
        ),
        (
            {
                names.REVOKE_REQUEST_ANNOTATION: "2026-06-01T12:04:00.5Z",
                names.REVOKE_REASON_ANNOTATION: "superseded",
                names.REVOKE_REISSUE_ANNOTATION: "false",
                names.REVOKE_SERIAL_ANNOTATION: "0a:bc",
            },
            ("2026-06-01T12:04:00.5Z", "superseded", False, 0xABC),
        ),
    ],
)
def test_a_request_on_a_certificate(annotations, expected) -> None:
    found = revocation.request_of("Certificate", annotated(annotations), NOW)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert (found.requested_at, found.reason, found.reissue, found.pinned) == expected
    assert found.source == "Certificate shop/web"


@pytest.mark.parametrize(
    ("annotations", "problem"),
    [
        ({names.REVOKE_REQUEST_ANNOTATION: "garbage"}, "is not an RFC 3339 time"),
        ({names.REVOKE_REQUEST_ANNOTATION: "2030-01-01T00:00:00Z"}, "is in the future"),
        (
            {
                names.REVOKE_REQUEST_ANNOTATION: "2026-06-01T11:00:00Z",
                names.REVOKE_REISSUE_ANNOTATION: "no",
            },
            "'no' is neither true nor false",
        ),
        (
            {
                names.REVOKE_REQUEST_ANNOTATION: "2026-06-01T11:00:00Z",
                names.REVOKE_REISSUE_ANNOTATION: "False",
            },
            "'False' is neither true nor false",
        ),
        (
            {
                names.REVOKE_REQUEST_ANNOTATION: "2026-06-01T11:00:00Z",
                names.REVOKE_SERIAL_ANNOTATION: "00",
            },
            "is 0",
        ),
    ],
)
def test_bad_requests_name_the_annotation(annotations, problem) -> None:
    with pytest.raises(revocation.InvalidRequest, match=problem) as raised:
        revocation.request_of("Certificate", annotated(annotations), NOW)
    assert str(raised.value).startswith("certsmith.dev/revoke-")


def test_a_certificate_request_is_never_reissued() -> None:
    body = annotated({names.REVOKE_REQUEST_ANNOTATION: "2026-06-01T11:00:00Z"})
    found = revocation.request_of("CertificateRequest", body, NOW)
    assert found is not None
    assert (found.reissue, found.pinned) == (False, None)


def test_a_certificate_target_is_its_status_serial_with_its_leafs_issuer(
    root, intermediate
) -> None:
    held = leaf(intermediate)
    status = {"serialNumber": inspect.serial_hex(held), "notAfter": "2026-07-01T12:00:00Z"}
    known = signers(intermediate, root).intermediate_certificates()
    own = crl.key_id(intermediate.certificate)
    found = revocation.certificate_target(request(), status, held, known, "cluster-root")
    assert found == revocation.Target(held.serial_number, held.not_valid_after_utc, own)
    # The Secret holds another certificate (being repaired): status's serial, every CRL.
    found = revocation.certificate_target(request(), status, leaf(intermediate), known, "x")
    assert found == revocation.Target(held.serial_number, LATER, "")


def test_a_pinned_serial_the_object_no_longer_holds_is_refused(root, intermediate) -> None:
    held = leaf(intermediate)
    status = {"serialNumber": inspect.serial_hex(held), "notAfter": "2026-07-01T12:00:00Z"}
    known = signers(intermediate, root).intermediate_certificates()
    with pytest.raises(revocation.InvalidRequest, match="not 7 \\(re-issued since the request\\)"):
        revocation.certificate_target(request(pinned=7), status, held, known, "cluster-root")
    pem = inspect.certificates_to_pem([held]).decode()
    with pytest.raises(revocation.InvalidRequest, match="nothing revoked"):
        revocation.request_target(request(pinned=7), pem, known, "cluster-root")
    device = dataclasses.replace(request(pinned=7), kind="CertificateRequest")
    with pytest.raises(revocation.InvalidRequest) as refused:
        revocation.request_target(device, pem, known, "cluster-root")
    assert str(refused.value) == (
        f"certsmith.dev/revoke-serial: CertificateRequest web holds serial "
        f"{held.serial_number:x}, not 7: nothing revoked (a request revokes only its own "
        "certificate)"
    )


def test_a_leaf_of_another_authority_is_refused(root, intermediate) -> None:
    other_root = ca.build_root(common_name="partner", now=NOW, lifetime=timedelta(days=3650))
    other = ca.build_intermediate(
        issuer=other_root, common_name="partner intermediate", now=NOW, lifetime=timedelta(days=90)
    )
    held = leaf(intermediate)
    status = {"serialNumber": inspect.serial_hex(held), "notAfter": "2026-07-01T12:00:00Z"}
    partner = signers(other, other_root).intermediate_certificates()
    with pytest.raises(
        revocation.InvalidRequest, match="not by a CA of CertificateAuthority partner"
    ):
        revocation.certificate_target(request(), status, held, partner, "partner")
    pem = inspect.certificates_to_pem([held]).decode()
    with pytest.raises(
        revocation.InvalidRequest, match="not by a CA of CertificateAuthority partner"
    ):
        revocation.request_target(request(), pem, partner, "partner")
    own = signers(intermediate, root).intermediate_certificates()
    assert revocation.request_target(request(), pem, own, "a").serial == held.serial_number


@pytest.mark.parametrize(
    ("status", "problem"),
    [({}, "has no certificate yet"), ({"serialNumber": "0"}, "is 0")],
)
def test_a_certificate_without_a_serial_revokes_nothing(status, problem) -> None:
    with pytest.raises(revocation.InvalidRequest, match=problem):
        revocation.certificate_target(request(), status, None, {}, "cluster-root")


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
    own = crl.key_id(intermediate.certificate)
    record = revoke(
        revocation.Record(),
        [(request(), target(revoked.serial_number, not_after=LATER, issuer=own))],
    )
    published = revocation.publish(record, signers=signers(intermediate, root), now=NOW)
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
        revocation.publish(revocation.Record(), signers=signers(intermediate, root), now=NOW)
    )
    data[revocation.CRL_KEY] = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"
    with pytest.raises(ValueError, match="is not a revocation record"):
        revocation.load(data)


def test_the_distribution_point_names_the_signing_intermediate(intermediate) -> None:
    url = "http://certsmith-crl.certsmith.svc/crl/cluster-root/{issuer}.crl"
    own = crl.key_id(intermediate.certificate)
    assert revocation.distribution_point(url, intermediate.certificate) == (
        f"http://certsmith-crl.certsmith.svc/crl/cluster-root/{own}.crl"
    )
    assert revocation.distribution_point("http://x/a.crl", intermediate.certificate) == (
        "http://x/a.crl"
    )
    assert revocation.distribution_point(None, intermediate.certificate) is None
    assert revocation.crl_url({"crl": {"distributionPointURL": url}}) == url


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        (None, ("True", "Published", "CRL number 4 published")),
        (("RevocationRecordInvalid", "damaged"), ("False", "RevocationRecordInvalid", "damaged")),
    ],
)
def test_the_published_condition(problem, expected) -> None:
    found = revocation.published_condition(4, problem)
    assert (found.type, "True" if found.status else "False", found.reason, found.message) == (
        "CRLPublished",
        *expected,
    )


@pytest.mark.parametrize(
    ("requested_at", "pinned", "held", "not_after", "pending"),
    [
        (None, None, "0a", "2026-07-01T00:00:00Z", False),
        ("garbage", None, "0a", "2026-07-01T00:00:00Z", False),
        ("2026-06-01T11:58:01Z", None, "0a", "2026-07-01T00:00:00Z", True),
        ("2026-06-01T12:00:00.5Z", "0a", "0a", "2026-07-01T00:00:00Z", True),
        # However long ago: the CRLs may not be updatable for hours; the request is kept.
        ("2026-05-30T12:00:00Z", "0a", "0a", "2026-07-01T00:00:00Z", True),
        ("2026-06-01T12:04:59Z", "0a", "0a", "2026-07-01T00:00:00Z", True),
        ("2026-06-01T12:05:01Z", "0a", "0a", "2026-07-01T00:00:00Z", False),
        ("2026-06-01T11:00:00Z", "0b", "0a", "2026-07-01T00:00:00Z", False),
        ("2026-06-01T11:00:00Z", "zz", "0a", "2026-07-01T00:00:00Z", False),
        ("2026-06-01T11:00:00Z", "0a", None, None, False),
        ("2026-06-01T11:00:00Z", "0a", "0a", "2026-06-01T11:59:59Z", False),
    ],
)
def test_a_pending_revocation_holds_a_reissue_back_until_handled(
    requested_at, pinned, held, not_after, pending
) -> None:
    annotations = {} if requested_at is None else {names.REVOKE_REQUEST_ANNOTATION: requested_at}
    if pinned is not None:
        annotations[names.REVOKE_SERIAL_ANNOTATION] = pinned
    body = {
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "status": {"serialNumber": held, "notAfter": not_after} if held else {},
    }
    observed = status.Observed.from_body(body)
    assert observed.revocation_pending(NOW) is pending


@pytest.mark.parametrize(
    ("requested_at", "recheck"),
    [("2026-06-01T11:59:00Z", 5), ("2026-06-01T11:58:00Z", 30), ("2026-05-01T00:00:00Z", 30)],
)
def test_a_reissue_held_back_looks_again_less_often_after_two_minutes(
    requested_at, recheck
) -> None:
    observed = status.Observed.from_body(
        {
            "metadata": {
                "name": "web",
                "namespace": "shop",
                "annotations": {names.REVOKE_REQUEST_ANNOTATION: requested_at},
            }
        }
    )
    assert observed.revocation_recheck(NOW) == timedelta(seconds=recheck)
