"""ClusterTrustBundles: names the apiserver accepts, the roots of every rotation phase,
certsmith's own object repaired and anyone else's left alone."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509

from certsmith.api import names
from certsmith.authorities import cluster_trust_bundle, trust_bundle
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.authorities.rotation import Lagging
from certsmith.authorities.trust_bundle import Action
from certsmith.pki import ca, inspect
from tests.unit.conftest import CA_ISSUED_AT

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
UID = "uid-now"
# k8s.io/apimachinery's DNS-1123 subdomain: what must follow the signer prefix in a name.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@pytest.mark.parametrize(
    ("authority", "name"),
    [
        ("cluster-root", "certsmith.dev:cluster-root:roots"),
        ("partners.example.com", "certsmith.dev:partners.example.com:roots"),
        ("a", "certsmith.dev:a:roots"),
    ],
)
def test_the_bundle_name_is_what_the_apiserver_requires_of_a_signer_linked_bundle(
    authority: str, name: str
) -> None:
    assert cluster_trust_bundle.bundle_name(authority) == name
    # ValidateClusterTrustBundleName: signer name with '/' → ':', then ':', then a subdomain.
    prefix = names.signer_name(authority).replace("/", ":") + ":"
    assert name.startswith(prefix)
    assert DNS_SUBDOMAIN.match(name.removeprefix(prefix))
    assert cluster_trust_bundle.bundle_authority(name) == authority


@pytest.mark.parametrize(
    "name",
    [
        "certsmith.dev:cluster-root:other",
        "example.com:cluster-root:roots",
        "certsmith.dev::roots",
        "certsmith.dev:a:b:roots",
        "cluster-root",
        "certsmith.dev:roots",
    ],
)
def test_other_bundles_name_no_authority(name: str) -> None:
    assert cluster_trust_bundle.bundle_authority(name) is None


def root(common_name: str) -> x509.Certificate:
    return ca.build_root(
        common_name=common_name, now=CA_ISSUED_AT, lifetime=timedelta(days=30)
    ).certificate


OLD, NEW = root("old"), root("new")


@pytest.mark.parametrize(
    ("phase", "trusted"),
    [
        ("Ready, before", (OLD,)),
        ("Distributing", (OLD, NEW)),
        ("Reissuing", (OLD, NEW)),
        ("Retiring", (OLD, NEW)),
        ("Ready, after", (NEW,)),
    ],
)
def test_the_bundle_holds_exactly_the_configmaps_roots_in_every_phase(
    phase: str, trusted: tuple[x509.Certificate, ...], root: ca.CAKeyPair
) -> None:
    material = AuthorityMaterial(
        name="team", root=root, intermediate=root, trusted_roots=trusted, bundle_config_map="b"
    )
    body = cluster_trust_bundle.bundle_body(authority="team", version="v1", pem=material.bundle_pem)
    configmap = trust_bundle.bundle_configmap(
        name="b", namespace="ns", authority="team", pem=material.bundle_pem
    )
    assert body["spec"]["trustBundle"] == configmap["data"]["ca.crt"], phase
    published = x509.load_pem_x509_certificates(body["spec"]["trustBundle"].encode())
    assert [inspect.fingerprint_sha256(c) for c in published] == [
        inspect.fingerprint_sha256(c) for c in trusted
    ]


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_a_new_bundle_is_linked_to_the_signer_labelled_and_owned_by_nothing(
    version: str,
) -> None:
    """No ownerReference: the garbage collector would delete it with its authority."""
    body = cluster_trust_bundle.bundle_body(authority="team", version=version, pem=PEM)
    assert body == {
        "apiVersion": f"certificates.k8s.io/{version}",
        "kind": "ClusterTrustBundle",
        "metadata": {
            "name": "certsmith.dev:team:roots",
            "labels": {
                "app.kubernetes.io/managed-by": "certsmith",
                "certsmith.dev/authority": "team",
            },
        },
        "spec": {"signerName": "certsmith.dev/team", "trustBundle": PEM.decode()},
    }


def stored(**metadata: Any) -> dict[str, Any]:
    """certsmith's bundle as the apiserver returns it, `metadata` changed."""
    body = cluster_trust_bundle.bundle_body(authority="team", version="v1", pem=PEM)
    body["metadata"].update(uid="obj-1", resourceVersion="7", **metadata)
    return body


def judge(existing: dict[str, Any] | None, *, created_here: bool = False) -> Action:
    return cluster_trust_bundle.judge(
        existing, authority="team", pem=PEM, created_here=created_here
    ).action


def foreign() -> dict[str, Any]:
    return {
        "metadata": {"name": "certsmith.dev:team:roots", "uid": "x", "resourceVersion": "3"},
        "spec": {"signerName": "certsmith.dev/team", "trustBundle": "someone else's"},
    }


OTHERS_REFERENCE = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "c"}


def authority_reference(name: str, uid: str) -> dict[str, Any]:
    """An ownerReference to a CertificateAuthority, as certsmith wrote it before."""
    return {
        "apiVersion": "certsmith.dev/v1alpha1",
        "kind": "CertificateAuthority",
        "name": name,
        "uid": uid,
        "controller": True,
    }


