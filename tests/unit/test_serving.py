"""The webhook's own certificate follows the default authority: re-issued when the signing
intermediate moves (root rotation) or renewal is due, not while only the trusted roots change
(the caBundle follows them: webhook_config.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cryptography import x509

from certsmith.admission import serving
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.pki import ca, inspect

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def material(root: ca.CAKeyPair, intermediate: ca.CAKeyPair, *roots: x509.Certificate):
    return AuthorityMaterial(
        name="cluster-root",
        root=root,
        intermediate=intermediate,
        trusted_roots=roots or (root.certificate,),
    )


def test_a_fresh_replica_issues(root, intermediate) -> None:
    step = serving.plan(serving.ServingState(), material=material(root, intermediate), now=NOW)
    assert step == serving.ServingPlan(reissue=True)


def test_nothing_to_do_while_the_authority_is_unchanged(root, intermediate) -> None:
    current = material(root, intermediate)
    state = serving.ServingState(
        issuer=intermediate.certificate,
        renew_at=NOW + timedelta(days=10),
    )
    assert serving.plan(state, material=current, now=NOW) == serving.ServingPlan(False)


def test_a_rotation_moves_the_certificate_when_the_intermediate_moves(root, intermediate) -> None:
    state = serving.ServingState(
        issuer=intermediate.certificate,
        renew_at=NOW + timedelta(days=10),
    )
    new_root = ca.build_root(common_name="new root", now=NOW, lifetime=timedelta(days=3650))
    new_intermediate = ca.build_intermediate(
        issuer=new_root, common_name="new intermediate", now=NOW, lifetime=timedelta(days=365)
    )
    # Distributing: both roots trusted, still signing with the old intermediate.
    distributing = material(root, intermediate, root.certificate, new_root.certificate)
    assert serving.plan(state, material=distributing, now=NOW) == serving.ServingPlan(reissue=False)
    # Reissuing: leaves move to the new intermediate, and so does the webhook.
    reissuing = replace(distributing, root=new_root, intermediate=new_intermediate)
    assert serving.plan(state, material=reissuing, now=NOW) == serving.ServingPlan(reissue=True)
    state = replace(state, issuer=new_intermediate.certificate)
    # Ready: the old root leaves the caBundle.
    ready = material(new_root, new_intermediate)
    assert serving.plan(state, material=ready, now=NOW) == serving.ServingPlan(reissue=False)
    assert inspect.certificates_to_pem([new_root.certificate]) == ready.bundle_pem


def test_renewal_is_due(root, intermediate) -> None:
    current = material(root, intermediate)
    state = serving.ServingState(issuer=intermediate.certificate, renew_at=NOW)
    assert serving.plan(state, material=current, now=NOW) == serving.ServingPlan(True)


def test_files_an_earlier_run_wrote_are_reused_only_while_valid(root, intermediate) -> None:
    chain, _, _ = serving.serving_certificate(
        material(root, intermediate), dns_names=["certsmith-webhook"], now=NOW
    )
    until = serving.usable_files_until(chain, NOW)
    assert until == min(c.not_valid_after_utc for c in inspect.load_pem_certificates(chain))
    assert serving.usable_files_until(chain, until) is None
    assert serving.usable_files_until(chain, NOW - timedelta(days=2)) is None
    assert serving.usable_files_until(b"garbage", NOW) is None


def test_the_placeholder_is_trusted_by_no_authority(root, intermediate) -> None:
    chain, key = serving.placeholder_certificate(dns_names=["certsmith-webhook"], now=NOW)
    leaf = inspect.load_pem_certificates(chain)[0]
    assert b"PRIVATE KEY" in key
    assert not inspect.chain_is_valid(
        leaf=leaf,
        intermediates=[intermediate.certificate],
        roots=[root.certificate],
        now=NOW,
    )


def test_the_serving_certificate_lives_30_days_and_renews_at_two_thirds(root, intermediate) -> None:
    issued = serving.serving_certificate(
        material(root, intermediate), dns_names=["certsmith-webhook"], now=NOW
    )
    leaf = inspect.load_pem_certificates(issued.chain_pem)[0]
    assert leaf.not_valid_before_utc == NOW - timedelta(minutes=1)  # backdated (pki.ca)
    assert leaf.not_valid_after_utc == NOW + timedelta(days=30)  # the intermediate lives longer
    assert issued.renew_at == NOW - timedelta(minutes=1) + timedelta(days=30, minutes=1) * 2 / 3
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["certsmith-webhook"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert b"PRIVATE KEY" in issued.key_pem
