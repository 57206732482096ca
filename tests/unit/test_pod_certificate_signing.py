"""What certsmith answers to a PodCertificateRequest (podcerts.signing): the pod's identity,
the names it may carry, the annotation it reads, the certificate's times, the status."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed448
from cryptography.x509.oid import ExtendedKeyUsageOID

from certsmith.authorities import rotation
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.authorities.pod_certificates import Settings
from certsmith.certificates import isolation
from certsmith.pki import ca, inspect
from certsmith.podcerts import requests, signing
from certsmith.podcerts.signing import Refusal
from tests import csrs, pod_requests

NOW = datetime(2026, 6, 1, 12, 0, 30, 123456, tzinfo=UTC)
SIGNED_AT = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
NOT_BEFORE = SIGNED_AT - ca.BACKDATE
DNS = "certsmith.dev/dns-names"


def a_pod(
    *, namespace: str = "shop", labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-0",
            "namespace": namespace,
            "uid": "0b9c0f5e-1111-4222-8333-444455556666",
            "labels": {"app": "web"} if labels is None else labels,
        },
        "spec": {"serviceAccountName": "web", "nodeName": "node-1"} | spec,
    }


def a_request(
    pod: dict[str, Any] | None = None, key_type: str = "ECDSAP256", **fields: Any
) -> requests.PodCertificateRequest:
    pod = pod or a_pod()
    body = pod_requests.request_body(
        name="web-0-req",
        namespace=pod["metadata"]["namespace"],
        signer="certsmith.dev/cluster-root",
        pod=pod,
        key=pod_requests.new_key(key_type),
        **fields,
    )
    return requests.parse(body)


def a_service(name: str, selector: dict[str, str] | None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop"}, "spec": {"selector": selector}}


def checked(request: requests.PodCertificateRequest) -> signing.Checked:
    found = signing.check(request, operator_namespace="certsmith")
    assert isinstance(found, signing.Checked), found
    return found


@pytest.mark.parametrize(
    ("annotations", "names"),
    [
        ({}, ()),
        ({DNS: ""}, ()),
        (
            {DNS: " A.example.com, b.example.com,,a.example.com "},
            ("a.example.com", "b.example.com"),
        ),
        ({DNS: "*.example.com"}, ("*.example.com",)),
    ],
)
def test_the_dns_names_annotation_adds_names(
    annotations: dict[str, str], names: tuple[str, ...]
) -> None:
    assert signing.requested_dns_names(annotations) == names


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({DNS: "bad..name"}, "[certsmith.dev/dns-names]: 'bad..name' is not a DNS name"),
        ({DNS: "10.0.0.1"}, "'10.0.0.1' is not a DNS name"),
        ({DNS: "a.example.com,*.*.example.com"}, "'*.*.example.com' is not a DNS name"),
        (
            {"example.com/color": "blue", "certsmith.dev/ip": "x", DNS: "a.example.com"},
            "does not know 'certsmith.dev/ip', 'example.com/color'; it reads only "
            "certsmith.dev/dns-names",
        ),
    ],
)
def test_unknown_keys_and_bad_names_deny_the_request(
    annotations: dict[str, str], message: str
) -> None:
    refusal = signing.requested_dns_names(annotations)
    assert isinstance(refusal, Refusal)
    assert (refusal.condition, refusal.reason) == ("Denied", "InvalidUnverifiedUserAnnotations")
    assert message in refusal.message


def test_a_request_from_certsmiths_own_namespace_is_denied() -> None:
    refusal = signing.check(a_request(a_pod(namespace="certsmith")), operator_namespace="certsmith")
    assert isinstance(refusal, Refusal)
    assert (refusal.condition, refusal.reason) == ("Denied", "PolicyDenied")
    assert "'certsmith' is certsmith's own namespace" in refusal.message


def test_an_unsupported_key_is_denied_with_the_reason_kubernetes_defines() -> None:
    request = a_request()
    spec = dict(request.spec)
    spec["stubPKCS10Request"] = base64.b64encode(
        pod_requests.stub_csr(ed448.Ed448PrivateKey.generate())
    ).decode()
    refusal = signing.check(replace(request, spec=spec), operator_namespace="certsmith")
    assert isinstance(refusal, Refusal)
    assert (refusal.condition, refusal.reason) == ("Denied", "UnsupportedKeyType")
    assert "ECDSAP256" in refusal.message


def test_an_rsa_key_with_public_exponent_3_is_denied_naming_the_exponent() -> None:
    request = a_request()
    spec = dict(request.spec)
    spec["stubPKCS10Request"] = base64.b64encode(
        pod_requests.stub_csr(csrs.rsa_exponent_3_key())
    ).decode()
    refusal = signing.check(replace(request, spec=spec), operator_namespace="certsmith")
    assert isinstance(refusal, Refusal)
    assert (refusal.condition, refusal.reason) == ("Denied", "UnsupportedKeyType")
    assert "an RSA key with public exponent 3 (publicExponent must be 65537" in refusal.message


def test_a_well_formed_request_is_checked_with_its_key_and_names() -> None:
    request = a_request(annotations={DNS: "b.example.com,a.example.com"})
    found = checked(request)
    assert found.extra_dns_names == ("a.example.com", "b.example.com")
    assert found.public_key.public_numbers() == requests.public_key(request).public_numbers()


@pytest.mark.parametrize(
    ("pod", "reason", "message"),
    [
        (
            a_pod() | {"metadata": a_pod()["metadata"] | {"uid": "other"}},
            "PodReplaced",
            "pod shop/web-0 has uid other, the request was made for uid 0b9c0f5e",
        ),
        (
            a_pod(serviceAccountName="admin"),
            "ServiceAccountMismatch",
            "runs as service account admin, the request names web",
        ),
        (
            a_pod(nodeName="node-2"),
            "NodeMismatch",
            "is bound to node node-2, the request comes for node node-1",
        ),
        (a_pod(nodeName=None), "NodeMismatch", "is bound to node (none)"),
    ],
)
def test_a_pod_that_is_not_the_requests_denies_it(
    pod: dict[str, Any], reason: str, message: str
) -> None:
    refusal = signing.identity_refusal(a_request(), pod)
    assert refusal is not None
    assert (refusal.condition, refusal.reason) == ("Denied", reason)
    assert message in refusal.message


def test_the_requests_own_pod_passes_and_a_missing_one_is_denied() -> None:
    assert signing.identity_refusal(a_request(), a_pod()) is None
    no_account = a_pod()
    del no_account["spec"]["serviceAccountName"]
    request = a_request(no_account)
    assert request.service_account == "default"
    assert signing.identity_refusal(request, no_account) is None
    gone = signing.pod_not_found(a_request())
    assert (gone.condition, gone.reason, gone.message) == (
        "Denied",
        "PodNotFound",
        "pod shop/web-0 does not exist",
    )


@pytest.mark.parametrize(
    ("labels", "services", "names"),
    [
        (
            {"app": "web"},
            [a_service("web", {"app": "web"})],
            ("web.shop.svc", "web.shop.svc.cluster.local"),
        ),
        (
            {"app": "web", "tier": "front"},
            [
                a_service("z-all", {"app": "web"}),
                a_service("a-front", {"tier": "front", "app": "web"}),
            ],
            (
                "a-front.shop.svc",
                "a-front.shop.svc.cluster.local",
                "z-all.shop.svc",
                "z-all.shop.svc.cluster.local",
            ),
        ),
        ({"app": "web"}, [a_service("db", {"app": "db"})], ()),
        ({"app": "web"}, [a_service("both", {"app": "web", "tier": "back"})], ()),
        ({"app": "web"}, [a_service("headless-external", None)], ()),
        ({"app": "web"}, [a_service("empty", {})], ()),
        ({}, [a_service("web", {"app": "web"})], ()),
    ],
)
def test_the_services_whose_selector_matches_the_pod_name_it(
    labels: dict[str, str], services: list[dict[str, Any]], names: tuple[str, ...]
) -> None:
    assert signing.service_dns_names("shop", labels, services) == names


def names_of(
    request: requests.PodCertificateRequest,
    *,
    services: list[dict[str, Any]],
    grants: tuple[isolation.Grant, ...] = (),
    labels: dict[str, str] | None = None,
) -> signing.Names | Refusal:
    return signing.certificate_names(
        request,
        checked(request),
        pod=a_pod(namespace=request.namespace),
        services=services,
        namespace_labels=labels or {},
        grants=grants,
        trust_domain="cluster.local",
    )


def test_the_certificate_names_the_service_account_and_the_selecting_services() -> None:
    named = names_of(
        a_request(annotations={DNS: "web.shop.svc,api.shop.svc"}),
        services=[a_service("web", {"app": "web"})],
    )
    assert named == signing.Names(
        dns_names=("web.shop.svc", "web.shop.svc.cluster.local", "api.shop.svc"),
        uri="spiffe://cluster.local/ns/shop/sa/web",
    )


def test_a_name_of_another_namespace_is_denied_naming_it_and_why() -> None:
    pod = a_pod(namespace="b")
    refusal = names_of(a_request(pod, annotations={DNS: "api.a.svc"}), services=[])
    assert isinstance(refusal, Refusal)
    assert (refusal.condition, refusal.reason) == ("Denied", "PolicyDenied")
    assert refusal.message == (
        "spec.unverifiedUserAnnotations[certsmith.dev/dns-names]: 'api.a.svc' is not allowed "
        "in this namespace (namespace b may name its own services and SPIFFE IDs only)"
    )


def test_a_grant_of_the_authority_allows_names_beyond_the_namespaces_own() -> None:
    grant = isolation.Grant(
        selector={"matchLabels": {"team": "shop"}}, dns_names=("*.example.com",)
    )
    request = a_request(annotations={DNS: "www.example.com"})
    assert isinstance(names_of(request, services=[], grants=(grant,)), Refusal)
    named = names_of(request, services=[], grants=(grant,), labels={"team": "shop"})
    assert isinstance(named, signing.Names)
    assert named.dns_names == ("www.example.com",)


def test_the_spiffe_id_takes_the_configured_trust_domain() -> None:
    assert signing.spiffe_id("example.org", "shop", "web") == "spiffe://example.org/ns/shop/sa/web"


@pytest.mark.parametrize(
    ("max_expiration", "settings", "lifetime", "refresh_after"),
    [
        # Kubernetes' smallest maxExpirationSeconds: refresh at 2/3 of an hour.
        (timedelta(seconds=3600), Settings(), HOUR, 40 * MINUTE),
        (timedelta(seconds=86400), Settings(), DAY, 16 * HOUR),
        # The largest is capped by the authority's maxDuration (24h by default) …
        (timedelta(seconds=7862400), Settings(), DAY, 16 * HOUR),
        # … unless it allows as much.
        (timedelta(seconds=7862400), Settings(max_duration=91 * DAY), 91 * DAY, 91 * DAY * 2 / 3),
        (timedelta(seconds=86400), Settings(max_duration=HOUR), HOUR, 40 * MINUTE),
        (
            timedelta(seconds=86401),
            Settings(max_duration=2 * DAY),
            timedelta(seconds=86401),
            timedelta(seconds=57600),
        ),
        # renewBefore counts back from notAfter …
        (timedelta(seconds=86400), Settings(renew_before=2 * HOUR), DAY, 22 * HOUR),
        # … and is clamped to 10 min after notBefore when the lifetime is short.
        (timedelta(seconds=3600), Settings(renew_before=23 * HOUR), HOUR, 10 * MINUTE),
        (timedelta(seconds=3600), Settings(renew_before=10 * MINUTE), HOUR, 50 * MINUTE),
    ],
)
def test_lifetime_and_refresh_stay_within_kubernetes_bounds(
    intermediate: ca.CAKeyPair,
    max_expiration: timedelta,
    settings: Settings,
    lifetime: timedelta,
    refresh_after: timedelta,
) -> None:
    times = signing.validity(
        now=NOW,
        max_expiration=max_expiration,
        settings=settings,
        intermediate=intermediate.certificate,
        distributing=False,
    )
    assert isinstance(times, signing.Validity)
    assert times.not_before == NOT_BEFORE
    assert times.not_after - times.not_before == lifetime
    assert times.begin_refresh_at - times.not_before == refresh_after
    assert times.not_before + 10 * MINUTE <= times.begin_refresh_at <= times.not_after - 10 * MINUTE
    for moment in (times.not_before, times.not_after, times.begin_refresh_at):
        assert moment.microsecond == 0


@pytest.mark.parametrize("max_expiration", [timedelta(seconds=3600), timedelta(seconds=86400)])
def test_while_a_rotation_distributes_pods_come_back_as_early_as_allowed(
    intermediate: ca.CAKeyPair, max_expiration: timedelta
) -> None:
    times = signing.validity(
        now=NOW,
        max_expiration=max_expiration,
        settings=Settings(renew_before=30 * MINUTE),
        intermediate=intermediate.certificate,
        distributing=True,
    )
    assert isinstance(times, signing.Validity)
    assert times.begin_refresh_at == NOT_BEFORE + 10 * MINUTE


def intermediate_lasting(
    root: ca.CAKeyPair, lifetime: timedelta, age: timedelta
) -> x509.Certificate:
    return ca.build_intermediate(
        issuer=root, common_name="short", now=NOW - age, lifetime=lifetime
    ).certificate


def test_a_certificate_never_outlives_the_intermediate(root: ca.CAKeyPair) -> None:
    short = intermediate_lasting(root, 3 * HOUR, age=HOUR)
    times = signing.validity(
        now=NOW, max_expiration=DAY, settings=Settings(), intermediate=short, distributing=False
    )
    assert isinstance(times, signing.Validity)
    assert times.not_after == short.not_valid_after_utc


def test_an_intermediate_with_exactly_an_hour_left_still_signs_for_an_hour(
    root: ca.CAKeyPair,
) -> None:
    last_hour = intermediate_lasting(root, 3 * HOUR, age=2 * HOUR + MINUTE)
    times = signing.validity(
        now=NOW, max_expiration=DAY, settings=Settings(), intermediate=last_hour, distributing=False
    )
    assert isinstance(times, signing.Validity)
    assert times.not_after - times.not_before == HOUR


def test_an_intermediate_about_to_be_renewed_postpones_the_request(root: ca.CAKeyPair) -> None:
    # kube-apiserver keeps it 15 min: only an intermediate of 3h or more is waited for.
    almost_over = intermediate_lasting(root, 3 * HOUR, age=2 * HOUR + 2 * MINUTE)
    postponed = signing.validity(
        now=NOW,
        max_expiration=DAY,
        settings=Settings(),
        intermediate=almost_over,
        distributing=False,
    )
    assert isinstance(postponed, signing.Postponed)
    assert "too soon for a 1h pod certificate" in postponed.why


def test_a_short_intermediate_without_an_hour_left_fails_rather_than_waits(
    root: ca.CAKeyPair,
) -> None:
    # Renewed at 2/3, a 2h intermediate may have under 1h left for 40 min: past the deadline.
    short = intermediate_lasting(root, 2 * HOUR, age=HOUR + 10 * MINUTE)
    failed = signing.validity(
        now=NOW, max_expiration=DAY, settings=Settings(), intermediate=short, distributing=False
    )
    assert isinstance(failed, Refusal)
    assert (failed.condition, failed.reason) == ("Failed", "IntermediateLifetimeTooShort")
    assert "spec.intermediateLifetime to 3h or more" in failed.message
    fresh = intermediate_lasting(root, 2 * HOUR, age=timedelta(0))
    issued = signing.validity(
        now=NOW, max_expiration=DAY, settings=Settings(), intermediate=fresh, distributing=False
    )
    assert isinstance(issued, signing.Validity)


def test_an_intermediate_living_under_an_hour_fails_the_request(root: ca.CAKeyPair) -> None:
    brief = intermediate_lasting(root, 30 * MINUTE, age=timedelta(0))
    failed = signing.validity(
        now=NOW, max_expiration=DAY, settings=Settings(), intermediate=brief, distributing=False
    )
    assert isinstance(failed, Refusal)
    assert (failed.condition, failed.reason) == ("Failed", "IntermediateLifetimeTooShort")
    assert "spec.intermediateLifetime to 3h or more" in failed.message


def material(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair, phase: rotation.Phase = rotation.Phase.READY
) -> AuthorityMaterial:
    return AuthorityMaterial(
        name="cluster-root",
        root=root,
        intermediate=intermediate,
        trusted_roots=(root.certificate,),
        rotation=rotation.RotationState(phase),
    )


@pytest.mark.parametrize("key_type", pod_requests.KEY_TYPES)
def test_the_issued_status_holds_the_chain_and_the_leafs_own_times(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair, key_type: str
) -> None:
    request = a_request(key_type=key_type, max_expiration_seconds=7200)
    named = signing.Names(dns_names=("web.shop.svc",), uri="spiffe://cluster.local/ns/shop/sa/web")
    signed = signing.sign(
        request, checked(request), named, authority=material(root, intermediate), now=NOW
    )
    assert isinstance(signed, signing.Signed)
    status = signed.status
    leaf, chained = inspect.load_pem_certificates(status["certificateChain"].encode())
    assert chained == intermediate.certificate
    assert leaf == signed.leaf
    assert inspect.chain_is_valid(
        leaf=leaf, intermediates=[chained], roots=[root.certificate], now=NOW
    )
    assert status["notBefore"] == "2026-06-01T11:59:30Z"
    assert status["notAfter"] == "2026-06-01T13:59:30Z"
    assert status["beginRefreshAt"] == "2026-06-01T13:19:30Z"
    assert leaf.not_valid_before_utc == NOT_BEFORE
    assert leaf.not_valid_after_utc == NOT_BEFORE + 2 * HOUR
    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["web.shop.svc"]
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/shop/sa/web"
    ]
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_encipherment is key_type.startswith("RSA")
    assert leaf.public_key().public_bytes(*pod_requests.SPKI) == requests.public_key(
        request
    ).public_bytes(*pod_requests.SPKI)
    (condition,) = status["conditions"]
    assert condition["type"] == condition["reason"] == "Issued"
    assert condition["status"] == "True"
    assert condition["lastTransitionTime"] == "2026-06-01T12:00:30Z"
    assert "spiffe://cluster.local/ns/shop/sa/web and 1 DNS names" in condition["message"]
    assert signed.root_fingerprint == inspect.fingerprint_sha256(root.certificate)
    assert signed.begin_refresh_at == NOT_BEFORE + 80 * MINUTE


def test_a_distributing_authority_signs_with_the_earliest_refresh(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    request = a_request()
    named = signing.Names(dns_names=(), uri="spiffe://cluster.local/ns/shop/sa/web")
    signed = signing.sign(
        request,
        checked(request),
        named,
        authority=material(root, intermediate, rotation.Phase.DISTRIBUTING),
        now=NOW,
    )
    assert isinstance(signed, signing.Signed)
    assert signed.status["beginRefreshAt"] == "2026-06-01T12:09:30Z"


def test_a_refusal_writes_its_condition_only() -> None:
    refusal = Refusal("Denied", "PodNotFound", "x" * 40000)
    status = signing.refused_status(refusal, NOW)
    (condition,) = status.pop("conditions")
    assert status == {}
    assert condition == {
        "type": "Denied",
        "status": "True",
        "reason": "PodNotFound",
        "message": "x" * 32768,
        "lastTransitionTime": "2026-06-01T12:00:30Z",
    }


def test_a_signer_name_without_an_authority_is_denied_saying_how_signers_are_named() -> None:
    request = a_request()
    refusal = signing.unknown_authority(
        replace(request, signer_name="certsmith.dev/nope", authority="nope")
    )
    assert (refusal.condition, refusal.reason) == ("Denied", "AuthorityNotFound")
    assert refusal.message.startswith(
        "signerName certsmith.dev/nope names CertificateAuthority nope, which does not exist"
    )
    assert "certsmith.dev/<authority>" in refusal.message


def test_a_certificate_names_at_most_as_many_as_a_certificate_may() -> None:
    web = [a_service("web", {"app": "web"})]  # two names, and the SPIFFE ID
    fits = ",".join(f"n{i}.shop.svc" for i in range(997))
    named = names_of(a_request(annotations={DNS: fits}), services=web)
    assert isinstance(named, signing.Names) and len(named.dns_names) == 999
    refusal = names_of(a_request(annotations={DNS: fits + ",more.shop.svc"}), services=web)
    assert isinstance(refusal, Refusal)
    assert (refusal.condition, refusal.reason) == ("Denied", "InvalidUnverifiedUserAnnotations")
    assert "bring the certificate to 1001 names (at most 1000" in refusal.message
