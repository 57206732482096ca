"""The resourceVersion of every certsmith Secret: listed (metadata only) when a term starts,
then kept by the Secrets' watch. Runs only in the Lease holder.

A restart looks at every Certificate again; one whose status was judged on its Secret at
the version the Secret still has needs no read of it (certificates.status.resumed), so a
restart with 10,000 Certificates makes one LIST instead of 10,000 GETs. The list is taken
before kopf starts its watches, so each Certificate's first look finds its Secret listed;
kopf's own first list of the Secrets comes later, and one changed in between is reported
as such (`listed_again`).
"""

from __future__ import annotations

import threading

from certsmith.api import names
from certsmith.kube import Kube


class SecretVersions:
    def __init__(self, *, kube: Kube) -> None:
        self._kube = kube
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, str], str] = {}

    def refill(self) -> None:
        """List them all again (a new term: what an earlier one kept may be stale).
        ApiError when the list fails."""
        listed = {
            (item["metadata"]["namespace"], item["metadata"]["name"]): str(
                item["metadata"].get("resourceVersion") or ""
            )
            for item in self._kube.list_secrets_metadata(label_selector=names.CERTIFICATE_LABEL)
        }
        with self._lock:
            self._versions = listed

    def get(self, namespace: str, name: str) -> str | None:
        """The Secret's resourceVersion as last listed or watched; None when not known."""
        with self._lock:
            return self._versions.get((namespace, name))

    def listed_again(self, namespace: str, name: str, resource_version: str) -> bool:
        """The watch's first list shows the Secret at `resource_version`: keep it; whether
        it changed (or appeared) since the term's own list."""
        with self._lock:
            before = self._versions.get((namespace, name))
            self._versions[(namespace, name)] = resource_version
        return before != resource_version

    def seen(self, namespace: str, name: str, resource_version: str) -> None:
        """A watch event: the Secret is at `resource_version` now."""
        with self._lock:
            self._versions[(namespace, name)] = resource_version

    def deleted(self, namespace: str, name: str) -> None:
        with self._lock:
            self._versions.pop((namespace, name), None)
