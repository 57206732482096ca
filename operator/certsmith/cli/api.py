"""The plugin's apiserver access: kubeconfig, context and namespace chosen as kubectl does.

Bodies stay plain JSON dicts, as the apiserver sends them, so what `-o json` prints is
what the API holds. Every failure becomes a CliError with a sentence naming the object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import urllib3
from kubernetes import client, config

from certsmith.api import names

GROUP_PATH = f"/apis/{names.GROUP}/{names.VERSION}"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT_SECONDS = 30.0  # the whole call, connect and read: a person is waiting
DEFAULT_KUBECONFIG = "~/.kube/config"


class CliError(Exception):
    """A problem to tell the user in one sentence; the plugin exits 1 without a traceback."""


class Conflict(CliError):
    """The object changed since it was read (409): read it again."""


class NotFound(CliError):
    """The apiserver answered 404 for the object named in the message."""


def _collection(plural: str, namespace: str | None) -> tuple[str, str]:
    """The API path of certsmith.dev's `plural` in `namespace` (every namespace when None),
    and where that is, for messages."""
    if namespace is None:
        return f"{GROUP_PATH}/{plural}", "in any namespace"
    return f"{GROUP_PATH}/namespaces/{_segment(namespace)}/{plural}", f"in namespace {namespace}"


def _segment(name: str) -> str:
    # Names come from the command line: keep "/" or "?" in them from changing the path.
    return quote(name, safe="")


def _context_namespace(kubeconfig: str, context: str | None) -> str | None:
    """The namespace the chosen (or current) kubeconfig context sets, if any."""
    contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = (
        current
        if context is None
        else next((c for c in contexts if c.get("name") == context), None)
    )
    return ((chosen or {}).get("context") or {}).get("namespace") or None


class Connection(NamedTuple):
    """What `connect` found: a client, and the namespace commands act in without -n."""

    api_client: client.ApiClient
    namespace: str


def connect(*, kubeconfig: str | None, context: str | None) -> Connection:
    """An ApiClient and the default namespace, from --kubeconfig, KUBECONFIG or ~/.kube/config
    (KUBECONFIG may list several files, the first existing one is read), with `context` or
    the current context; the namespace is the context's, else "default".

    Inside a pod without any kubeconfig, the pod's service account is used, as kubectl does.
    CliError when no kubeconfig exists or it cannot be loaded.
    """
    path = kubeconfig or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    existing = [p for p in path.split(os.pathsep) if p and os.path.exists(os.path.expanduser(p))]
    configuration = client.Configuration()
    if not existing:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
            return Connection(client.ApiClient(configuration), _incluster_namespace())
        raise CliError(f"no kubeconfig found at {path}; pass --kubeconfig or set KUBECONFIG")
    try:
        config.load_kube_config(
            config_file=path,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
        namespace = _context_namespace(path, context) or "default"
    except config.ConfigException as error:
        raise CliError(f"kubeconfig {path}: {error}") from None
    return Connection(client.ApiClient(configuration), namespace)


def _incluster_namespace() -> str:
    """The pod's namespace, as its service account token's mount states it."""
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
            return handle.read().strip() or "default"
    except OSError:
        return "default"


class Api:
    """The handful of reads and annotation patches the plugin's commands need.

    Bodies are the apiserver's JSON objects. Every failure is a CliError naming the object:
    NotFound for 404, CliError for any other refusal, or when the apiserver cannot be
    reached within REQUEST_TIMEOUT_SECONDS. Annotations are written with a JSON merge patch
    (RFC 7386): other annotations stay, no resourceVersion precondition.
    """

    def __init__(self, api_client: client.ApiClient, default_namespace: str) -> None:
        self._api = api_client
        self.default_namespace = default_namespace

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: Mapping[str, Any] | None = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        """One API call; `what` names the object for error messages ("Certificate web in ...")."""
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            header_params={"Content-Type": content_type, "Accept": JSON},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(*request, _request_timeout=REQUEST_TIMEOUT_SECONDS)
            data = response.read()
        except (urllib3.exceptions.HTTPError, client.ApiException) as error:
            host = self._api.configuration.host
            raise CliError(f"cannot reach the apiserver at {host}: {_first_line(error)}") from None
        if 200 <= response.status < 300:
            answer: dict[str, Any] = json.loads(data or b"{}")
            return answer
        try:
            detail = json.loads(data or b"{}")
        except ValueError:
            detail = {}
        message = str(detail.get("message") or response.reason)
        if response.status == 404:
            raise NotFound(f"{what} not found")
        if response.status == 409:
            raise Conflict(f"{what} changed meanwhile: {message}")
        raise CliError(f"{what}: the apiserver answered {response.status}: {message}")

    # --- Certificates --------------------------------------------------------------------

    def list_certificates(self, namespace: str | None) -> list[dict[str, Any]]:
        """Certificates in `namespace`, or in every namespace when it is None."""
        path, where = _collection(names.CERTIFICATES, namespace)
        try:
            return _items(self._request("GET", path, what=f"Certificates {where}"))
        except NotFound:
            raise CliError(
                "the apiserver does not serve certificates.certsmith.dev: "
                "are certsmith's CRDs installed (kubectl apply -f crds/)?"
            ) from None

    def get_certificate(self, namespace: str, name: str) -> dict[str, Any]:
        """The Certificate; NotFound if there is none."""
        path = f"{GROUP_PATH}/namespaces/{_segment(namespace)}/certificates/{_segment(name)}"
        return self._request("GET", path, what=f'Certificate "{name}" in namespace {namespace}')

    def annotate_certificate(
        self,
        namespace: str,
        name: str,
        annotations: Mapping[str, str | None],
        *,
        finalizers: Sequence[str] | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Set `annotations` (None removes one) and, when given, `finalizers` (the whole
        list) on the Certificate, on condition that it is still at `resource_version` when
        given (Conflict otherwise); the stored Certificate."""
        path = f"{GROUP_PATH}/namespaces/{_segment(namespace)}/certificates/{_segment(name)}"
        return self._request(
            "PATCH",
            path,
            what=f'Certificate "{name}" in namespace {namespace}',
            body={"metadata": _metadata_patch(annotations, finalizers, resource_version)},
            content_type=MERGE_PATCH,
        )

    # --- CertificateRequests -------------------------------------------------------------

    def list_certificate_requests(self, namespace: str | None) -> list[dict[str, Any]]:
        """CertificateRequests in `namespace`, or in every namespace when it is None; []
        when the cluster has no such resource (an install without its CRD)."""
        path, where = _collection(names.CERTIFICATE_REQUESTS, namespace)
        try:
            return _items(self._request("GET", path, what=f"CertificateRequests {where}"))
        except NotFound:
            return []

    def get_certificate_request(self, namespace: str, name: str) -> dict[str, Any]:
        """The CertificateRequest; NotFound if there is none."""
        return self._request(
            "GET",
            _request_path(namespace, name),
            what=f'CertificateRequest "{name}" in namespace {namespace}',
        )

    def annotate_certificate_request(
        self,
        namespace: str,
        name: str,
        annotations: Mapping[str, str | None],
        *,
        finalizers: Sequence[str] | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Set `annotations` (None removes one) and, when given, `finalizers` on the
        request, as annotate_certificate; the stored request."""
        return self._request(
            "PATCH",
            _request_path(namespace, name),
            what=f'CertificateRequest "{name}" in namespace {namespace}',
            body={"metadata": _metadata_patch(annotations, finalizers, resource_version)},
            content_type=MERGE_PATCH,
        )

    def patch_certificate_request_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Merge `status` into the request's status subresource, on condition that it is
        still at `resource_version` (CliError "409" otherwise); the stored request."""
        return self._request(
            "PATCH",
            _request_path(namespace, name) + "/status",
            what=f'CertificateRequest "{name}" in namespace {namespace}',
            body={"metadata": {"resourceVersion": resource_version}, "status": dict(status)},
            content_type=MERGE_PATCH,
        )

    # --- CertificateAuthorities ----------------------------------------------------------

    def list_authorities(self) -> list[dict[str, Any]]:
        """Every CertificateAuthority; CliError if the CRD is not installed."""
        try:
            path = f"{GROUP_PATH}/certificateauthorities"
            return _items(self._request("GET", path, what="CertificateAuthorities"))
        except NotFound:
            raise CliError(
                "the apiserver does not serve certificateauthorities.certsmith.dev: "
                "are certsmith's CRDs installed (kubectl apply -f crds/)?"
            ) from None

    def get_authority(self, name: str) -> dict[str, Any]:
        """The CertificateAuthority; NotFound if there is none."""
        path = f"{GROUP_PATH}/certificateauthorities/{_segment(name)}"
        return self._request("GET", path, what=f'CertificateAuthority "{name}"')

    def annotate_authority(self, name: str, annotations: Mapping[str, str]) -> dict[str, Any]:
        """Set `annotations` on the CertificateAuthority; the stored one is returned."""
        return self._request(
            "PATCH",
            f"{GROUP_PATH}/certificateauthorities/{_segment(name)}",
            what=f'CertificateAuthority "{name}"',
            body={"metadata": {"annotations": dict(annotations)}},
            content_type=MERGE_PATCH,
        )

    # --- discovery -----------------------------------------------------------------------

    def served_version(self, group: str, resource: str, versions: Sequence[str]) -> str | None:
        """The first of `versions` (preferred first) in which the apiserver serves `resource`
        of `group` (`/apis/<group>/<version>` discovery), None if none does."""
        for version in versions:
            try:
                found = self._request(
                    "GET", f"/apis/{group}/{version}", what=f"API group {group}/{version}"
                )
            except NotFound:
                continue
            if any(entry.get("name") == resource for entry in found.get("resources") or []):
                return version
        return None

    # --- core objects --------------------------------------------------------------------

    def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        """The Secret (data base64-encoded); NotFound if there is none."""
        path = f"/api/v1/namespaces/{_segment(namespace)}/secrets/{_segment(name)}"
        return self._request("GET", path, what=f'Secret "{name}" in namespace {namespace}')

    def list_events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The namespace's Events about objects named `name` (any kind)."""
        path = (
            f"/api/v1/namespaces/{_segment(namespace)}/events"
            f"?fieldSelector=involvedObject.name%3D{_segment(name)}"
        )
        return _items(self._request("GET", path, what=f"Events in namespace {namespace}"))

    def list_trust_bundles(self, namespace: str, authority: str) -> list[dict[str, Any]]:
        """The namespace's trust-bundle ConfigMaps of `authority` (label
        api.names.BUNDLE_LABEL=<authority>; CliError when RBAC forbids listing them)."""
        path = (
            f"/api/v1/namespaces/{_segment(namespace)}/configmaps"
            f"?labelSelector={quote(names.BUNDLE_LABEL, safe='')}%3D{_segment(authority)}"
        )
        return _items(self._request("GET", path, what=f"ConfigMaps in namespace {namespace}"))

    def list_pods(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's Pods (CliError when RBAC forbids listing them)."""
        path = f"/api/v1/namespaces/{_segment(namespace)}/pods"
        return _items(self._request("GET", path, what=f"Pods in namespace {namespace}"))


def _request_path(namespace: str, name: str) -> str:
    return (
        f"{GROUP_PATH}/namespaces/{_segment(namespace)}/"
        f"{names.CERTIFICATE_REQUESTS}/{_segment(name)}"
    )


def _items(listing: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `items` of a list answer, [] when it has none."""
    return list(listing.get("items") or [])


def _first_line(error: Exception) -> str:
    """The first line of the error's reason (urllib3 errors nest long explanations)."""
    text = str(getattr(error, "reason", None) or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _metadata_patch(
    annotations: Mapping[str, str | None],
    finalizers: Sequence[str] | None,
    resource_version: str | None,
) -> dict[str, Any]:
    """A merge patch's metadata: `annotations`, the whole `finalizers` list (a merge patch
    replaces lists) and a resourceVersion precondition, each when given."""
    metadata: dict[str, Any] = {"annotations": dict(annotations)}
    if finalizers is not None:
        metadata["finalizers"] = list(finalizers)
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return metadata