@pytest.mark.parametrize(
    ("existing", "created_here", "action"),
    [
        (None, False, Action.WRITE),
        (stored(), False, Action.NOTHING),
        # Edited by hand: a root removed, a label changed or removed.
        ({**stored(), "spec": {"signerName": "certsmith.dev/team", "trustBundle": "x"}}, False,
         Action.WRITE),
        (stored(labels={"app.kubernetes.io/managed-by": "certsmith"}), False, Action.WRITE),
        (stored(labels={"app.kubernetes.io/managed-by": "certsmith",
                        "certsmith.dev/authority": "other"}), False, Action.WRITE),
        # Another object's ownerReference is theirs to add: nothing to repair.
        (stored(ownerReferences=[OTHERS_REFERENCE]), False, Action.NOTHING),
        # Owned by its authority, as an older certsmith wrote it: rewritten without, so the
        # garbage collector keeps it when the authority goes.
        (stored(ownerReferences=[authority_reference("team", UID)]), False, Action.WRITE),
        (stored(ownerReferences=[OTHERS_REFERENCE, authority_reference("team", "before")]),
         False, Action.WRITE),
        # Every mark gone but that ownerReference (to any uid): still certsmith's.
        (stored(labels={}, ownerReferences=[authority_reference("team", "before")]), False,
         Action.WRITE),
        # No mark at all: certsmith's only if this process created that very object.
        (stored(labels={}, ownerReferences=[]), True, Action.WRITE),
        (stored(labels={}, ownerReferences=[]), False, Action.CONFLICT),
        (foreign(), False, Action.CONFLICT),
        # An ownerReference to another authority does not make it this one's.
        ({**foreign(), "metadata": {**foreign()["metadata"], "ownerReferences": [
            authority_reference("other", "o")]}}, False, Action.CONFLICT),
    ],
)  # fmt: skip
def test_certsmith_repairs_its_own_bundle_and_never_writes_anyone_elses(
    existing: dict[str, Any] | None, created_here: bool, action: Action
) -> None:
    assert judge(existing, created_here=created_here) is action


def test_a_conflict_says_how_to_resolve_it() -> None:
    verdict = cluster_trust_bundle.judge(foreign(), authority="team", pem=PEM, created_here=False)
    assert verdict.why == (
        "ClusterTrustBundle was not created by certsmith and is left untouched; delete it "
        "(certsmith then publishes its own) or label it app.kubernetes.io/managed-by=certsmith "
        "to hand it over"
    )


def test_a_repair_keeps_what_others_added_and_drops_the_authoritys_ownership() -> None:
    existing = stored(
        labels={"team": "a", "certsmith.dev/authority": "edited"},
        annotations={"note": "kept"},
        ownerReferences=[OTHERS_REFERENCE, authority_reference("team", "uid-before")],
    )
    existing["spec"]["trustBundle"] = "edited"
    body = cluster_trust_bundle.bundle_body(
        authority="team", version="v1", pem=PEM, existing=existing
    )
    assert body["metadata"]["resourceVersion"] == "7"
    assert body["metadata"]["labels"] == {
        "team": "a",
        "certsmith.dev/authority": "team",
        "app.kubernetes.io/managed-by": "certsmith",
    }
    assert body["metadata"]["annotations"] == {"note": "kept"}
    assert body["metadata"]["ownerReferences"] == [OTHERS_REFERENCE]
    assert body["spec"]["trustBundle"] == PEM.decode()
    assert cluster_trust_bundle.is_current(
        {**body, "metadata": {**body["metadata"], "uid": "obj-1"}}, authority="team", pem=PEM
    )


def test_the_synced_condition_says_published_not_served_or_what_stopped_it() -> None:
    synced = cluster_trust_bundle.synced_condition("team", served=True, problem=None, roots=2)
    assert (synced.type, synced.status, synced.reason, synced.message) == (
        "ClusterTrustBundleSynced",
        True,
        "Synced",
        "ClusterTrustBundle certsmith.dev:team:roots holds the 2 trusted roots",
    )
    one = cluster_trust_bundle.synced_condition("team", served=True, problem=None, roots=1)
    assert one.message.endswith("holds the 1 trusted root")

    unserved = cluster_trust_bundle.synced_condition("team", served=False, problem=None, roots=1)
    assert (unserved.status, unserved.reason) == (False, "NotServed")
    assert unserved.message.startswith(
        "the cluster does not serve clustertrustbundles.certificates.k8s.io"
    )
    assert "ClusterTrustBundle and ClusterTrustBundleProjection feature gates" in unserved.message
    assert "certificates.k8s.io/v1beta1/clustertrustbundles=true" in unserved.message

    problem = cluster_trust_bundle.lagging(
        "team", "ClusterTrustBundle was not ...", "BundleConflict"
    )
    assert (
        str(problem)
        == "clustertrustbundle/certsmith.dev:team:roots: ClusterTrustBundle was not ..."
    )
    refused = cluster_trust_bundle.synced_condition("team", served=True, problem=problem, roots=1)
    assert (refused.status, refused.reason, refused.message) == (
        False,
        "BundleConflict",
        str(problem),
    )


def test_a_namespaced_blocker_still_shows_its_namespace() -> None:
    assert str(Lagging("ns", "cm", "why")) == "ns/cm: why"
