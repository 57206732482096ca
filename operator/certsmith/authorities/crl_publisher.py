"""Apply revocation requests to an authority's record and publish its CRL (I/O around the
pure authorities.revocation): one call per authority step, under the authority's lock.

Order, so that a crash anywhere is repaired by the next step: the record (the revocation
and the new CRL) is written first; only then are the requests' annotations removed (a
Certificate's replaced by `renew-requested-at`, which re-issues it with a new key). A
request found again whose entry is in the record is only finished, never applied twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from certsmith import metrics
from certsmith.api import model, names
from certsmith.authorities import authority, revocation
from certsmith.config import Config
from certsmith.kube import ApiError, Kube
from certsmith.pki import crl

logger = logging.getLogger(__name__)

REVOKED = "Revoked"
INVALID_REVOCATION = "InvalidRevocation"
RECORD_INVALID = "RevocationRecordInvalid"
FINISH_RETRY = timedelta(seconds=30)
"""How soon a step tries again to remove an annotation of a request it recorded."""


@dataclass(frozen=True)
class Published:
    """The material with its CRL, and when the record next changes by itself (None: never)."""

    material: authority.AuthorityMaterial
    next_change: datetime | None


class CrlPublisher:
    def __init__(
        self,
        *,
        kube: Kube,
        config: Config,
        event: Callable[[Mapping[str, Any], str, str, str], None],
    ) -> None:
        """`event(involved, type, reason, message)` posts an Event (one lost is only logged)."""
        self._kube = kube
        self._config = config
        self._event = event
        # Objects whose revoke annotation a watch saw, by authority: read at its next step
        # (never a listing of every Certificate at every step).
        self._pending: dict[str, set[tuple[str, str, str]]] = {}
        self._guard = threading.Lock()

    def publish(
        self, body: Mapping[str, Any], material: authority.AuthorityMaterial, now: datetime
    ) -> Published:
        """Apply the requests addressed to authority `body`, drop expired entries, sign the
        CRL again when due, store the record; the material with the CRL. ApiError when the
        apiserver does not answer (the step is retried)."""
        name = material.name
        stored = self._kube.get_configmap(
            namespace=self._config.namespace, name=revocation.record_name(name)
        )
        try:
            record = revocation.load((stored or {}).get("data"))
        except ValueError as error:
            # Never overwritten: the entries in it are what keeps certificates revoked.
            message = (
                f"ConfigMap {self._config.namespace}/{revocation.record_name(name)}: {error}; "
                "the CRL is not updated until it is restored from a backup or deleted"
            )
            logger.warning("CertificateAuthority %s: %s", name, message)
            self._event(body, "Warning", RECORD_INVALID, message)
            crl_pem = ((stored or {}).get("data") or {}).get(revocation.CRL_KEY, "")
            return Published(replace(material, crl_pem=crl_pem), None)
        requests = self._requests(name)
        serials, problems = revocation.serial_requests(
            (body.get("metadata") or {}).get("annotations") or {}
        )
        for problem in problems:
            self._event(body, "Warning", INVALID_REVOCATION, problem)
        updated = revocation.with_requests(
            record,
            (r for r, _ in requests),
            serials,
            now=now,
            serial_not_after=material.intermediate.certificate.not_valid_after_utc,
        )
        updated = revocation.publish(
            updated, intermediate=material.intermediate, root=material.root, now=now
        )
        if updated != record:
            self._store(name, updated, stored)
            added = len(updated.entries) - len(record.entries)
            logger.info(
                "CertificateAuthority %s: CRL %d published (%d revoked, %+d)",
                name,
                updated.number,
                len(updated.entries),
                added,
            )
        finished = True
        for request, involved in requests:
            if self._finish(request, involved, updated):
                self._done(name, (request.kind, request.namespace, request.name))
            else:
                finished = False
        finished = self._finish_serials(body, serials, problems) and finished
        if updated.this_update is not None:
            metrics.crl_published(name, len(updated.entries), updated.this_update)
        next_change = revocation.next_change(updated)
        if not finished:  # recorded, but an annotation is left: finish it soon
            retry = now + FINISH_RETRY
            next_change = retry if next_change is None else min(next_change, retry)
        return Published(replace(material, crl_pem=updated.crl_pem), next_change)

    def requested(self, authority_name: str, kind: str, namespace: str, name: str) -> None:
        """A watch saw the revoke annotation on this Certificate or CertificateRequest
        (`kind`) of authority `authority_name`: its next step reads it. Also each object
        listed at the start of a term, so a request made while no replica led is seen."""
        with self._guard:
            self._pending.setdefault(authority_name, set()).add((kind, namespace, name))

    def _requests(self, name: str) -> list[tuple[revocation.Request, Mapping[str, Any]]]:
        """The revocations asked for on this authority's Certificates and CertificateRequests
        (those `requested`, read now); an invalid one gets a Warning event and its
        annotations removed. One no longer asking is forgotten."""
        found: list[tuple[revocation.Request, Mapping[str, Any]]] = []
        with self._guard:
            pending = sorted(self._pending.get(name, ()))
        for key in pending:
            kind, namespace, object_name = key
            plural = names.CERTIFICATES if kind == "Certificate" else names.CERTIFICATE_REQUESTS
            if kind == "Certificate":
                item = self._kube.get_certificate(namespace=namespace, name=object_name)
            else:
                item = self._kube.get_certificate_request(namespace=namespace, name=object_name)
            annotations = ((item or {}).get("metadata") or {}).get("annotations") or {}
            if item is None or revocation.REQUESTED_AT_ANNOTATION not in annotations:
                self._done(name, key)
                continue
            if _issuer(item) != name:
                self._done(name, key)  # moved to another authority: its watch event says so
                continue
            try:
                request = revocation.request_of(kind, item)
            except revocation.InvalidRequest as error:
                self._event(item, "Warning", INVALID_REVOCATION, str(error))
                if self._clear(plural, item, {}):
                    self._done(name, key)
                continue
            if request is not None:
                found.append((request, item))
        return found

    def _done(self, authority_name: str, key: tuple[str, str, str]) -> None:
        with self._guard:
            self._pending.get(authority_name, set()).discard(key)

    def _store(
        self, name: str, record: revocation.Record, stored: Mapping[str, Any] | None
    ) -> None:
        """Create or replace the record ConfigMap; a 409 (written meanwhile) is an ApiError:
        the step runs again from what is there."""
        metadata: dict[str, Any] = {
            "name": revocation.record_name(name),
            "namespace": self._config.namespace,
            "labels": {
                names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
                names.CA_AUTHORITY_LABEL: name,
            },
        }
        if stored is not None:
            metadata["resourceVersion"] = stored["metadata"]["resourceVersion"]
        self._kube.put_configmap(
            body={
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": metadata,
                "data": revocation.dump(record),
            }
        )

    def _finish(
        self,
        request: revocation.Request,
        involved: Mapping[str, Any],
        record: revocation.Record,
    ) -> bool:
        """Remove the request's annotations (the record holds it now); for a Certificate,
        ask for its re-issue in the same write unless --no-reissue. Whether that was
        written (`_clear`)."""
        plural = names.CERTIFICATES if request.kind == "Certificate" else names.CERTIFICATE_REQUESTS
        extra: dict[str, str | None] = {}
        if request.serial is None:
            self._event(
                involved,
                "Warning",
                INVALID_REVOCATION,
                f"nothing to revoke: {request.kind} {request.name} has no certificate yet "
                "(status.serialNumber is empty)",
            )
        elif revocation.applied(record, request) or any(
            e.serial == request.serial for e in record.entries
        ):
            self._event(
                involved,
                "Normal",
                REVOKED,
                f"serial {request.serial:x} revoked ({request.reason}); the CRL of "
                f"CertificateAuthority {_issuer(involved)} lists it",
            )
            if request.reissue:
                extra[names.RENEWAL_REQUEST_ANNOTATION] = request.requested_at
        return self._clear(plural, involved, extra)

    def _clear(
        self, plural: str, involved: Mapping[str, Any], extra: Mapping[str, str | None]
    ) -> bool:
        """Remove the revoke annotations of `involved` and set `extra`; False (logged) when
        the apiserver refused or did not answer: the step finishes it later (the record
        holds the revocation already, so it is never applied twice)."""
        metadata = involved.get("metadata") or {}
        patch: dict[str, str | None] = dict.fromkeys(revocation.REQUEST_ANNOTATIONS)
        patch.update(extra)
        try:
            self._kube.patch_annotations(
                plural=plural,
                namespace=metadata.get("namespace"),
                name=metadata.get("name", ""),
                annotations=patch,
            )
        except ApiError as error:
            if error.not_found:
                return True
            logger.warning(
                "%s %s/%s: the revocation is recorded but its annotation could not be removed: %s",
                plural,
                metadata.get("namespace"),
                metadata.get("name"),
                error,
            )
            return False
        return True

    def _finish_serials(
        self, body: Mapping[str, Any], serials: Mapping[int, str], problems: list[str]
    ) -> bool:
        """Remove the authority's `revoke.certsmith.dev/` annotations: recorded, or refused
        (a Warning event said why). Whether that was written (as `_clear`)."""
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        keys = [k for k in annotations if k.startswith(revocation.SERIAL_ANNOTATION_PREFIX)]
        if not keys:
            return True
        for serial, reason in serials.items():
            self._event(body, "Normal", REVOKED, f"serial {serial:x} revoked ({reason})")
        return self._clear(names.AUTHORITIES, body, dict.fromkeys(keys))


def _issuer(involved: Mapping[str, Any]) -> str:
    """The authority a Certificate or CertificateRequest names (spec.issuerRef.name)."""
    return str(
        ((involved.get("spec") or {}).get("issuerRef") or {}).get("name", model.DEFAULT_ISSUER)
    )


CRL_CACHE_SECONDS = 10.0
"""How long a replica serves a CRL it read before reading the record again: clients fetching
the distribution point do not each cost an apiserver read."""


class CrlCache:
    """The DER of each authority's current CRL (the intermediate's, listing its revoked
    leaves), read from its record at most every CRL_CACHE_SECONDS; served by every replica
    at /crl/<authority>.crl."""

    def __init__(
        self, kube: Kube, config: Config, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._kube = kube
        self._config = config
        self._clock = clock
        self._read: dict[str, tuple[float, bytes | None]] = {}
        self._guard = threading.Lock()

    def der(self, authority_name: str) -> bytes | None:
        """None when the authority has no CRL (yet). ApiError when the apiserver does not
        answer, ValueError when the record holds no CRL that parses."""
        now = self._clock()
        with self._guard:
            cached = self._read.get(authority_name)
        if cached is not None and now - cached[0] < CRL_CACHE_SECONDS:
            return cached[1]
        stored = self._kube.get_configmap(
            namespace=self._config.namespace, name=revocation.record_name(authority_name)
        )
        pem = ((stored or {}).get("data") or {}).get(revocation.CRL_KEY, "")
        der = crl.to_der(pem) if pem else None
        with self._guard:
            self._read[authority_name] = (now, der)
        return der
