"""The re-issue decision: which check fires for which state of the Secret, in priority order."""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from certsmith.api import model, names
from certsmith.certificates import policies, renewal, tls_secret
from certsmith.certificates.policies import Action
from certsmith.pki import ca, inspect, issue, keys
from tests import builders
from tests.unit import certificate_builders

NOW, NAME, NAMESPACE = (
    certificate_builders.NOW,
    certificate_builders.NAME,
    certificate_builders.NAMESPACE,
)
SPEC = builders.spec(dnsNames=["web.shop.svc"])


def spec_of(**fields: Any) -> model.CertificateSpec:
    return model.parse_certificate_spec(builders.spec(SPEC, **fields))


def issued_secret(
    spec: model.CertificateSpec,
    intermediate: ca.CAKeyPair,
    root: ca.CAKeyPair,
    *,
    issued_at: datetime = NOW - timedelta(days=1),
    owner: str = NAME,
) -> dict[str, Any]:
    """A Secret issued a day ago, with no ca.crt and a placeholder issuer fingerprint."""
    return certificate_builders.secret_body(
        spec,
        root,
        intermediate,
        issued_at=issued_at,
        owner=owner,
        ca_pem=b"",
        issuer_fingerprint="f",
        resource_version="1",
    )


def decide(spec, secret, root, *, now=NOW, judged_serial=None) -> policies.Decision:
    return policies.decide(
        policies.Input(
            certificate_name=NAME,
            namespace=NAMESPACE,
            spec=spec,
            secret=None if secret is None else tls_secret.parse_secret(secret),
            authority=policies.AuthorityView(
                name="cluster-root", trusted_roots=(root.certificate,)
            ),
            now=now,
            judged_serial=judged_serial,
        )
    )


def test_valid_secret_needs_nothing(root, intermediate):
    spec = spec_of()
    assert decide(spec, issued_secret(spec, intermediate, root), root).action is Action.NOTHING


def test_missing_secret_is_issued(root):
    decision = decide(spec_of(), None, root)
    assert (decision.action, decision.reason) == (Action.ISSUE, "SecretMissing")


def test_secret_of_another_certificate_is_a_conflict(root, intermediate):
    spec = spec_of()
    decision = decide(spec, issued_secret(spec, intermediate, root, owner="other"), root)
    assert decision.action is Action.CONFLICT
    assert "other" in decision.message


def test_foreign_secret_of_another_type_is_left_alone(root):
    foreign = {"metadata": {"name": "web-tls"}, "type": "Opaque", "data": {"password": "eA=="}}
    decision = decide(spec_of(), foreign, root)
    assert decision.action is Action.CONFLICT and "created by hand" in decision.message


def test_unparsable_data_is_reissued(root, intermediate):
    spec = spec_of()
    secret = issued_secret(spec, intermediate, root)
    secret["data"]["tls.crt"] = base64.b64encode(b"not a certificate").decode()
    decision = decide(spec, secret, root)
    assert (decision.action, decision.reason) == (Action.ISSUE, "SecretInvalid")


def test_swapped_key_is_reissued(root, intermediate):
    spec = spec_of()
    secret = issued_secret(spec, intermediate, root)
    other = keys.encode_private_key(ec.generate_private_key(ec.SECP256R1()), "PKCS8")
    secret["data"]["tls.key"] = base64.b64encode(other).decode()
    assert decide(spec, secret, root).reason == "KeyMismatch"


def test_leaf_from_an_untrusted_root_is_reissued(root, intermediate):
    spec = spec_of()
    other_root = ca.build_root(
        common_name="other", now=NOW - timedelta(days=1), lifetime=timedelta(days=10)
    )
    other_intermediate = ca.build_intermediate(
        issuer=other_root,
        common_name="other i",
        now=NOW - timedelta(days=1),
        lifetime=timedelta(days=5),
    )
    secret = issued_secret(spec, other_intermediate, other_root)
    decision = decide(spec, secret, root)
    assert decision.reason == "IssuerNotTrusted"
    # The verifier's own words follow, not a guess at the cause.
    assert decision.message.startswith(
        "the certificate does not verify against the roots trusted by "
    )
    assert "validation failed" in decision.message


