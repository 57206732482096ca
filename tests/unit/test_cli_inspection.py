"""`kubectl certsmith inspect`: the decoded chain, the verdict on it, who mounts the Secret."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from certsmith.api import model
from certsmith.certificates import tls_secret
from certsmith.cli import inspection
from certsmith.pki import ca, inspect, issue, keys
from tests import builders

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make_secret(
    intermediate: ca.CAKeyPair, roots: list[ca.CAKeyPair], **spec: Any
) -> tuple[dict[str, Any], bytes]:
    """A Secret as the operator writes it, and the PEM of its private key."""
    parsed = model.parse_certificate_spec(builders.spec({"secretName": "web-tls"}, **spec))
    key = keys.generate_private_key(parsed.private_key)
    leaf = issue.build_leaf(
        spec=parsed, public_key=key.public_key(), issuer=intermediate, now=NOW - timedelta(hours=1)
    )
    key_pem = keys.encode_private_key(key, "PKCS8")
    secret = tls_secret.build_secret(
        name="web-tls",
        namespace="shop",
        certificate_name="web",
        labels_template={},
        annotations_template={},
        material=tls_secret.IssuedMaterial(
            leaf=leaf,
            intermediates=(intermediate.certificate,),
            key_pem=key_pem,
            ca_pem=inspect.certificates_to_pem(r.certificate for r in roots),
            issuer_fingerprint="f",
            spec_fingerprint="s",
            revision=3,
            authority="cluster-root",
        ),
    )
    return secret, key_pem


CERTIFICATE = builders.certificate(
    "web",
    namespace="shop",
    generation=1,
    status={
        "conditions": [
            builders.condition("True", reason="Issued", message="ok", observed_generation=1)
        ]
    },
)


def pod(name: str, volumes: list[dict[str, Any]], mounts: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "volumes": volumes,
            "containers": [
                {
                    "name": "app",
                    "volumeMounts": [{"name": v, "mountPath": p} for v, p in mounts.items()],
                }
            ],
        },
        "status": {"phase": "Pending"},
    }


def test_report_shows_names_key_usages_and_fingerprints_of_each_certificate(root, intermediate):
    secret, _ = make_secret(
        intermediate,
        [root],
        commonName="web.shop.svc",
        dnsNames=["web.shop.svc"],
        ipAddresses=["10.0.0.10"],
        uris=["spiffe://cluster.local/ns/shop/sa/web"],
        emailAddresses=["ops@example.com"],
        usages=["digital signature", "server auth", "client auth"],
    )
    report = inspection.build_report(CERTIFICATE, secret, [], NOW)
    chain = inspect.load_pem_certificates(base64.b64decode(secret["data"]["tls.crt"]))
    assert [c["role"] for c in report["chain"]] == ["leaf", "intermediate"]
    assert [c["sha256Fingerprint"] for c in report["chain"]] == [
        inspect.fingerprint_sha256(c) for c in chain
    ]
    assert report["chain"][0]["serialNumber"] == inspect.serial_hex(chain[0])
    assert report["chain"][1]["issuer"] == "CN=root"
    leaf = report["leaf"]
    assert leaf["dnsNames"] == ["web.shop.svc"]
    assert leaf["ipAddresses"] == ["10.0.0.10"]
    assert leaf["uris"] == ["spiffe://cluster.local/ns/shop/sa/web"]
    assert leaf["emailAddresses"] == ["ops@example.com"]
    assert (leaf["keyType"], leaf["keySize"]) == ("ECDSA P-256", 256)
    assert leaf["keyUsage"] == ["digital signature"]
    assert leaf["extendedKeyUsage"] == ["server auth", "client auth"]
    assert report["secret"]["revision"] == "3"

    text = inspection.render(report, NOW)
    assert "DNS names:          web.shop.svc" in text
    assert "Key:                ECDSA P-256 (256 bits)" in text
    assert f"SHA-256:    {inspect.fingerprint_sha256(root.certificate)}" in text
    assert "Chain verifies: yes" in text


def test_rsa_keys_are_described_with_their_size(root, intermediate):
    secret, _ = make_secret(
        intermediate, [root], dnsNames=["a.example"], privateKey={"algorithm": "RSA", "size": 3072}
    )
    leaf = inspection.build_report(CERTIFICATE, secret, [], NOW)["leaf"]
    assert (leaf["keyType"], leaf["keySize"]) == ("RSA", 3072)


def test_the_private_key_never_appears_in_any_output(root, intermediate):
    secret, key_pem = make_secret(intermediate, [root], dnsNames=["web.shop.svc"])
    report = inspection.build_report(CERTIFICATE, secret, [], NOW)
    shown = inspection.render(report, NOW) + json.dumps(report)
    assert secret["data"]["tls.key"] not in shown
    for line in key_pem.decode().splitlines()[1:-1]:
        assert line not in shown
    assert "PRIVATE KEY" not in shown


def test_a_chain_from_another_root_does_not_verify(root, intermediate):
    other = ca.build_root(
        common_name="other", now=NOW - timedelta(days=1), lifetime=timedelta(days=30)
    )
    secret, _ = make_secret(intermediate, [other], dnsNames=["web.shop.svc"])
    report = inspection.build_report(CERTIFICATE, secret, [], NOW)
    assert report["verification"]["verifies"] is False
    assert report["verification"]["problem"] == "the chain does not lead to a root in ca.crt"
    assert report["trustedRoots"][0]["anchorsChain"] is False
    assert "Chain verifies: no: the chain does not lead to a root in ca.crt" in inspection.render(
        report, NOW
    )


def test_the_anchoring_root_is_marked_among_several(root, intermediate):
    other = ca.build_root(
        common_name="next", now=NOW - timedelta(days=1), lifetime=timedelta(days=30)
    )
    secret, _ = make_secret(intermediate, [other, root], dnsNames=["web.shop.svc"])
    report = inspection.build_report(CERTIFICATE, secret, [], NOW)
    assert report["verification"]["verifies"] is True
    assert [r["anchorsChain"] for r in report["trustedRoots"]] == [False, True]


def test_an_expired_leaf_is_named_as_the_reason(root, intermediate):
    secret, _ = make_secret(intermediate, [root], dnsNames=["web.shop.svc"], duration="2h")
    later = NOW + timedelta(hours=3)
    verification = inspection.build_report(CERTIFICATE, secret, [], later)["verification"]
    assert verification["verifies"] is False
    assert verification["problem"].startswith("the leaf expired at ")


def test_missing_ca_bundle_is_a_problem_not_a_crash(root, intermediate):
    secret, _ = make_secret(intermediate, [root], dnsNames=["web.shop.svc"])
    del secret["data"]["ca.crt"]
    report = inspection.build_report(CERTIFICATE, secret, [], NOW)
    assert report["secret"]["problems"] == ["ca.crt is missing"]
    assert report["verification"]["problem"] == "ca.crt holds no certificate"
    assert "Problem: ca.crt is missing" in inspection.render(report, NOW)


def test_pods_mounting_the_secret_directly_or_projected_are_found():
    pods = [
        pod("direct", [{"name": "tls", "secret": {"secretName": "web-tls"}}], {"tls": "/etc/tls"}),
        pod(
            "bundle",
            [
                {
                    "name": "certs",
                    "projected": {
                        "sources": [
                            {"configMap": {"name": "x"}},
                            {
                                "secret": {
                                    "name": "web-tls",
                                    "items": [{"key": "ca.crt", "path": "ca"}],
                                }
                            },
                        ]
                    },
                }
            ],
            {"certs": "/var/run/certs"},
        ),
        pod("other", [{"name": "tls", "secret": {"secretName": "db-tls"}}], {"tls": "/etc/tls"}),
        {"metadata": {"name": "novolumes"}, "spec": {"containers": [{"name": "c"}]}},
    ]
    found = inspection.pods_mounting(pods, "web-tls")
    assert [(m["pod"], m["volume"], m["via"], m["mounts"]) for m in found] == [
        ("bundle", "certs", "projected", ["app:/var/run/certs"]),
        ("direct", "tls", "secret", ["app:/etc/tls"]),
    ]


def test_render_lists_mounting_pods_or_says_there_are_none(root, intermediate):
    secret, _ = make_secret(intermediate, [root], dnsNames=["web.shop.svc"])
    mounted = [
        pod("app", [{"name": "tls", "secret": {"secretName": "web-tls"}}], {"tls": "/etc/tls"})
    ]
    text = inspection.render(inspection.build_report(CERTIFICATE, secret, mounted, NOW), NOW)
    rows = text.split("Mounted by:\n")[1].splitlines()
    assert rows[0].split() == ["POD", "PHASE", "VOLUME", "VIA", "MOUNTS"]
    assert rows[1].split() == ["app", "Pending", "tls", "secret", "app:/etc/tls"]
    alone = inspection.render(inspection.build_report(CERTIFICATE, secret, [], NOW), NOW)
    assert "Mounted by: no pod in namespace shop mounts Secret web-tls" in alone


def test_pods_that_cannot_be_listed_leave_the_rest_of_the_report(root, intermediate):
    secret, _ = make_secret(intermediate, [root], dnsNames=["web.shop.svc"])
    report = inspection.build_report(CERTIFICATE, secret, "Pods in namespace shop: forbidden", NOW)
    assert report["mountedBy"] is None
    text = inspection.render(report, NOW)
    assert "Mounted by: unknown (Pods in namespace shop: forbidden)" in text
    assert "Chain verifies: yes" in text
