"""Which pod-certificate APIs the cluster serves, found once at start by discovery.

Kubernetes 1.37 serves PodCertificateRequest and ClusterTrustBundle in
`certificates.k8s.io/v1` (GA, on by default); 1.35 and 1.36 serve them in `v1beta1` only
behind the PodCertificateRequest / ClusterTrustBundle feature gates and runtime-config, off by
default. Where an API is not served, certsmith does without it and says so once.
"""

from __future__ import annotations

from dataclasses import dataclass

from certsmith.api import names


@dataclass(frozen=True)
class PodCertificateApis:
    """The served version of each API ("v1", "v1beta1"), None where it is not served."""

    requests: str | None
    """`podcertificaterequests.certificates.k8s.io`: certsmith signs them when served."""
    bundles: str | None
    """`clustertrustbundles.certificates.k8s.io`: certsmith publishes its roots when served."""

    def unserved(self) -> list[str]:
        """One sentence per API the cluster does not serve, saying what is lost and how to
        turn it on; empty when both are served."""
        how = (
            "on Kubernetes 1.35/1.36 enable the PodCertificateRequest, ClusterTrustBundle and "
            "ClusterTrustBundleProjection feature gates and --runtime-config="
            "certificates.k8s.io/v1beta1/podcertificaterequests=true,"
            "certificates.k8s.io/v1beta1/clustertrustbundles=true (1.37 serves them by default)"
        )
        missing = []
        if self.requests is None:
            missing.append(
                f"{names.POD_CERTIFICATE_REQUESTS}.{names.CERTIFICATES_GROUP} is not served: "
                f"certsmith signs no pod certificates ({how})"
            )
        if self.bundles is None:
            missing.append(
                f"{names.CLUSTER_TRUST_BUNDLES}.{names.CERTIFICATES_GROUP} is not served: "
                f"certsmith publishes no ClusterTrustBundles ({how})"
            )
        return missing