def test_changed_names_are_reissued(root, intermediate):
    secret = issued_secret(spec_of(), intermediate, root)
    decision = decide(spec_of(dnsNames=["api.shop.svc"]), secret, root)
    assert (decision.action, decision.reason) == (Action.ISSUE, "SpecChanged")


def test_changed_key_algorithm_is_reissued(root, intermediate):
    secret = issued_secret(spec_of(), intermediate, root)
    assert (
        decide(spec_of(privateKey={"algorithm": "Ed25519"}), secret, root).reason == "SpecChanged"
    )


def test_renewal_time_reached_is_reissued(root, intermediate):
    spec = spec_of(duration="24h")
    secret = issued_secret(spec, intermediate, root, issued_at=NOW - timedelta(hours=17))
    assert decide(spec, secret, root).reason == "RenewalDue"
    fresh = issued_secret(spec, intermediate, root, issued_at=NOW - timedelta(hours=15))
    assert decide(spec, fresh, root).action is Action.NOTHING


def test_removed_annotation_is_repaired_not_reissued(root, intermediate):
    spec = spec_of()
    secret = issued_secret(spec, intermediate, root)
    del secret["metadata"]["annotations"][names.SERIAL_ANNOTATION]
    assert decide(spec, secret, root).action is Action.REPAIR


def test_a_leaf_other_than_the_one_issued_is_replaced_even_with_the_same_names(root, intermediate):
    # A twin Certificate's leaf (same spec) or an older one restored from a backup, under
    # the annotations of the leaf certsmith wrote: its key may live in another Secret too.
    spec = spec_of()
    twin = issued_secret(spec, intermediate, root, issued_at=NOW - timedelta(hours=1))
    secret = issued_secret(spec, intermediate, root)
    secret["data"] = {**secret["data"], **{k: twin["data"][k] for k in ("tls.crt", "tls.key")}}
    decision = decide(spec, secret, root)
    assert (decision.action, decision.reason) == (Action.ISSUE, "CertificateReplaced")
    assert "is not the one certsmith issued for this Certificate" in decision.message


def test_an_edited_serial_annotation_on_the_leaf_status_vouches_for_is_repaired(root, intermediate):
    # The leaf is the one the sealed status records: only the mark was edited.
    spec = spec_of()
    secret = issued_secret(spec, intermediate, root)
    serial = secret["metadata"]["annotations"][names.SERIAL_ANNOTATION]
    secret["metadata"]["annotations"][names.SERIAL_ANNOTATION] = "0badc0de"
    decision = decide(spec, secret, root, judged_serial=serial)
    assert (decision.action, decision.reason) == (Action.REPAIR, "Repaired")
    # Without the status to vouch for it, the leaf is not known to be certsmith's.
    for unknown in (None, "0badc0de"):
        decision = decide(spec, secret, root, judged_serial=unknown)
        assert (decision.action, decision.reason) == (Action.ISSUE, "CertificateReplaced")


def test_a_leaf_replaced_is_reissued_whatever_status_vouches_for(root, intermediate):
    spec = spec_of()
    twin = issued_secret(spec, intermediate, root, issued_at=NOW - timedelta(hours=1))
    secret = issued_secret(spec, intermediate, root)
    serial = secret["metadata"]["annotations"][names.SERIAL_ANNOTATION]
    secret["data"] = {**secret["data"], **{k: twin["data"][k] for k in ("tls.crt", "tls.key")}}
    decision = decide(spec, secret, root, judged_serial=serial)
    assert (decision.action, decision.reason) == (Action.ISSUE, "CertificateReplaced")


def test_an_edited_not_after_annotation_is_repaired(root, intermediate):
    spec = spec_of()
    secret = issued_secret(spec, intermediate, root)
    secret["metadata"]["annotations"][names.NOT_AFTER_ANNOTATION] = "2099-01-01T00:00:00Z"
    assert decide(spec, secret, root).action is Action.REPAIR


def test_removed_label_is_repaired_not_reissued(root, intermediate):
    spec = spec_of(secretTemplate={"labels": {"team": "shop"}})
    secret = issued_secret(spec, intermediate, root)
    del secret["metadata"]["labels"]["team"]
    assert decide(spec, secret, root).action is Action.REPAIR


