"""Namespace labels as the controller knows them: a cache kept current by the namespace watch.

Runs only in the Lease holder, the only replica that sees namespace events: a cache in any
other replica would keep the labels of a namespace since relabelled. The admission webhook
(every replica) therefore reads labels fresh instead, and cannot reach this module
(`admission` and `controller` are independent layers, `.importlinter`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from certsmith.kube import Kube


class NamespaceLabels:
    def __init__(self, *, kube: Kube) -> None:
        self._kube = kube
        self._lock = threading.Lock()
        self._labels: dict[str, Mapping[str, str]] = {}

    def labels(self, namespace: str) -> Mapping[str, str]:
        """The namespace's labels: cached, else read now (empty when it does not exist).
        ApiError when the read fails."""
        with self._lock:
            cached = self._labels.get(namespace)
        if cached is not None:
            return cached
        labels = self._kube.get_namespace_labels(name=namespace)
        with self._lock:
            return self._labels.setdefault(namespace, labels)

    def cached(self, namespace: str) -> Mapping[str, str] | None:
        """The labels last seen, or None when nothing is cached for the namespace."""
        with self._lock:
            return self._labels.get(namespace)

    def seen(self, namespace: str, labels: Mapping[str, str]) -> None:
        """The watch delivered the namespace with these labels."""
        with self._lock:
            self._labels[namespace] = dict(labels)

    def forget(self, namespace: str) -> None:
        """The namespace was deleted."""
        with self._lock:
            self._labels.pop(namespace, None)

    def clear(self) -> None:
        """A new term: what an earlier term cached may be stale (no events since)."""
        with self._lock:
            self._labels.clear()
