"""Which pod-certificate API versions the apiserver under test serves (discovery), so the
tests run unchanged on Kubernetes 1.37 (certificates.k8s.io/v1) and 1.35/1.36 (v1beta1)."""

from __future__ import annotations

from kubernetes import client

from certsmith.api import names


def served_version(api_client: client.ApiClient, resource: str) -> str | None:
    """The first of names.POD_CERTIFICATE_VERSIONS serving `resource` of certificates.k8s.io,
    None if none does."""
    for version in names.POD_CERTIFICATE_VERSIONS:
        try:
            found = client.CustomObjectsApi(api_client).get_api_resources(
                names.CERTIFICATES_GROUP, version
            )
        except client.ApiException as error:
            if error.status == 404:
                continue
            raise
        if any(entry.name == resource for entry in found.resources or []):
            return version
    return None