def test_missing_fingerprint_annotation_is_repaired_and_names_still_compared(root, intermediate):
    spec = spec_of()
    secret = issued_secret(spec, intermediate, root)
    del secret["metadata"]["annotations"][names.SPEC_FINGERPRINT_ANNOTATION]
    assert decide(spec, secret, root).action is Action.REPAIR
    other = decide(spec_of(dnsNames=["x.shop.svc"]), secret, root)
    assert (other.action, other.reason) == (Action.ISSUE, policies.CERTIFICATE_MISMATCH)
    assert "its names are DNS web.shop.svc, the spec asks for DNS x.shop.svc" in other.message


def copied(secret: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """`secret` with tls.crt and tls.key of `source`, its annotations (fingerprint, serial)
    kept: a Secret restored from a backup or copied by hand."""
    for key in ("tls.crt", "tls.key"):
        secret["data"][key] = source["data"][key]
    return secret


@pytest.mark.parametrize(
    ("mine", "theirs", "says"),
    [
        # Same authority and key type; only the names differ (the tester's case).
        (
            {"dnsNames": [], "commonName": "a" * 50 + ".shop.svc"},
            {"dnsNames": ["*.shop"]},
            "its subject is empty, the spec asks for CN=aaaa",
        ),
        ({}, {"dnsNames": ["web.shop.svc", "x.shop.svc"]}, "its names are DNS web.shop.svc, DNS x"),
        ({"ipAddresses": ["10.0.0.1"]}, {"ipAddresses": ["10.0.0.2"]}, "IPAddress 10.0.0.2"),
        (
            {"uris": ["spiffe://cluster.local/ns/shop/sa/a"]},
            {"uris": ["spiffe://cluster.local/ns/shop/sa/b"]},
            "UniformResourceIdentifier spiffe://cluster.local/ns/shop/sa/b",
        ),
        ({"emailAddresses": ["a@x.com"]}, {"emailAddresses": ["b@x.com"]}, "RFC822 b@x.com"),
        (
            {"subject": {"organizations": ["a"]}, "commonName": "web.shop.svc"},
            {"subject": {"organizations": ["b"]}, "commonName": "web.shop.svc"},
            "O=b",
        ),
        ({"usages": ["server auth"]}, {"usages": ["server auth", "client auth"]}, "extended key"),
        (
            {"usages": ["digital signature", "content commitment", "server auth"]},
            {"usages": ["digital signature", "server auth"]},
            "key usages",
        ),
        (
            {"privateKey": {"algorithm": "RSA", "size": 3072}},
            {"privateKey": {"algorithm": "RSA"}},
            "algorithm or size",
        ),
    ],
)
def test_a_leaf_copied_from_another_certificate_is_reissued_whatever_the_annotations(
    root, intermediate, mine, theirs, says
):
    spec = spec_of(**mine)
    source = issued_secret(spec_of(**theirs), intermediate, root)
    secret = copied(issued_secret(spec, intermediate, root), source)
    assert secret["metadata"]["annotations"][names.SPEC_FINGERPRINT_ANNOTATION] == (
        model.issuance_fingerprint(spec)
    )
    decision = decide(spec, secret, root)
    assert (decision.action, decision.reason) == (Action.ISSUE, policies.CERTIFICATE_MISMATCH)
    assert says in decision.message


def test_a_leaf_matching_in_another_order_is_not_reissued(root, intermediate):
    """Names and subject attributes compare as sets: no re-issue for order alone."""
    spec = spec_of(
        dnsNames=["a.shop.svc", "b.shop.svc"],
        subject={"organizations": ["x", "y"]},
        commonName="a.shop.svc",
    )
    reordered = spec_of(
        dnsNames=["b.shop.svc", "a.shop.svc"],
        subject={"organizations": ["y", "x"]},
        commonName="a.shop.svc",
    )
    secret = issued_secret(reordered, intermediate, root)
    assert issue.leaf_mismatch(tls_secret.parse_secret(secret).leaf, spec) is None


def test_leaf_without_its_common_name_in_the_san_is_reissued(root, intermediate):
    # A leaf whose SAN lacks the commonName, as issued before it went into the SAN.
    spec = spec_of(dnsNames=[], commonName="web.shop.svc")
    secret = issued_secret(spec, intermediate, root)
    assert decide(spec, secret, root).action is Action.NOTHING
    old_leaf = issue.build_leaf(
        spec=dataclasses.replace(spec, common_name=None),
        public_key=tls_secret.parse_secret(secret).key.public_key(),
        issuer=intermediate,
        now=NOW - timedelta(days=1),
    )
    secret["data"]["tls.crt"] = base64.b64encode(
        inspect.certificates_to_pem([old_leaf, intermediate.certificate])
    ).decode()
    decision = decide(spec, secret, root)
    assert (decision.action, decision.reason) == (Action.ISSUE, policies.CERTIFICATE_MISMATCH)


def test_expired_leaf_is_reissued_even_if_everything_else_matches(root, intermediate):
    spec = spec_of(duration="1h")
    secret = issued_secret(spec, intermediate, root, issued_at=NOW - timedelta(hours=3))
    decision = decide(spec, secret, root)
    assert (decision.action, decision.reason) == (Action.ISSUE, "Expired")


@pytest.mark.parametrize(
    "fields",
    [
        {"duration": "1h", "renewBeforePercentage": 99},
        {"duration": "1m", "renewBefore": "30s"},
        {"duration": "1m", "renewBeforePercentage": 50},
        {"duration": "1m"},
        {"duration": "10m", "renewBefore": "9m30s"},
        {"duration": "1h", "renewBeforePercentage": 99, "privateKey": {"algorithm": "RSA"}},
        {
            "duration": "1m",
            "renewBefore": "30s",
            "privateKey": {"algorithm": "Ed25519", "rotationPolicy": "Never"},
            "usages": ["digital signature", "client auth"],
            "secretTemplate": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
        },
    ],
)
def test_nothing_fires_again_before_the_floor_after_an_issuance(root, intermediate, fields):
    # The leaf starts a minute early (clock skew); renewal counts from its signing, so even
    # the most aggressive admitted spec is not due again until MIN_IN_USE has passed.
    spec = spec_of(**fields)
    secret = issued_secret(spec, intermediate, root, issued_at=NOW)
    for later in (NOW, NOW + renewal.MIN_IN_USE - timedelta(microseconds=1)):
        assert decide(spec, secret, root, now=later).action is not Action.ISSUE
    leaf = tls_secret.parse_secret(secret).leaf
    assert leaf is not None
    due = policies.leaf_renewal_time(spec, leaf, jitter_key=f"{NAMESPACE}/{NAME}")
    assert due >= NOW + renewal.MIN_IN_USE
    assert decide(spec, secret, root, now=due).reason == "RenewalDue"


def test_leaf_capped_by_an_expiring_issuer_is_not_due_before_the_floor(root):
    # The intermediate has 3m20s left (it is renewed at 2/3 of 10m): the 1h leaf is capped.
    expiring = ca.build_intermediate(
        issuer=root,
        common_name="expiring",
        now=NOW - timedelta(minutes=6, seconds=40),
        lifetime=timedelta(minutes=10),
    )
    spec = spec_of(duration="1h", renewBeforePercentage=99)
    secret = issued_secret(spec, expiring, root, issued_at=NOW)
    leaf = tls_secret.parse_secret(secret).leaf
    assert leaf is not None
    assert leaf.not_valid_after_utc == expiring.certificate.not_valid_after_utc
    due = policies.leaf_renewal_time(spec, leaf, jitter_key=f"{NAMESPACE}/{NAME}")
    assert due == NOW + renewal.MIN_IN_USE  # 99% of 3m20s would leave 2 s
    assert decide(spec, secret, root, now=due - timedelta(seconds=1)).action is Action.NOTHING


def judge(spec, secret, root, **extra) -> policies.Input:
    return policies.Input(
        certificate_name=NAME,
        namespace=NAMESPACE,
        spec=spec,
        secret=None if secret is None else tls_secret.parse_secret(secret),
        authority=policies.AuthorityView(name="cluster-root", trusted_roots=(root.certificate,)),
        now=extra.pop("now", NOW),
        **extra,
    )


def test_unlabelled_tls_secret_is_a_conflict_saying_it_was_made_by_hand(root, intermediate):
    spec = spec_of()
    secret = issued_secret(spec, intermediate, root)
    secret["metadata"]["labels"] = {}
    secret["metadata"]["annotations"] = {}
    decision = policies.decide(judge(spec, secret, root))
    assert (decision.action, decision.reason) == (Action.CONFLICT, "SecretConflict")
    assert "created by hand (not labelled by certsmith)" in decision.message
    assert "certsmith.dev/certificate=web" in decision.message


def test_secret_of_a_deleted_certificate_is_a_conflict_with_a_hint_to_delete_it(root, intermediate):
    spec = spec_of()
    secret = issued_secret(spec, intermediate, root, owner="old")
    gone = policies.decide(judge(spec, secret, root, claimant_exists=False))
    assert gone.action is Action.CONFLICT
    assert "Certificate old, which no longer exists" in gone.message
    assert "delete the Secret" in gone.message
    alive = policies.decide(judge(spec, secret, root, claimant_exists=True))
    assert "belongs to Certificate old" in alive.message


def test_secret_of_a_deleted_certificate_of_the_same_name_is_adopted(root, intermediate):
    old_spec = spec_of(dnsNames=["old.shop.svc"])
    secret = issued_secret(old_spec, intermediate, root)
    decision = policies.decide(judge(spec_of(), secret, root))
    assert (decision.action, decision.reason) == (Action.ISSUE, "SpecChanged")


def test_ca_secret_is_never_taken(root, intermediate):
    spec = spec_of(secretName="cluster-root-intermediate")
    secret = issued_secret(spec, intermediate, root)
    secret["metadata"]["labels"] = {
        "app.kubernetes.io/managed-by": "certsmith",
        "certsmith.dev/authority": "cluster-root",
        "certsmith.dev/role": "intermediate",
    }
    secret["metadata"]["annotations"] = {}
    decision = policies.decide(judge(spec, secret, root))
    assert decision.action is Action.CONFLICT
    assert "intermediate of CertificateAuthority cluster-root" in decision.message


def test_expired_and_not_yet_valid_leaves_are_named_as_such(root, intermediate):
    spec = spec_of(duration="1h")
    expired = issued_secret(spec, intermediate, root, issued_at=NOW - timedelta(hours=3))
    problem = policies.leaf_problem(judge(spec, expired, root))
    assert problem is not None and problem.reason == "Expired"
    assert "expired at 2026-06-01T10:00:00Z" in problem.message
    future = issued_secret(spec, intermediate, root, issued_at=NOW + timedelta(minutes=5))
    problem = policies.leaf_problem(judge(spec, future, root))
    assert problem is not None and problem.reason == "NotYetValid"


def test_a_usable_leaf_has_no_problem_even_when_due_for_renewal(root, intermediate):
    spec = spec_of(duration="1h")
    due = issued_secret(spec, intermediate, root, issued_at=NOW - timedelta(minutes=50))
    assert policies.decide(judge(spec, due, root)).reason == "RenewalDue"
    assert policies.leaf_problem(judge(spec, due, root)) is None
    assert policies.leaf_problem(judge(spec, None, root)).reason == "SecretMissing"


def test_key_removed_from_the_template_is_repaired_not_reissued(root, intermediate):
    secret = issued_secret(spec_of(secretTemplate={"labels": {"team": "shop"}}), intermediate, root)
    decision = policies.decide(judge(spec_of(), secret, root))
    assert (decision.action, decision.reason) == (Action.REPAIR, "Repaired")
    changed = policies.decide(
        judge(spec_of(secretTemplate={"labels": {"team": "pay"}}), secret, root)
    )
    assert changed.action is Action.REPAIR


def test_keys_added_by_hand_need_nothing(root, intermediate):
    spec = spec_of()
    secret = issued_secret(spec, intermediate, root)
    secret["metadata"]["labels"]["backup"] = "daily"
    secret["metadata"]["annotations"]["example.com/owner"] = "team-a"
    secret["data"]["keystore.p12"] = "cDEy"
    assert policies.decide(judge(spec, secret, root)).action is Action.NOTHING
