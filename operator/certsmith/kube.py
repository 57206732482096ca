"""The operator's only Kubernetes API client: plain JSON in and out, no model classes.

Bodies stay dicts: decoding into the client library's generated models costs more CPU
than issuing a certificate. The connection pool size is set deliberately (Config) so a
burst of issuances queues here instead of opening hundreds of connections.

Conventions of every `Kube` method (each method's docstring says only what is its own):

- Bodies are Kubernetes objects as JSON: `Mapping[str, Any]` in, `dict[str, Any]` out
  (a fresh dict the caller owns). A write returns the object as the apiserver stored it,
  with its new `metadata.resourceVersion`.
- `get_*` return the object, or None when the apiserver answers 404 (the object, or its
  namespace, does not exist). `list_*` return the list's `items`, possibly empty.
- Any other answer outside 2xx raises `ApiError` carrying the HTTP status and the
  apiserver's Status `reason` and `message`: 403 (RBAC), 404 (writes to something absent),
  409 (`AlreadyExists` on create, `Conflict` on a stale resourceVersion), 422 (`Invalid`,
  also an update of an immutable Secret or ConfigMap), 429 and 5xx (overloaded, an admission
  webhook failing).
- `ApiError.status == 0` (reason "Unreachable") means no answer came: connection refused or
  reset, TLS failure, or a connect or read timeout (`Timeout`). The pool's idle connections
  are dropped, so the caller's retry dials anew. Whether the request reached the apiserver
  is unknown: a write may have happened. Only connection setup is retried here (`RETRIES`);
  every other retry is the caller's.
- Writes: `create_*` POST (409 `AlreadyExists` when the name is taken). `replace_*` PUT the
  whole object, with the body's `metadata.resourceVersion` as the precondition (409
  `Conflict` when the object changed since it was read; without one, Secrets, ConfigMaps
  and webhook configurations are written unconditionally). `patch_*` send a JSON merge
  patch (RFC 7386: a key replaces, `null` deletes, a list is replaced whole), unconditional
  unless the patch itself carries `metadata.resourceVersion`. `*_status` patches go to the
  status subresource: the spec and `metadata.generation` stay as they are.
- Watches yield watch events, `{"type": "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" |
  "ERROR", "object": {...}}`, until the apiserver ends the stream (`timeoutSeconds`), or
  raise ApiError (status 0) once the stream is silent for longer than the read timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from typing import Any, NamedTuple, Protocol

import urllib3
from kubernetes import client, config
from kubernetes.client import rest

from certsmith.api import names

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# The install's webhook configurations whose caBundle certsmith keeps
# (admissionregistration.k8s.io/v1), by kind.
_ADMISSION_PLURALS = {
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
    "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
}
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
GONE = 410
"""A watch's resourceVersion older than the apiserver still has events for: some are lost,
the collection must be listed again."""
NAMESPACE_TERMINATING = "NamespaceTerminating"
"""k8s.io/api/core/v1.NamespaceTerminatingCause, a cause of the 403 a create in a namespace
being deleted gets."""

logger = logging.getLogger(__name__)


class Timeout(NamedTuple):
    """How long one call may wait, in seconds: to connect, and for the next bytes of the
    answer (not for the whole answer, so a long list still streams in)."""

    connect_seconds: float
    read_seconds: float


# A connection that died silently must fail a call, not hang a worker thread forever (the
# client has no timeout by default).
REQUEST_TIMEOUT = Timeout(connect_seconds=5.0, read_seconds=15.0)
# Connections may be retried (nothing was sent yet); reads may not: a read that timed out
# went over a dead path, and the next pooled connection most likely took the same one.
# A 429 or 503 with Retry-After is the caller's to retry: urllib3 would otherwise turn it
# into "too many 429 error responses", an ApiError claiming no answer came.
RETRIES = urllib3.Retry(
    total=3,
    connect=3,
    read=0,
    status=0,
    redirect=0,
    other=0,
    respect_retry_after_header=False,
)


class Listing(NamedTuple):
    """A list answer: its `items` and the list's `metadata.resourceVersion`, from which a
    watch sees every change after the list."""

    items: list[dict[str, Any]]
    resource_version: str


class ApiError(Exception):
    """A non-2xx answer from the apiserver, or none at all (`status` 0, reason "Unreachable").

    `status` is the HTTP status; `reason` and `message` are those of the Status object the
    apiserver sent (e.g. "Conflict", "AlreadyExists", "Forbidden"), else the HTTP reason
    and the first 200 bytes of the answer.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        causes: tuple[str, ...] = (),
        details_kind: str = "",
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = causes
        """The `details.causes[].reason` of the Status (e.g. "NamespaceTerminating")."""
        self.details_kind = details_kind
        """The Status's `details.kind`: the resource it is about ("namespaces" when a
        request's namespace does not exist)."""

    @classmethod
    def from_answer(cls, status: int, http_reason: str, data: bytes) -> ApiError:
        """The error an answer outside 2xx stands for: `data` is its body, a Status object
        (meta/v1) when the apiserver sent one, else anything (its first 200 bytes become
        the message)."""
        try:
            detail = json.loads(data or b"{}")
        except ValueError:
            detail = {}
        if not isinstance(detail, dict):
            detail = {}
        details = detail.get("details") or {}
        return cls(
            status,
            str(detail.get("reason") or http_reason),
            str(detail.get("message") or data[:200]),
            tuple(str(cause.get("reason") or "") for cause in details.get("causes") or []),
            str(details.get("kind") or ""),
        )

    @property
    def not_found(self) -> bool:
        """404: the object (or its namespace) does not exist."""
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: a create found the name taken, or a precondition found a newer version."""
        return self.status == 409

    @property
    def namespace_closed(self) -> bool:
        """A create refused because its namespace is being deleted (403 from the
        NamespaceLifecycle admission plugin, Status cause "NamespaceTerminating") or is
        gone (404 about the namespace itself, not the object)."""
        if self.status == 403:
            return NAMESPACE_TERMINATING in self.causes
        return self.status == 404 and self.details_kind == "namespaces"


class ClaimLapsed(ApiError):
    """A write not sent: this replica's claim on the Lease lapsed (a fenced Kube, see
    `Kube.fenced`), another replica may lead now. Nothing reached the apiserver; the new
    leader does the work, or this one once a late renewal restores the claim."""

    def __init__(self) -> None:
        super().__init__(
            0,
            "ClaimLapsed",
            "not written: this replica's claim on the Lease lapsed, another replica may lead",
        )


class KubeconfigError(Exception):
    """Outside a cluster, no usable kubeconfig: the message says which file and why."""


FIELD_MANAGER = "certsmith"
"""Who certsmith's own writes are in managedFields (kopf's are "kopf")."""


def new_api_client(*, kubeconfig: str | None, pool_size: int) -> client.ApiClient:
    """An ApiClient for in-cluster use, or for the given/default kubeconfig.

    `kubeconfig` None: the pod's service account, else the default kubeconfig
    (`$KUBECONFIG`, `~/.kube/config`). At most `pool_size` connections are kept open.
    Raises KubeconfigError when neither can be loaded (a file missing, a directory, not
    YAML, no cluster in it).
    """
    configuration = client.Configuration()
    try:
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    # The loader fails with whatever the file's contents trip over, not only its own error.
    except (config.ConfigException, OSError, ValueError, TypeError, AttributeError) as error:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise KubeconfigError(
            f"kubeconfig {where!r} (CERTSMITH_OPERATOR_KUBECONFIG, else KUBECONFIG) cannot "
            f"be used: {error}"
        ) from None
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = RETRIES
    api = client.ApiClient(configuration)
    # kube-apiserver names the field manager of a write without one after the User-Agent (up
    # to its first "/"): "certsmith" in managedFields, what GitOps tools' ignore rules name.
    api.user_agent = f"{FIELD_MANAGER}/{metadata.version('certsmith')}"
    return api


class Kube:
    """The operator's API calls, each bounded by `timeout`; the conventions are the module's.

    Thread-safe: calls share the ApiClient's connection pool.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        timeout: Timeout = REQUEST_TIMEOUT,
        fence: Callable[[], bool] | None = None,
    ) -> None:
        self._api = api_client
        self._timeout = timeout
        self._fence = fence

    def with_timeout(self, timeout: Timeout) -> Kube:
        """The same client and connections, with a shorter fuse (the Lease campaign)."""
        return Kube(self._api, timeout=timeout, fence=self._fence)

    def fenced(self, may_write: Callable[[], bool]) -> Kube:
        """The same client and connections, sending a write (any method but GET) only while
        `may_write()`, else raising ClaimLapsed: the Lease holder's controller writes
        through it, so a leader woken from a pause (SIGSTOP, a frozen VM) past its claim
        writes nothing, whichever part of it wakes first."""
        return Kube(self._api, timeout=self._timeout, fence=may_write)

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        content_type: str = JSON,
        query: Mapping[str, str] | None = None,
        accept: str = JSON,
    ) -> rest.RESTResponse:
        """The response, its body not read yet; ApiError for a status outside 2xx,
        ClaimLapsed for a write a fence holds back."""
        if method != "GET" and self._fence is not None and not self._fence():
            raise ClaimLapsed
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": accept},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request, _request_timeout=self._timeout)
        if not 200 <= response.status < 300:
            raise ApiError.from_answer(int(response.status), str(response.reason), response.read())
        return response

    @contextlib.contextmanager
    def _unreachable_is_an_api_error(self) -> Iterator[None]:
        """Turn a transport failure inside the block into ApiError status 0."""
        try:
            yield
        except (urllib3.exceptions.HTTPError, OSError) as error:
            # The apiserver is unreachable (restarting, network): an ApiError like any other,
            # so callers retry on their own short back-off rather than crash or stall. Idle
            # pooled connections went over the same path: drop them so the retry dials anew
            # instead of finding the next dead one.
            self._api.rest_client.pool_manager.clear()
            raise ApiError(0, "Unreachable", str(error)) from None

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        content_type: str = JSON,
        query: Mapping[str, str] | None = None,
        accept: str = JSON,
    ) -> dict[str, Any]:
        """The JSON object answered (`{}` for an empty answer); ApiError as the module says,
        ValueError for a 2xx answer that is not JSON."""
        with self._unreachable_is_an_api_error():
            response = self._send(
                method, path, body=body, content_type=content_type, query=query, accept=accept
            )
            data = response.read()
        answer: dict[str, Any] = json.loads(data or b"{}")
        return answer

    def _items(self, path: str, query: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The `items` of a list answer, [] when it has none."""
        return list(self._call("GET", path, query=query).get("items") or [])

    def _watch(
        self, path: str, query: Mapping[str, str], accept: str = JSON
    ) -> Iterator[dict[str, Any]]:
        """Watch events until the apiserver ends the stream; a silence longer than the read
        timeout ends it too (ApiError), so a dead stream is never waited on for long."""
        with self._unreachable_is_an_api_error():
            response = self._send("GET", path, query={**query, "watch": "true"}, accept=accept)
            for line in response.response:
                if line.strip():
                    event: dict[str, Any] = json.loads(line)
                    yield event

    def _get_or_none(self, path: str) -> dict[str, Any] | None:
        """GET `path`; None for 404."""
        try:
            return self._call("GET", path)
        except ApiError as error:
            if error.not_found:
                return None
            raise

    # --- discovery -------------------------------------------------------------------

    def served_version(self, *, group: str, resource: str, versions: Sequence[str]) -> str | None:
        """The first of `versions` (preferred first) in which the apiserver serves
        `resource` of `group` (from `/apis/<group>/<version>` discovery), None if none does:
        an API behind an off feature gate or runtime-config is simply absent there. Other
        errors (unreachable, 403) raise ApiError."""
        for version in versions:
            found = self._get_or_none(f"/apis/{group}/{version}")
            resources = (found or {}).get("resources") or []
            if any(entry.get("name") == resource for entry in resources):
                return version
        return None

    # --- Secrets ---------------------------------------------------------------------

    def get_secret(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret (its `data` base64-encoded, as stored), or None."""
        return self._get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{name}")

    def create_secret(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST into `body.metadata.namespace`; 409 AlreadyExists when the name is taken."""
        namespace = body["metadata"]["namespace"]
        return self._call("POST", f"/api/v1/namespaces/{namespace}/secrets", body=body)

    def replace_secret(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT with the body's resourceVersion: 409 Conflict if someone wrote in between,
        422 if the stored Secret is immutable."""
        metadata = body["metadata"]
        path = f"/api/v1/namespaces/{metadata['namespace']}/secrets/{metadata['name']}"
        return self._call("PUT", path, body=body)

    def patch_secret(
        self, *, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the Secret (a `metadata.resourceVersion` in `patch` is a precondition:
        409 Conflict if it changed); 404 ApiError if it does not exist."""
        path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
        return self._call("PATCH", path, body=patch, content_type=MERGE_PATCH)

    def delete_secret(
        self, *, namespace: str, name: str, resource_version: str | None = None
    ) -> None:
        """Delete, on condition that it is still at `resource_version` if one is given (409
        Conflict otherwise); a Secret already gone (404) is not an error."""
        body = None
        if resource_version is not None:
            body = {"preconditions": {"resourceVersion": resource_version}}
        try:
            self._call("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}", body=body)
        except ApiError as error:
            if not error.not_found:
                raise

    def iterate_secrets(self, *, label_selector: str, page_size: int) -> Iterator[dict[str, Any]]:
        """Secrets in every namespace matching `label_selector` (e.g. a bare key: carrying
        that label; certsmith never lists all Secrets), one page of at most `page_size` at a
        time (the list's `limit` and `continue`), so that only one page is held at once. A
        page token expired meanwhile (410) raises ApiError like any failed list."""
        query = {"labelSelector": label_selector, "limit": str(page_size)}
        while True:
            answer = self._call("GET", "/api/v1/secrets", query=query)
            yield from answer.get("items") or []
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                return
            query = {**query, "continue": str(token)}

    def list_secrets_metadata(self, *, label_selector: str) -> Listing:
        """The metadata of the Secrets in every namespace matching `label_selector`, each
        item `{"metadata": {...}}` (a PartialObjectMetadataList: no data, a fraction of the
        bytes of the Secrets themselves), and the list's resourceVersion, to watch from."""
        answer = self._call(
            "GET", "/api/v1/secrets", query={"labelSelector": label_selector}, accept=METADATA_LIST
        )
        return Listing(
            items=list(answer.get("items") or []),
            resource_version=str((answer.get("metadata") or {}).get("resourceVersion") or ""),
        )

    def watch_secrets_metadata(
        self, *, label_selector: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        """Watch events of the Secrets in every namespace matching `label_selector`, each
        object only its metadata (PartialObjectMetadata), from `resource_version` (every
        change after it, in order), with BOOKMARK events; a Secret that stops matching comes
        as DELETED. Ends as `watch_secrets` does."""
        query = {
            "labelSelector": label_selector,
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
            "allowWatchBookmarks": "true",
        }
        return self._watch("/api/v1/secrets", query, accept=METADATA_WATCH)

    def list_secrets_in(self, *, namespace: str) -> Listing:
        """Every Secret of one namespace (the operator's: CA keys only) and the list's
        resourceVersion, to watch from."""
        answer = self._call("GET", f"/api/v1/namespaces/{namespace}/secrets")
        return Listing(
            items=list(answer.get("items") or []),
            resource_version=str((answer.get("metadata") or {}).get("resourceVersion") or ""),
        )

    def watch_secrets(
        self, *, namespace: str, resource_version: str | None, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        """Watch events of the Secrets in one namespace (the operator's: CA keys only), from
        `resource_version` (None: the current state as ADDED events first), with BOOKMARK
        events (only `metadata.resourceVersion`) that keep a quiet watch's version recent.
        The apiserver ends the stream after `timeout_seconds`; a version too old for it is
        an ERROR event (410 Gone), after which the caller starts again from a list."""
        query = {"timeoutSeconds": str(timeout_seconds), "allowWatchBookmarks": "true"}
        if resource_version:
            query["resourceVersion"] = resource_version
        return self._watch(f"/api/v1/namespaces/{namespace}/secrets", query)

    # --- namespaces, CRDs and trust-bundle ConfigMaps -----------------------------------

    def list_namespaces(self) -> list[dict[str, Any]]:
        """Every namespace, those being deleted included (`metadata.deletionTimestamp`)."""
        return self._items("/api/v1/namespaces")

    def get_namespace(self, *, name: str) -> dict[str, Any] | None:
        """The namespace (its labels are what grants and bundle selectors match), or None."""
        return self._get_or_none(f"/api/v1/namespaces/{name}")

    def get_service_account(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The ServiceAccount, or None (also when its namespace does not exist)."""
        return self._get_or_none(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")

    def get_namespace_labels(self, *, name: str) -> dict[str, str]:
        """The namespace's labels read now; empty when it has none or does not exist."""
        found = self.get_namespace(name=name) or {}
        return dict((found.get("metadata") or {}).get("labels") or {})

    def get_crd(self, *, name: str) -> dict[str, Any] | None:
        """A CustomResourceDefinition by its name (`<plural>.<group>`), or None."""
        return self._get_or_none(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")

    def list_crds(self, *, label_selector: str) -> list[dict[str, Any]]:
        """The CustomResourceDefinitions matching `label_selector`."""
        return self._items(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            {"labelSelector": label_selector},
        )

    def list_configmaps(self, *, name: str) -> list[dict[str, Any]]:
        """The ConfigMaps called `name` in every namespace, whatever their labels."""
        return self._items("/api/v1/configmaps", {"fieldSelector": f"metadata.name={name}"})

    def get_configmap(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConfigMap, or None."""
        return self._get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    def put_configmap(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create (POST, when the body has no resourceVersion: 409 AlreadyExists if one was
        created meanwhile), or replace (PUT with the body's resourceVersion: 409 Conflict if
        it changed meanwhile)."""
        metadata = body["metadata"]
        collection = f"/api/v1/namespaces/{metadata['namespace']}/configmaps"
        if metadata.get("resourceVersion"):
            return self._call("PUT", f"{collection}/{metadata['name']}", body=body)
        return self._call("POST", collection, body=body)

    # --- ClusterTrustBundles (cluster-scoped) ---------------------------------------------

    def get_cluster_trust_bundle(self, *, version: str, name: str) -> dict[str, Any] | None:
        """The ClusterTrustBundle in `certificates.k8s.io/<version>` (the served one), or None."""
        return self._get_or_none(
            f"/apis/{names.CERTIFICATES_GROUP}/{version}/{names.CLUSTER_TRUST_BUNDLES}/{name}"
        )

    def put_cluster_trust_bundle(self, *, version: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create (POST, when the body has no resourceVersion: 409 AlreadyExists if one was
        created meanwhile), or replace (PUT with the body's resourceVersion: 409 Conflict if
        it changed meanwhile). 403 without `attest` on the body's signer name."""
        collection = f"/apis/{names.CERTIFICATES_GROUP}/{version}/{names.CLUSTER_TRUST_BUNDLES}"
        metadata = body["metadata"]
        if metadata.get("resourceVersion"):
            return self._call("PUT", f"{collection}/{metadata['name']}", body=body)
        return self._call("POST", collection, body=body)

    # --- certsmith resources -------------------------------------------------------------

    def get_certificate(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The Certificate, or None."""
        path = f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{namespace}/certificates/{name}"
        return self._get_or_none(path)

    def list_certificates(self, *, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every Certificate, or those of `namespace`."""
        where = f"namespaces/{namespace}/" if namespace else ""
        return self._items(f"/apis/{names.GROUP}/{names.VERSION}/{where}certificates")

    def create_certificate(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST into `body.metadata.namespace`; 409 AlreadyExists when the name is taken."""
        namespace = body["metadata"]["namespace"]
        path = f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{namespace}/certificates"
        return self._call("POST", path, body=body)

    def patch_certificate_status(
        self, *, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge `status` into the Certificate's status subresource (a key set to None is
        removed); 404 ApiError if the Certificate is gone."""
        path = (
            f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{namespace}/certificates/{name}/status"
        )
        return self._call("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)

    def list_certificate_requests(self) -> list[dict[str, Any]]:
        """Every CertificateRequest, in every namespace."""
        return self._items(f"/apis/{names.GROUP}/{names.VERSION}/{names.CERTIFICATE_REQUESTS}")

    def get_certificate_request(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The CertificateRequest, or None."""
        return self._get_or_none(self._certificate_request_path(namespace, name))

    def patch_certificate_request_status(
        self, *, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Merge `status` into the CertificateRequest's status subresource, on condition
        that it is still at `resource_version` (409 Conflict otherwise: a request is signed
        once, never from a stale read); 404 ApiError if it is gone."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        path = self._certificate_request_path(namespace, name) + "/status"
        return self._call("PATCH", path, body=body, content_type=MERGE_PATCH)

    def patch_annotations(
        self,
        *,
        plural: str,
        namespace: str | None,
        name: str,
        annotations: Mapping[str, str | None],
    ) -> dict[str, Any]:
        """Merge `annotations` (None removes a key) into a certsmith object of `plural`
        (namespaced when `namespace` is given); 404 ApiError if it is gone."""
        where = f"namespaces/{namespace}/" if namespace else ""
        path = f"/apis/{names.GROUP}/{names.VERSION}/{where}{plural}/{name}"
        body = {"metadata": {"annotations": dict(annotations)}}
        return self._call("PATCH", path, body=body, content_type=MERGE_PATCH)

    def remove_finalizer(
        self,
        *,
        plural: str,
        namespace: str | None,
        name: str,
        finalizers: Sequence[str],
        finalizer: str,
    ) -> dict[str, Any]:
        """Remove `finalizer` from a certsmith object of `plural` whose finalizers were read
        as `finalizers` (RFC 6902 test then remove at its index: 422 ApiError when the list
        changed meanwhile, so nobody else's finalizer is ever removed); 404 if it is gone."""
        where = f"namespaces/{namespace}/" if namespace else ""
        path = f"/apis/{names.GROUP}/{names.VERSION}/{where}{plural}/{name}"
        at = f"/metadata/finalizers/{list(finalizers).index(finalizer)}"
        body = [{"op": "test", "path": at, "value": finalizer}, {"op": "remove", "path": at}]
        return self._call("PATCH", path, body=body, content_type=JSON_PATCH)

    @staticmethod
    def _certificate_request_path(namespace: str, name: str) -> str:
        return (
            f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{namespace}/"
            f"{names.CERTIFICATE_REQUESTS}/{name}"
        )

    def get_authority(self, *, name: str) -> dict[str, Any] | None:
        """The CertificateAuthority (cluster-scoped), or None."""
        return self._get_or_none(
            f"/apis/{names.GROUP}/{names.VERSION}/certificateauthorities/{name}"
        )

    def list_authorities(self) -> list[dict[str, Any]]:
        """Every CertificateAuthority."""
        return self._items(f"/apis/{names.GROUP}/{names.VERSION}/certificateauthorities")

    def create_authority(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a CertificateAuthority; 409 AlreadyExists when the name is taken."""
        return self._call(
            "POST", f"/apis/{names.GROUP}/{names.VERSION}/certificateauthorities", body=body
        )

    def patch_authority_status(
        self, *, name: str, status: Mapping[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        """Merge `status` into the CertificateAuthority's status subresource (a key set to
        None is removed), on condition that the object is still at `resource_version` if one
        is given (409 Conflict otherwise; a uid in a merge patch is no precondition); 404
        ApiError if it is gone."""
        path = f"/apis/{names.GROUP}/{names.VERSION}/certificateauthorities/{name}/status"
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return self._call("PATCH", path, body=body, content_type=MERGE_PATCH)

    # --- pods, Services and PodCertificateRequests --------------------------------------

    def get_pod(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod, or None."""
        return self._get_or_none(f"/api/v1/namespaces/{namespace}/pods/{name}")

    def list_services(self, *, namespace: str) -> list[dict[str, Any]]:
        """The Services of one namespace."""
        return self._items(f"/api/v1/namespaces/{namespace}/services")

    def get_pod_certificate_request(
        self, *, version: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """The PodCertificateRequest as `certificates.k8s.io/<version>` serves it, or None."""
        return self._get_or_none(self._pod_certificate_request_path(version, namespace, name))

    def patch_pod_certificate_request_status(
        self, *, version: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge `status` into the request's status subresource. kube-apiserver refuses
        (422 Invalid) any change to a request already Issued, Denied or Failed, and (403 or
        422) a caller without `sign` on its signerName; 404 if it is gone."""
        path = self._pod_certificate_request_path(version, namespace, name) + "/status"
        return self._call("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)

    @staticmethod
    def _pod_certificate_request_path(version: str, namespace: str, name: str) -> str:
        return (
            f"/apis/{names.CERTIFICATES_GROUP}/{version}/namespaces/{namespace}/"
            f"{names.POD_CERTIFICATE_REQUESTS}/{name}"
        )

    # --- CertificateSigningRequests (certificates.k8s.io/v1, cluster-scoped) -------------

    def get_certificate_signing_request(self, *, name: str) -> dict[str, Any] | None:
        """The CertificateSigningRequest, or None."""
        return self._get_or_none(self._certificate_signing_request_path(name))

    def replace_certificate_signing_request_status(
        self, *, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PUT `body` (the CSR as read, its status changed) to the status subresource, on
        condition that it is still at the body's resourceVersion (409 Conflict otherwise).
        kube-apiserver keeps the spec and the Approved/Denied conditions as they are, refuses
        a change to a certificate already set (422), and a certificate from a caller without
        `sign` on the signerName (403); 404 if the CSR is gone."""
        path = self._certificate_signing_request_path(body["metadata"]["name"]) + "/status"
        return self._call("PUT", path, body=body)

    @staticmethod
    def _certificate_signing_request_path(name: str) -> str:
        return f"/apis/{names.CERTIFICATES_GROUP}/v1/{names.CERTIFICATE_SIGNING_REQUESTS}/{name}"

    # --- workloads ---------------------------------------------------------------------

    def list_workloads(self, *, namespace: str, plural: str) -> list[dict[str, Any]]:
        """The apps/v1 `plural` ("deployments", "statefulsets", "daemonsets") of a namespace."""
        return self._items(f"/apis/apps/v1/namespaces/{namespace}/{plural}")

    def patch_workload(
        self, *, namespace: str, plural: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch an apps/v1 workload (a pod-template change rolls its pods)."""
        path = f"/apis/apps/v1/namespaces/{namespace}/{plural}/{name}"
        return self._call("PATCH", path, body=patch, content_type=MERGE_PATCH)

    # --- admission configuration -------------------------------------------------------

    def get_webhook_configuration(self, *, kind: str, name: str) -> dict[str, Any] | None:
        """The `kind` (MutatingWebhookConfiguration or ValidatingWebhookConfiguration) called
        `name`, or None."""
        plural = _ADMISSION_PLURALS[kind]
        return self._get_or_none(f"/apis/admissionregistration.k8s.io/v1/{plural}/{name}")

    def patch_webhook_configuration(
        self, *, kind: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Strategic-merge-patch the `kind` called `name` (webhooks merge by name); ApiError
        404 when it is gone, 409 when `patch` carries a resourceVersion it no longer has."""
        path = f"/apis/admissionregistration.k8s.io/v1/{_ADMISSION_PLURALS[kind]}/{name}"
        return self._call("PATCH", path, body=patch, content_type=STRATEGIC_MERGE_PATCH)

    # --- leader election --------------------------------------------------------------

    def get_lease(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The coordination.k8s.io/v1 Lease, or None."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        return self._get_or_none(path)

    def watch_lease(
        self, *, namespace: str, name: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        """Watch events of the one Lease `name`, starting with its current state (ADDED);
        the apiserver ends the stream after `timeout_seconds`."""
        return self._watch(
            f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
            {"fieldSelector": f"metadata.name={name}", "timeoutSeconds": str(timeout_seconds)},
        )

    def create_lease(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST the Lease; 409 AlreadyExists when another replica created it first."""
        namespace = body["metadata"]["namespace"]
        return self._call(
            "POST", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases", body=body
        )

    def replace_lease(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the Lease with the body's resourceVersion: 409 Conflict when another replica
        wrote it since it was read (the campaign's compare-and-swap)."""
        metadata = body["metadata"]
        path = (
            f"/apis/coordination.k8s.io/v1/namespaces/{metadata['namespace']}"
            f"/leases/{metadata['name']}"
        )
        return self._call("PUT", path, body=body)

    # --- Events ----------------------------------------------------------------------

    def post_event(
        self,
        *,
        involved: Mapping[str, Any],
        event_type: str,
        reason: str,
        message: str,
        now: str,
        component: str,
    ) -> None:
        """Create a core/v1 Event about the object `involved` (as read: its apiVersion, kind
        and metadata name it), in its namespace ("default" for a cluster-scoped object), as
        `kubectl describe` shows them. `event_type` is "Normal" or "Warning"; `reason` one
        CamelCase word; `message` is cut to 1024 characters; `now` an RFC 3339 time
        (`api.times.format_time`); `component` the reporting controller. Not deduplicated:
        each call creates one Event. None is posted, and no error raised, in a namespace
        being deleted or gone (ApiError.namespace_closed); ApiError for any other refusal."""
        metadata = involved.get("metadata") or {}
        namespace = metadata.get("namespace") or "default"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{metadata.get('name', 'certsmith')}.",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": metadata.get("name"),
                "namespace": metadata.get("namespace"),
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": component},
            "reportingComponent": component,
        }
        try:
            self._call("POST", f"/api/v1/namespaces/{namespace}/events", body=body)
        except ApiError as error:
            # It would be deleted with its namespace, and no one is left to read it.
            if not error.namespace_closed:
                raise


class Followed(Protocol):
    """What `follow` keeps up to date: told of each list and each watch event."""

    def listed(self, listing: Listing) -> None:
        """A list after the first (the watch fell too far behind): the collection as it is
        now; what differs from before happened meanwhile."""
        ...

    def event(self, kind: str, metadata: Mapping[str, Any]) -> None:
        """A watch event: `kind` ADDED, MODIFIED or DELETED, the object's metadata."""
        ...


class FailureStreak:
    """Consecutive failures of one long-lived call (a watch), for its retry: the first is a
    WARNING, the rest of the streak DEBUG (an apiserver down for a minute made ~10 lines a
    second per replica), and the wait doubles from `base_seconds` up to MAX_RETRY_SECONDS;
    `succeeded` says once how long the streak was and starts over."""

    MAX_RETRY_SECONDS = 8.0

    def __init__(self, what: str, base_seconds: float) -> None:
        self._what = what
        self._base_seconds = base_seconds
        self._failures = 0

    def failed(self, error: Exception) -> float:
        """Log `error` and return how many seconds to wait before trying again."""
        self._failures += 1
        if self._failures == 1:
            logger.warning("%s ended: %s", self._what, error)
        else:
            logger.debug("%s ended again (%d in a row): %s", self._what, self._failures, error)
        return min(self.MAX_RETRY_SECONDS, self._base_seconds * (1 << (self._failures - 1)))

    def succeeded(self) -> None:
        if self._failures > 1:
            logger.info("%s resumed after %d failed attempts", self._what, self._failures)
        self._failures = 0


@dataclasses.dataclass
class _Position:
    """Where `follow` watches from next: the version of the last event passed on, of the
    last list, or None to list again."""

    version: str | None


def follow(
    followed: Followed,
    *,
    first: Listing,
    relist: Callable[[], Listing],
    watch: Callable[[str], Iterator[dict[str, Any]]],
    going: Callable[[], bool],
    retry_seconds: float,
    what: str,
) -> None:
    """Keep `followed` up to date with a collection whose `first` list it already has:
    watch from that list's resourceVersion, then from each event's, so every change after
    the list is seen, in order, and none twice. Only a version too old for the apiserver
    (410 Gone) loses events: then `relist()` and `followed.listed`. Other ends (the stream's
    timeout, a read timeout on a quiet stream, no answer, 5xx, an ERROR such as "too large
    resource version" while the apiserver's cache catches up) watch again, after
    `retry_seconds`, from the last event passed on, even when the stream broke off: what
    it passed on is not passed on again. Returns once `going()` is False, checked before
    each event is passed on. `what` names the collection in the log."""
    position = _Position(first.resource_version or None)
    streak = FailureStreak(f"watch of {what}", retry_seconds)
    while going():
        try:
            if position.version is None:
                listing = relist()
                if not going():
                    return
                followed.listed(listing)
                position.version = listing.resource_version
            _stream(followed, watch(position.version), position, going, retry_seconds, what)
            streak.succeeded()
        except ApiError as error:
            if error.status == GONE:
                position.version = None
                continue
            # A quiet collection ends the stream by read timeout: not news.
            if error.status == 0 and "timed out" in error.message.lower():
                streak.succeeded()
                time.sleep(retry_seconds)
            else:
                time.sleep(streak.failed(error))


def _stream(
    followed: Followed,
    events: Iterator[dict[str, Any]],
    position: _Position,
    going: Callable[[], bool],
    retry_seconds: float,
    what: str,
) -> None:
    """Pass one stream's events on, moving `position` past each (to None: list again)."""
    for event in events:
        if not going():
            break
        kind = event.get("type")
        thing = event.get("object") or {}
        if kind == "ERROR":
            if thing.get("code") == GONE:
                position.version = None
                return
            logger.info("watch of %s: %s", what, thing.get("message"))
            time.sleep(retry_seconds)
            break
        metadata = thing.get("metadata") or {}
        position.version = str(metadata.get("resourceVersion") or position.version)
        if kind != "BOOKMARK":
            followed.event(str(kind), metadata)
