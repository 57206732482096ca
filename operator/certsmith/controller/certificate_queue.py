"""When each Certificate is reconciled next: after a watch event, at its renewal or retry
time (the scheduler), or now because something it depends on changed. Runs only in the
Lease holder."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from certsmith.authorities.controller import CERTIFICATE
from certsmith.authorities.rotation import ReissuePacer
from certsmith.certificates.reconcile import Outcome, Reconciler
from certsmith.kube import ApiError, Kube
from certsmith.scheduler import Scheduler


class CertificateQueue:
    def __init__(
        self,
        *,
        kube: Kube,
        reconciler: Reconciler,
        scheduler: Scheduler,
        pacer: ReissuePacer,
        clock: Callable[[], datetime],
        default_authority: str,
    ) -> None:
        """`default_authority`: the issuer of a Certificate that names none."""
        self._default_authority = default_authority
        self._kube = kube
        self._reconciler = reconciler
        self._scheduler = scheduler
        self._pacer = pacer
        self._clock = clock
        self._lock = threading.Lock()
        # (namespace, name) → the resourceVersion judged by `resume_listed` this term, until
        # the watch's first list delivers that Certificate.
        self._resumed: dict[tuple[str, str], str] = {}

    def after(self, namespace: str, name: str, outcome: Outcome) -> None:
        """Schedule the next look a reconciliation asked for (none: wait for a change)."""
        key = (CERTIFICATE, namespace, name)
        if outcome.next_check is None:
            self._scheduler.cancel(key)
        else:
            self._scheduler.schedule(key, outcome.next_check)

    def running(self, namespace: str, name: str) -> AbstractContextManager[None]:
        """Around a reconciliation a handler runs and its `after`: a `due_now` meanwhile
        (its Secret changed after being read) is kept over the time it plans."""
        return self._scheduler.running((CERTIFICATE, namespace, name))

    def due_now(self, namespace: str, name: str) -> None:
        """A look now, or right after the reconciliation running (which saw the world
        before)."""
        self._scheduler.expedite((CERTIFICATE, namespace, name), self._clock())

    def list_all(self) -> list[dict[str, Any]]:
        """Every Certificate, read now. ApiError when the list fails."""
        return self._kube.list_certificates()

    def resume_listed(
        self,
        listed: Sequence[dict[str, Any]],
        secret_version: Callable[[str, str], str | None],
    ) -> int:
        """A term's start: schedule the renewal of each Certificate of `listed` (every one,
        from `list_all`) whose status vouches for its Secret (Reconciler.resume_listed,
        `secret_version` giving a Secret's listed resourceVersion by namespace and name),
        so the schedule is whole before kopf's watch has delivered one; the others are
        left to the watch's resume handler, as is any Certificate changed after the list,
        except those being deleted (judged now: kopf has no handler for them).
        Returns how many were scheduled."""
        resumed = {}
        for body in listed:
            metadata = body["metadata"]
            namespace, name = metadata["namespace"], metadata["name"]
            secret_name = str((body.get("spec") or {}).get("secretName") or "")
            # A change of its Secret reported meanwhile is kept over the renewal time.
            with self.running(namespace, name):
                outcome = self._reconciler.resume_listed(
                    body, secret_version=secret_version(namespace, secret_name)
                )
                if outcome is not None:
                    self.after(namespace, name, outcome)
                    resumed[(namespace, name)] = str(metadata.get("resourceVersion") or "")
                elif metadata.get("deletionTimestamp"):
                    # kopf calls no handler for an object being deleted that holds no
                    # finalizer of its own: judged here, or it would stay as it was.
                    self.due_now(namespace, name)
        with self._lock:
            self._resumed = resumed
        return len(resumed)

    def resumed_at_start(self, namespace: str, name: str, resource_version: str) -> bool:
        """Whether `resume_listed` judged the Certificate at this very resourceVersion this
        term (then the watch's first delivery of it needs no reconciliation); answered
        once per Certificate."""
        with self._lock:
            judged = self._resumed.pop((namespace, name), None)
        return judged is not None and judged == resource_version

    def reconcile_by_name(self, namespace: str, name: str) -> None:
        """The scheduler's path: read the Certificate fresh, reconcile, write status directly.
        ApiError when the apiserver does not answer."""
        body = self._kube.get_certificate(namespace=namespace, name=name)
        if body is None:
            self.forget(namespace, name)
            return
        outcome = self._reconciler.reconcile(body)
        if outcome.status is not None:
            try:
                self._kube.patch_certificate_status(
                    namespace=namespace, name=name, status=outcome.status
                )
            except ApiError as error:
                if not error.not_found:
                    raise
        self.after(namespace, name, outcome)

    def forget(self, namespace: str, name: str) -> None:
        """The Certificate was deleted: nothing is scheduled or remembered for it."""
        self._scheduler.cancel((CERTIFICATE, namespace, name))
        with self._lock:
            self._resumed.pop((namespace, name), None)
        self._pacer.forget((namespace, name))
        self._reconciler.forget(namespace, name)

    def of_authority_due_now(self, authority_name: str) -> None:
        """Look again at every Certificate of an authority (its policy changed, or it is
        gone). ApiError when they cannot be listed."""
        for item in self._kube.list_certificates():
            issuer = ((item.get("spec") or {}).get("issuerRef") or {}).get("name")
            if (issuer or self._default_authority) == authority_name:
                self.due_now(item["metadata"]["namespace"], item["metadata"]["name"])
