"""ClusterTrustBundles (certificates.k8s.io, KEP-3257): an authority's roots for pods.

Each CertificateAuthority publishes one ClusterTrustBundle, `certsmith.dev:<authority>:roots`,
linked to its signer name `certsmith.dev/<authority>` (the apiserver requires a signer-linked
bundle's name to start with the signer name, '/' replaced by ':', then ':'). Its
`spec.trustBundle` holds every root the authority trusts, exactly the `ca.crt` of its
trust-bundle ConfigMaps: both roots from Distributing to the end of Retiring, one otherwise.
One object rather than one per root: a phase change is one atomic write, so a pod never sees
a set no ConfigMap ever held, and the name stays fixed for pods that project it by name.

It is labelled `certsmith.dev/authority=<authority>` (what a pod's `labelSelector` matches)
and `app.kubernetes.io/managed-by=certsmith`, and owned by no object: like the CA Secrets
and the trust-bundle ConfigMaps it outlives its authority, so what the authority issued
stays trusted by the pods that project it; an authority created again under that name takes
it back. An ownerReference to the authority (certsmith wrote one before) is taken out, or
the garbage collector would delete the bundle with the authority.

certsmith writes only its own bundle: one carrying the managed-by label, or an
ownerReference to this authority, or the very object certsmith created (same uid). Any
other object of that name, pre-created by a person or a tool, is a conflict: never
overwritten, reported by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certsmith.api import conditions, names
from certsmith.authorities.rotation import Lagging
from certsmith.authorities.trust_bundle import WRITE_FAILED, Action, Verdict

SYNCED = "ClusterTrustBundleSynced"
NOT_SERVED = "NotServed"
SUFFIX = "roots"
KIND = "CertificateAuthority"


def bundle_name(authority: str) -> str:
    """`certsmith.dev:<authority>:roots`: the signer name with '/' replaced by ':', then ':'
    and the suffix (k8s.io/kubernetes pkg/apis/core/validation ValidateClusterTrustBundleName)."""
    return f"{names.signer_name(authority).replace('/', ':')}:{SUFFIX}"


def bundle_authority(name: str) -> str | None:
    """The authority whose bundle is called `name` (inverse of `bundle_name`); None for any
    other ClusterTrustBundle."""
    prefix, suffix = f"{names.GROUP}:", f":{SUFFIX}"
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    authority = name[len(prefix) : -len(suffix)]
    # Authority names are RFC 1123 subdomains: never empty, never a ':'.
    return authority if authority and ":" not in authority else None


def lagging(authority: str, why: str, reason: str) -> Lagging:
    """The bundle as a rotation blocker or a problem: `clustertrustbundle/<name>: why`
    (cluster-scoped: no namespace)."""
    return Lagging("", f"clustertrustbundle/{bundle_name(authority)}", why, reason)


def _ours_by_reference(references: object, authority: str) -> bool:
    return isinstance(references, list) and any(
        isinstance(reference, Mapping)
        and reference.get("kind") == KIND
        and str(reference.get("apiVersion", "")).startswith(names.CERTSMITH_PREFIX)
        and reference.get("name") == authority
        for reference in references
    )


def is_ours(existing: Mapping[str, Any], *, authority: str, created_here: bool) -> bool:
    """Whether certsmith may write this object: it carries the managed-by label, or an
    ownerReference to CertificateAuthority `authority` (as certsmith once wrote it), or
    certsmith created it (`created_here`: its uid, while this process runs), even if
    someone removed its marks."""
    metadata = existing.get("metadata") or {}
    labels = metadata.get("labels") or {}
    return (
        created_here
        or labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE
        or _ours_by_reference(metadata.get("ownerReferences"), authority)
    )


def bundle_body(
    *,
    authority: str,
    version: str,
    pem: bytes,
    existing: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ClusterTrustBundle to create, or to PUT over `existing` (with its
    resourceVersion), in `certificates.k8s.io/<version>`. Labels, annotations and
    ownerReferences others added are kept; certsmith's labels and the trust bundle are put
    back, and any ownerReference to the authority is taken out."""
    previous = (existing or {}).get("metadata") or {}
    others = [
        reference
        for reference in previous.get("ownerReferences") or []
        if not _ours_by_reference([reference], authority)
    ]
    metadata: dict[str, Any] = {
        "name": bundle_name(authority),
        "labels": {
            **(previous.get("labels") or {}),
            names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
            names.CA_AUTHORITY_LABEL: authority,
        },
    }
    if others:
        metadata["ownerReferences"] = others
    if previous.get("annotations"):
        metadata["annotations"] = dict(previous["annotations"])
    if previous.get("resourceVersion"):
        metadata["resourceVersion"] = previous["resourceVersion"]
    return {
        "apiVersion": f"{names.CERTIFICATES_GROUP}/{version}",
        "kind": "ClusterTrustBundle",
        "metadata": metadata,
        "spec": {"signerName": names.signer_name(authority), "trustBundle": pem.decode()},
    }


def is_current(existing: Mapping[str, Any], *, authority: str, pem: bytes) -> bool:
    """Whether both labels and the trust bundle are what certsmith writes, and no
    ownerReference names the authority (the signer name is immutable and implied by the
    name)."""
    metadata = existing.get("metadata") or {}
    labels = metadata.get("labels") or {}
    return (
        labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE
        and labels.get(names.CA_AUTHORITY_LABEL) == authority
        and not _ours_by_reference(metadata.get("ownerReferences"), authority)
        and (existing.get("spec") or {}).get("trustBundle") == pem.decode()
    )


def judge(
    existing: Mapping[str, Any] | None,
    *,
    authority: str,
    pem: bytes,
    created_here: bool,
) -> Verdict:
    """What the authority does with the ClusterTrustBundle found under its bundle's name
    (None: none exists): write it, leave it (current), or report a conflict (not ours)."""
    if existing is None:
        return Verdict(Action.WRITE)
    if not is_ours(existing, authority=authority, created_here=created_here):
        return Verdict(
            Action.CONFLICT,
            "ClusterTrustBundle was not created by certsmith and is left untouched; delete it "
            "(certsmith then publishes its own) or label it "
            f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE} to hand it over",
        )
    if is_current(existing, authority=authority, pem=pem):
        return Verdict(Action.NOTHING)
    return Verdict(Action.WRITE)


NOT_SERVED_MESSAGE = (
    f"the cluster does not serve {names.CLUSTER_TRUST_BUNDLES}.{names.CERTIFICATES_GROUP}: no "
    "ClusterTrustBundle is published (Kubernetes 1.37 serves it by default; on 1.35/1.36 turn "
    "on the ClusterTrustBundle and ClusterTrustBundleProjection feature gates and "
    "--runtime-config=certificates.k8s.io/v1beta1/clustertrustbundles=true)"
)


def synced_condition(
    authority: str, *, served: bool, problem: Lagging | None, roots: int
) -> conditions.Condition:
    """ClusterTrustBundleSynced: True when the bundle holds the `roots` trusted roots; False
    with NotServed when the cluster lacks the API, else with the problem's reason (a
    BundleConflict, a BundleWriteFailed) and message."""
    if not served:
        return conditions.Condition(SYNCED, False, NOT_SERVED, NOT_SERVED_MESSAGE)
    if problem is not None:
        return conditions.Condition(SYNCED, False, problem.reason or WRITE_FAILED, str(problem))
    plural = "root" if roots == 1 else "roots"
    return conditions.Condition(
        SYNCED,
        True,
        "Synced",
        f"ClusterTrustBundle {bundle_name(authority)} holds the {roots} trusted {plural}",
    )
