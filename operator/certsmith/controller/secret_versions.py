"""The resourceVersion of every certsmith Secret, and the watch that reports their changes.
Runs only in the Lease holder.

A term starts with one list of the Secrets' metadata (no data: a fraction of their bytes),
then watches from that list's resourceVersion: every change after the list is seen, in
order, with no gap between the list and the watch (kopf's own watch would list again, and
a Secret deleted between the two lists would be seen by neither). A restart looks at every
Certificate again; one whose status was judged on its Secret at the version the Secret
still has needs no read of it (certificates.status.resumed), so a restart with 10,000
Certificates makes one LIST instead of 10,000 GETs. A change reported while a Certificate
is being judged has it judged again after (CertificateQueue.running).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from certsmith.api import names
from certsmith.certificates.reconcile import Reconciler
from certsmith.controller.certificate_queue import CertificateQueue
from certsmith.kube import Kube, Listing, follow

logger = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 60
WATCH_RETRY_SECONDS = 1.0


class Seen(NamedTuple):
    """A Secret as last listed or watched."""

    resource_version: str
    certificate: str
    """The Certificate named by the Secret's label."""


SecretKey = tuple[str, str]
"""(namespace, Secret name)."""


class SecretVersions:
    def __init__(
        self, *, kube: Kube, reconciler: Reconciler, certificates: CertificateQueue
    ) -> None:
        self._kube = kube
        self._reconciler = reconciler
        self._certificates = certificates
        self._lock = threading.Lock()
        self._versions: dict[SecretKey, Seen] = {}
        self._term = 0

    def start_term(self) -> None:
        """List them all (what an earlier term kept may be stale), then follow their changes
        in a thread of this term's own, from that list on. ApiError when the list fails."""
        listing = self._list()
        with self._lock:
            self._term += 1
            term = self._term
            self._versions = _seen(listing)
        threading.Thread(
            target=follow,
            args=(self,),
            kwargs={
                "first": listing,
                "relist": self._list,
                "watch": self._watch,
                "going": lambda: self._term == term,
                "retry_seconds": WATCH_RETRY_SECONDS,
                "what": "certsmith Secrets",
            },
            name=f"certsmith-secrets-{term}",
            daemon=True,
        ).start()

    def end_term(self) -> None:
        """The term is over: its watch passes nothing on any more (it ends at its next event
        or the stream's timeout)."""
        with self._lock:
            self._term += 1

    def get(self, namespace: str, name: str) -> str | None:
        """The Secret's resourceVersion as last listed or watched; None when not known."""
        with self._lock:
            seen = self._versions.get((namespace, name))
        return None if seen is None else seen.resource_version

    def listed(self, listing: Listing) -> None:
        """A list after the watch fell too far behind: what differs from what was seen is
        reported as the events it stands for."""
        listed = _seen(listing)
        with self._lock:
            before, self._versions = self._versions, listed
        for change in differences(before, listed):
            self._changed(change.key, change.seen, deleted=change.deleted, was=change.was)

    def event(self, kind: str, metadata: Mapping[str, Any]) -> None:
        """A watch event of one Secret (its metadata)."""
        key = (str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        seen = Seen(
            str(metadata.get("resourceVersion") or ""),
            str((metadata.get("labels") or {}).get(names.CERTIFICATE_LABEL, "")),
        )
        with self._lock:
            was = self._versions.pop(key, None)
            if kind != "DELETED":
                self._versions[key] = seen
        self._changed(key, seen, deleted=kind == "DELETED", was=was)

    def _changed(
        self, key: SecretKey, seen: Seen, *, deleted: bool, was: Seen | None = None
    ) -> None:
        """A Secret of ours changed or vanished: have its Certificate looked at now (and the
        one its label named before, when relabelled), and any Certificate in SecretConflict
        over it (deleting a left-over Secret resolves that); not for the echo of certsmith's
        own write."""
        namespace, secret_name = key
        if was is not None and was.certificate and was.certificate != seen.certificate:
            self._certificates.due_now(namespace, was.certificate)
        if deleted:
            self._reconciler.forget_secret(namespace, secret_name)
        for waiting in self._reconciler.waiting_on_secret(namespace, secret_name):
            self._certificates.due_now(namespace, waiting)
        if not deleted and not self._reconciler.secret_changed(
            namespace, secret_name, seen.resource_version
        ):
            return
        if seen.certificate:
            self._certificates.due_now(namespace, seen.certificate)

    def _list(self) -> Listing:
        return self._kube.list_secrets_metadata(label_selector=names.CERTIFICATE_LABEL)

    def _watch(self, resource_version: str) -> Iterator[dict[str, Any]]:
        return self._kube.watch_secrets_metadata(
            label_selector=names.CERTIFICATE_LABEL,
            resource_version=resource_version,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
        )


class Difference(NamedTuple):
    """One Secret that differs between two lists: `seen` as listed now (as before when
    `deleted`), `was` as before (None: new)."""

    key: SecretKey
    seen: Seen
    deleted: bool
    was: Seen | None


def differences(
    before: Mapping[SecretKey, Seen], listed: Mapping[SecretKey, Seen]
) -> list[Difference]:
    """What changed between two lists of the Secrets (by key, sorted): created, written
    (another resourceVersion or Certificate label) or gone."""
    found = []
    for key in sorted(before.keys() | listed.keys()):
        was, now = before.get(key), listed.get(key)
        if now is None and was is not None:
            found.append(Difference(key, was, True, was))
        elif now is not None and now != was:
            found.append(Difference(key, now, False, was))
    return found


def _seen(listing: Listing) -> dict[SecretKey, Seen]:
    return {
        (item["metadata"]["namespace"], item["metadata"]["name"]): Seen(
            str(item["metadata"].get("resourceVersion") or ""),
            str((item["metadata"].get("labels") or {}).get(names.CERTIFICATE_LABEL, "")),
        )
        for item in listing.items
    }
