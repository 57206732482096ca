"""What a namespace's appearance, relabelling or deletion sets off: its trust bundles, its
Certificates judged again (grants follow namespace labels), the caches about it dropped.
Runs only in the Lease holder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certsmith.controller.bundle_repair import BundleRepair
from certsmith.controller.certificate_queue import CertificateQueue
from certsmith.controller.namespace_labels import NamespaceLabels
from certsmith.kube import Kube


class NamespaceEvents:
    def __init__(
        self,
        *,
        kube: Kube,
        labels: NamespaceLabels,
        certificates: CertificateQueue,
        bundles: BundleRepair,
    ) -> None:
        self._kube = kube
        self._labels = labels
        self._certificates = certificates
        self._bundles = bundles

    def seen(self, namespace: Mapping[str, Any]) -> None:
        """A namespace appeared or changed: remember its labels, give it its trust bundles.
        ApiError when the apiserver does not answer."""
        metadata = namespace["metadata"]
        name, labels = metadata["name"], dict(metadata.get("labels") or {})
        terminating = bool(metadata.get("deletionTimestamp"))
        before = self._labels.cached(name)
        relabelled = []
        if before is not None and before != labels and not terminating:
            # Grants follow namespace labels: judge the namespace's Certificates again, so a
            # label removed revokes what it granted and a label added signs what waited.
            # Listed before the cache moves: if the list fails, the next event tries again.
            relabelled = self._kube.list_certificates(namespace=name)
        self._labels.seen(name, labels)
        for item in relabelled:
            self._certificates.due_now(name, item["metadata"]["name"])
        if not terminating:
            self._bundles.needed(name)

    def listed(self, namespace: Mapping[str, Any]) -> None:
        """The watch's first list of a term shows the namespace: remember its labels. Its
        trust bundles are left to the steps of the authorities, which write them in every
        namespace they list at once (two reads per namespace here would make a restart's
        API calls grow with the namespaces), unless it appeared after a step listed them.
        ApiError when the apiserver does not answer."""
        metadata = namespace["metadata"]
        self._labels.seen(metadata["name"], dict(metadata.get("labels") or {}))
        if not metadata.get("deletionTimestamp"):
            self._bundles.listed(metadata["name"])

    def deleted(self, name: str) -> None:
        """Forget what was cached about it (its labels, our bundle writes there)."""
        self._labels.forget(name)
        self._bundles.forget_namespace(name)
