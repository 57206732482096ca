"""Certificate and CertificateAuthority bodies for every test tier, built one way.

Bodies are plain JSON as a manifest or the apiserver has them, so that unit tests hand them
to the code under test and cluster tests POST them. Spec fields are keyword arguments
spelt as in a manifest: `certificate("web", dnsNames=["web.shop.svc"], duration="1h")`.
Nothing here imports the operator or a Kubernetes client: every tier can use it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

GROUP, VERSION = "certsmith.dev", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

MINIMAL_SPEC: Mapping[str, Any] = {"secretName": "web-tls", "dnsNames": ["web.example.com"]}
"""The smallest spec the operator signs: one Secret, one name."""


def spec(base: Mapping[str, Any] = MINIMAL_SPEC, /, **fields: Any) -> dict[str, Any]:
    """A Certificate spec: `base` with `fields` set on top; a field set to None is left out
    (to test it missing). `spec({"secretName": "s"}, commonName="a.b")` starts from a
    different base; `spec(dnsNames=None)` is MINIMAL_SPEC without its dnsNames."""
    merged = {**base, **fields}
    return {key: value for key, value in merged.items() if value is not None}


def certificate(
    name: str,
    /,
    *,
    namespace: str | None = None,
    generation: int | None = None,
    status: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A Certificate named `name` whose spec is `fields`, with secretName `<name>-tls` unless
    given. `namespace` and `generation` go into metadata (as the apiserver returns them),
    `status` (see `condition`) as given; each is left out when None."""
    body = _object("Certificate", name, namespace, generation)
    body["spec"] = {"secretName": f"{name}-tls", **fields}
    if status is not None:
        body["status"] = dict(status)
    return body


def authority(
    name: str, /, *, status: Mapping[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """A CertificateAuthority (cluster-scoped) named `name` whose spec is `fields`."""
    body = _object("CertificateAuthority", name, None, None)
    body["spec"] = dict(fields)
    if status is not None:
        body["status"] = dict(status)
    return body


def condition(
    status: str,
    *,
    kind: str = "Ready",
    reason: str | None = None,
    message: str | None = None,
    observed_generation: int | None = None,
) -> dict[str, Any]:
    """A status condition ("True", "False" or "Unknown") of type `kind`; the optional keys
    are left out when None, as in a condition another writer left incomplete."""
    entry: dict[str, Any] = {"type": kind, "status": status}
    optional = {"reason": reason, "message": message, "observedGeneration": observed_generation}
    entry.update((key, value) for key, value in optional.items() if value is not None)
    return entry


def admission_review(certificate: Mapping[str, Any], *, username: str) -> dict[str, Any]:
    """The AdmissionReview (admission.k8s.io/v1) the apiserver sends the validating webhook
    when `username` creates `certificate`, whose metadata names its namespace."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": GROUP, "version": VERSION, "kind": "Certificate"},
            "resource": {"group": GROUP, "version": VERSION, "resource": "certificates"},
            "namespace": certificate["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": username},
            "object": certificate,
            "dryRun": False,
        },
    }


def _object(kind: str, name: str, namespace: str | None, generation: int | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    if generation is not None:
        metadata["generation"] = generation
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata}
