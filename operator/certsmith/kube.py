"""The operator's only Kubernetes API client: plain JSON in and out, no model classes.

Bodies stay dicts: decoding into the client library's generated models costs more CPU
than issuing a certificate. The connection pool size is set deliberately (Config) so a
burst of issuances queues here instead of opening hundreds of connections.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

import urllib3
from kubernetes import client, config

from certsmith.api import names

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
# (connect, read) seconds: a connection that died silently must fail a call, not hang a
# worker thread forever (the client has no timeout by default). The read timeout bounds the
# wait for the next bytes, not the whole response, so a long list still streams in.
REQUEST_TIMEOUT = (5.0, 15.0)
# Connections may be retried (nothing was sent yet); reads may not: a read that timed out
# went over a dead path, and the next pooled connection most likely took the same one.
RETRIES = urllib3.Retry(total=3, connect=3, read=0, status=0, redirect=0, other=0)


class ApiError(Exception):
    """A non-2xx answer from the apiserver."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def new_api_client(*, kubeconfig: str | None, pool_size: int) -> client.ApiClient:
    """An ApiClient for in-cluster use, or for the given/default kubeconfig."""
    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = RETRIES
    return client.ApiClient(configuration)


class Kube:
    def __init__(
        self, api_client: client.ApiClient, *, timeout: tuple[float, float] = REQUEST_TIMEOUT
    ) -> None:
        self._api = api_client
        self._timeout = timeout

    def with_timeout(self, timeout: tuple[float, float]) -> Kube:
        """The same client and connections, with a shorter fuse (the Lease campaign)."""
        return Kube(self._api, timeout=timeout)

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = JSON,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """The response, its body not read yet; raise for an error status."""
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": JSON},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request, _request_timeout=self._timeout)
        if not 200 <= response.status < 300:
            data = response.read()
            try:
                detail = json.loads(data or b"{}")
            except ValueError:
                detail = {}
            raise ApiError(
                int(response.status),
                str(detail.get("reason") or response.reason),
                str(detail.get("message") or data[:200]),
            )
        return response

    @contextlib.contextmanager
    def _unreachable_is_an_api_error(self) -> Iterator[None]:
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
        body: Any = None,
        content_type: str = JSON,
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        with self._unreachable_is_an_api_error():
            response = self._send(method, path, body=body, content_type=content_type, query=query)
            data = response.read()
        return json.loads(data or b"{}")

    def _watch(self, path: str, query: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Watch events until the apiserver ends the stream; a silence longer than the read
        timeout ends it too (ApiError), so a dead stream is never waited on for long."""
        with self._unreachable_is_an_api_error():
            response = self._send("GET", path, query={**query, "watch": "true"})
            for line in response.response:
                if line.strip():
                    yield json.loads(line)

    def _get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", path)
        except ApiError as error:
            if error.not_found:
                return None
            raise

    # --- Secrets ---------------------------------------------------------------------

    def get_secret(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{name}")

    def create_secret(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"]["namespace"]
        return self._call("POST", f"/api/v1/namespaces/{namespace}/secrets", body=body)

    def replace_secret(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT with the body's resourceVersion: fails with 409 if someone wrote in between."""
        metadata = body["metadata"]
        path = f"/api/v1/namespaces/{metadata['namespace']}/secrets/{metadata['name']}"
        return self._call("PUT", path, body=body)

    def delete_secret(self, *, namespace: str, name: str) -> None:
        try:
            self._call("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except ApiError as error:
            if not error.not_found:
                raise

    def list_secrets(self, *, label_selector: str) -> list[dict[str, Any]]:
        """Secrets in every namespace carrying a label; certsmith never lists all Secrets."""
        return list(
            self._call("GET", "/api/v1/secrets", query={"labelSelector": label_selector}).get(
                "items"
            )
            or []
        )

    def watch_secrets(
        self, *, namespace: str, resource_version: str | None, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        """Watch events of the Secrets in one namespace (the operator's: CA keys only)."""
        query = {"timeoutSeconds": str(timeout_seconds)}
        if resource_version:
            query["resourceVersion"] = resource_version
        return self._watch(f"/api/v1/namespaces/{namespace}/secrets", query)

    # --- namespaces and trust-bundle ConfigMaps ---------------------------------------

    def list_namespaces(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/v1/namespaces").get("items") or [])

    def get_namespace(self, *, name: str) -> dict[str, Any] | None:
        return self._get_or_none(f"/api/v1/namespaces/{name}")

    def get_crd(self, *, name: str) -> dict[str, Any] | None:
        return self._get_or_none(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")

    def list_configmaps(self, *, name: str) -> list[dict[str, Any]]:
        """The ConfigMaps called `name` in every namespace, whatever their labels."""
        query = {"fieldSelector": f"metadata.name={name}"}
        return list(self._call("GET", "/api/v1/configmaps", query=query).get("items") or [])

    def get_configmap(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    def put_configmap(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create, or replace (with the body's resourceVersion if it has one)."""
        metadata = body["metadata"]
        collection = f"/api/v1/namespaces/{metadata['namespace']}/configmaps"
        if metadata.get("resourceVersion"):
            return self._call("PUT", f"{collection}/{metadata['name']}", body=body)
        return self._call("POST", collection, body=body)

    def patch_secret(
        self, *, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
        return self._call("PATCH", path, body=patch, content_type=MERGE_PATCH)

    # --- certsmith resources -------------------------------------------------------------

    def get_certificate(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        path = f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{namespace}/certificates/{name}"
        return self._get_or_none(path)

    def patch_certificate_status(
        self, *, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = (
            f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{namespace}/certificates/{name}/status"
        )
        return self._call("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)

    def get_authority(self, *, name: str) -> dict[str, Any] | None:
        return self._get_or_none(
            f"/apis/{names.GROUP}/{names.VERSION}/certificateauthorities/{name}"
        )

    def list_authorities(self) -> list[dict[str, Any]]:
        path = f"/apis/{names.GROUP}/{names.VERSION}/certificateauthorities"
        return list(self._call("GET", path).get("items") or [])

    def create_authority(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(
            "POST", f"/apis/{names.GROUP}/{names.VERSION}/certificateauthorities", body=body
        )

    def patch_authority_status(self, *, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        path = f"/apis/{names.GROUP}/{names.VERSION}/certificateauthorities/{name}/status"
        return self._call("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)

    def list_certificates(self, *, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every Certificate, or those of `namespace`; raises ApiError."""
        where = f"namespaces/{namespace}/" if namespace else ""
        path = f"/apis/{names.GROUP}/{names.VERSION}/{where}certificates"
        return list(self._call("GET", path).get("items") or [])

    def create_certificate(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"]["namespace"]
        path = f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{namespace}/certificates"
        return self._call("POST", path, body=body)

    # --- workloads ---------------------------------------------------------------------

    def list_workloads(self, *, namespace: str, plural: str) -> list[dict[str, Any]]:
        path = f"/apis/apps/v1/namespaces/{namespace}/{plural}"
        return list(self._call("GET", path).get("items") or [])

    def patch_workload(
        self, *, namespace: str, plural: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = f"/apis/apps/v1/namespaces/{namespace}/{plural}/{name}"
        return self._call("PATCH", path, body=patch, content_type=MERGE_PATCH)

    # --- admission configuration -------------------------------------------------------

    def get_webhook_configuration(self, *, kind: str, name: str) -> dict[str, Any] | None:
        """A Mutating/ValidatingWebhookConfiguration, or None if there is none; ApiError."""
        plural = kind.lower() + "s"
        return self._get_or_none(f"/apis/admissionregistration.k8s.io/v1/{plural}/{name}")

    def put_webhook_configuration(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace a Mutating/ValidatingWebhookConfiguration."""
        plural = body["kind"].lower() + "s"
        collection = f"/apis/admissionregistration.k8s.io/v1/{plural}"
        name = body["metadata"]["name"]
        for _ in range(5):
            try:
                current = self._call("GET", f"{collection}/{name}")
            except ApiError as error:
                if not error.not_found:
                    raise
                try:
                    return self._call("POST", collection, body=body)
                except ApiError as create_error:
                    if not create_error.conflict:
                        raise
                    continue
            replacement = {**body, "metadata": {**body["metadata"]}}
            replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                return self._call("PUT", f"{collection}/{name}", body=replacement)
            except ApiError as error:
                if not error.conflict:
                    raise
        raise ApiError(409, "Conflict", f"{plural}/{name} kept changing while being replaced")

    # --- leader election --------------------------------------------------------------

    def get_lease(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        return self._get_or_none(path)

    def watch_lease(
        self, *, namespace: str, name: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        return self._watch(
            f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
            {"fieldSelector": f"metadata.name={name}", "timeoutSeconds": str(timeout_seconds)},
        )

    def create_lease(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"]["namespace"]
        return self._call(
            "POST", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases", body=body
        )

    def replace_lease(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
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
        self._call("POST", f"/api/v1/namespaces/{namespace}/events", body=body)
