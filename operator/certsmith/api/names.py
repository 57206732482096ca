"""certsmith's names in the Kubernetes API: group, version, and every label and annotation key.

Defined here once; every module (and the CLI) reads them from here. Keys under
`certsmith.dev/` are certsmith's own; `app.kubernetes.io/managed-by` is the well-known label
(Kubernetes "Recommended Labels"); `cert-manager.io/` is cert-manager's, read only to tell
its Secrets apart.
"""

from __future__ import annotations

GROUP = "certsmith.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CERTIFICATES = "certificates"
AUTHORITIES = "certificateauthorities"
CERTIFICATE_REQUESTS = "certificaterequests"
APPROVE_VERB = "approve"
"""The RBAC verb, on `certificateauthorities` (resourceName: the authority) in GROUP, that
approves or denies a CertificateRequest addressed to that authority (as Kubernetes'
`approve` on `signers` for CertificateSigningRequests)."""
SIGN_VERB = "sign"
"""The RBAC verb, on `certificateauthorities` (resourceName: the authority) in GROUP, that
writes a CertificateRequest's certificate and every other part of its status but the
decision: only certsmith's ClusterRole holds it (as Kubernetes' `sign` on `signers`)."""

CERTSMITH_PREFIX = f"{GROUP}/"
CERT_MANAGER_PREFIX = "cert-manager.io/"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "certsmith"

# --- a Certificate's Secret ---------------------------------------------------------------
CERTIFICATE_LABEL = "certsmith.dev/certificate"
CERTIFICATE_NAME_ANNOTATION = "certsmith.dev/certificate-name"
SERIAL_ANNOTATION = "certsmith.dev/serial-number"
NOT_AFTER_ANNOTATION = "certsmith.dev/not-after"
ISSUER_ANNOTATION = "certsmith.dev/issuer-fingerprint"
SPEC_FINGERPRINT_ANNOTATION = "certsmith.dev/spec-fingerprint"
REVISION_ANNOTATION = "certsmith.dev/revision"
AUTHORITY_ANNOTATION = "certsmith.dev/authority"
# On a Certificate: ask for a re-issue now. On its Secret: the last request honoured.
RENEWAL_REQUEST_ANNOTATION = "certsmith.dev/renew-requested-at"
# The keys spec.secretTemplate put on the Secret, comma-separated: when one leaves the
# template it is removed; keys never listed here are never removed.
TEMPLATE_LABELS_ANNOTATION = "certsmith.dev/template-labels"
TEMPLATE_ANNOTATIONS_ANNOTATION = "certsmith.dev/template-annotations"
CERT_MANAGER_CERTIFICATE_ANNOTATION = f"{CERT_MANAGER_PREFIX}certificate-name"

# --- a CertificateAuthority's own Secrets (root, next root, intermediate) and bundles ------
CA_AUTHORITY_LABEL = "certsmith.dev/authority"
CA_ROLE_LABEL = "certsmith.dev/role"
# On a CertificateAuthority: start a root rotation now.
ROTATE_ANNOTATION = "certsmith.dev/rotate-requested-at"
BUNDLE_LABEL = "certsmith.dev/trust-bundle"
# Revocation (`kubectl certsmith revoke`). On a Certificate or a CertificateRequest: revoke
# the certificate in its status now (the time of the request), why (a CRLReason name), and,
# on a Certificate, "false" not to re-issue it, and the serial meant (hex, optional: the
# operator then refuses the request if the object holds another). On a CertificateAuthority:
# `revoke.certsmith.dev/<serial hex>: <reason>` revokes a serial it signed. certsmith
# removes them once the revocation is recorded.
REVOKE_REQUEST_ANNOTATION = "certsmith.dev/revoke-requested-at"
REVOKE_REASON_ANNOTATION = "certsmith.dev/revoke-reason"
REVOKE_REISSUE_ANNOTATION = "certsmith.dev/revoke-reissue"
REVOKE_SERIAL_ANNOTATION = "certsmith.dev/revoke-serial"
REVOKE_SERIAL_PREFIX = "revoke.certsmith.dev/"
# Added by `kubectl certsmith revoke` with the request, removed by certsmith once it handled
# it: deleting the object (or its namespace) meanwhile waits, so the request is not lost.
REVOKE_FINALIZER = "certsmith.dev/revocation"
# Reasons saying the key is known to others: a re-issue must not certify the same key again.
KEY_COMPROMISE_REASONS = ("keyCompromise", "cACompromise")
# The Events that say what became of a revocation request (the plugin's --wait reads them).
REVOKED_EVENT = "Revoked"
INVALID_REVOCATION_EVENT = "InvalidRevocation"
RECORD_FULL_EVENT = "RevocationRecordFull"
BUNDLE_ANNOTATION = BUNDLE_LABEL

# --- pods and workloads ------------------------------------------------------------------
INJECT_LABEL = "certsmith.dev/inject"
INJECT_CERTIFICATE_ANNOTATION = "certsmith.dev/certificate"
IDENTITY_ANNOTATION = "certsmith.dev/identity"
DNS_NAMES_ANNOTATION = "certsmith.dev/dns-names"
MOUNT_PATH_ANNOTATION = "certsmith.dev/mount-path"
KEY_MODE_ANNOTATION = "certsmith.dev/key-mode"
# On an identity Certificate: the service account it was made for.
IDENTITY_LABEL = "certsmith.dev/service-account"
RESTART_ANNOTATION = "certsmith.dev/restart-on-rotation"
ROTATED_ANNOTATION = "certsmith.dev/rotated-secret"

# --- Kubernetes pod certificates (KEP-4317) ----------------------------------------------
CERTIFICATES_GROUP = "certificates.k8s.io"
POD_CERTIFICATE_REQUESTS = "podcertificaterequests"
CLUSTER_TRUST_BUNDLES = "clustertrustbundles"
CERTIFICATE_SIGNING_REQUESTS = "certificatesigningrequests"
"""certificates.k8s.io/v1, cluster-scoped: certsmith signs those of its signers."""
POD_CERTIFICATE_VERSIONS = ("v1", "v1beta1")
"""Versions of the two APIs certsmith speaks, preferred first: v1 (GA in Kubernetes 1.37),
v1beta1 (1.35 and 1.36, behind feature gates)."""


def signer_name(authority: str) -> str:
    """The signerName of CertificateAuthority `authority` in PodCertificateRequests,
    CertificateSigningRequests and ClusterTrustBundles: `certsmith.dev/<authority>` (a signer
    name is `<domain>/<path>`; authority names are RFC 1123 subdomains, so always a valid
    path)."""
    return f"{GROUP}/{authority}"


def signer_authority(signer: str) -> str | None:
    """The authority a signerName names (inverse of `signer_name`), None for another signer
    (`kubernetes.io/...`, another vendor's, or a deeper path certsmith never hands out)."""
    prefix = f"{GROUP}/"
    if not signer.startswith(prefix):
        return None
    authority = signer[len(prefix) :]
    return authority if authority and "/" not in authority else None
