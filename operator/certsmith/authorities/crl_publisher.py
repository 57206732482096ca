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
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certsmith import metrics
from certsmith.api import model, names
from certsmith.authorities import authority, revocation
from certsmith.certificates import tls_secret
from certsmith.config import Config
from certsmith.kube import ApiError, Kube
from certsmith.pki import crl, keys

logger = logging.getLogger(__name__)

REVOKED = names.REVOKED_EVENT
INVALID_REVOCATION = names.INVALID_REVOCATION_EVENT
RECORD_INVALID = "RevocationRecordInvalid"
RECORD_CONFLICT = "RevocationRecordConflict"
RECORD_RESTORED = "RevocationRecordRestored"
RECORD_FULL = names.RECORD_FULL_EVENT
PUBLISH_FAILED = "CRLPublishFailed"
SIGNER_LOST = "CRLSignerLost"
FINISH_RETRY = timedelta(seconds=30)
"""How soon a step tries again to remove an annotation of a request it recorded, or to
read a record that was damaged or not certsmith's (not watched: this finds it restored)."""

EPOCH = datetime.fromtimestamp(0, UTC)
RECORD_RECHECK = timedelta(minutes=5)
"""How soon a step reads the record again when nothing else is due: a record restored from
an older backup or edited is merged with what was published (never an un-revocation)."""


@dataclass(frozen=True)
class Published:
    """The material with its CRLs; when the record next changes by itself (None: never);
    what keeps the CRLs from being current ((reason, message), None when nothing)."""

    material: authority.AuthorityMaterial
    next_change: datetime | None
    problem: tuple[str, str] | None = None
    number: int = 0


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
        # The last record each authority published here: a record deleted meanwhile is
        # rebuilt from it, and CRL numbers never go back (RFC 5280 5.2.3).
        self._last: dict[str, revocation.Record] = {}
        # The CAs that signed each authority's CRLs last: a signers Secret deleted or
        # tampered with meanwhile is written again from these, no CRL silently dropped.
        self._signed_with: dict[str, revocation.Signers] = {}
        self._guard = threading.Lock()

    def publish(
        self, body: Mapping[str, Any], material: authority.AuthorityMaterial, now: datetime
    ) -> Published:
        """Keep the CAs that sign CRLs, apply the requests addressed to authority `body`,
        drop expired entries, sign the CRLs again when due, store the record; the material
        with the CRLs. ApiError when the apiserver does not answer (the caller retries)."""
        name = material.name
        signers = self._signers(material, now)
        loaded = self._load(body, material, signers, now)
        if isinstance(loaded, Published):
            return loaded
        record, stored = loaded
        # After a restart, what the trust bundle shows was published last.
        last = self._last.get(name) or self._published(material, signers, now)
        if last is not None:
            record = self._keep_published(body, name, record, last, now)
        requests = self._requests(name, signers, now)
        serials, problems = revocation.serial_requests(
            (body.get("metadata") or {}).get("annotations") or {}
        )
        for problem in problems:
            self._event(body, "Warning", INVALID_REVOCATION, problem)
        updated, changes = revocation.with_requests(
            record,
            ((r, t) for r, t, _ in requests),
            serials,
            now=now,
            serial_not_after=material.intermediate.certificate.not_valid_after_utc,
            intermediates=len(signers.intermediates),
        )
        floor = last.number if last is not None else 0
        updated = revocation.publish(updated, signers=signers, now=now, floor=floor)
        if updated != record or stored is None:
            self._store(name, updated, stored)
            logger.info(
                "CertificateAuthority %s: CRL %d published (%d revoked, %+d)",
                name,
                updated.number,
                len(updated.entries),
                len(updated.entries) - len(record.entries),
            )
        self._last[name] = updated
        finished = True
        for request, _, involved in requests:
            change = changes[request.source]
            if self._finish(request, involved, change, name):
                self._done(name, (request.kind, request.namespace, request.name))
            else:
                finished = False
        finished = self._finish_serials(body, changes, problems) and finished
        if updated.this_update is not None:
            metrics.crl_published(name, len(updated.entries), updated.this_update)
        # The record is not watched: one restored from a backup or edited is found this soon.
        next_change = revocation.next_change(updated)
        recheck = now + RECORD_RECHECK
        next_change = recheck if next_change is None else min(next_change, recheck)
        if not finished:  # recorded, but an annotation is left: finish it soon
            retry = now + FINISH_RETRY
            next_change = retry if next_change is None else min(next_change, retry)
        revoked = frozenset(e.serial for e in updated.entries)
        lost = revocation.unsigned(updated, signers, now)
        unsigned: tuple[str, str] | None = None
        if lost:
            unsigned = (
                SIGNER_LOST,
                f"no CRL for the leaves of intermediate(s) {', '.join(lost)}, some of them "
                f"revoked: their key is not in Secret {self._config.namespace}/"
                f"{revocation.signers_secret_name(name)} (deleted while no operator ran?); "
                "restore it from a backup",
            )
        return Published(
            replace(material, crl_pem=updated.crl_pem, revoked=revoked),
            next_change,
            unsigned,
            updated.number,
        )

    def _load(
        self,
        body: Mapping[str, Any],
        material: authority.AuthorityMaterial,
        signers: revocation.Signers,
        now: datetime,
    ) -> tuple[revocation.Record, Mapping[str, Any] | None] | Published:
        """The record and the ConfigMap it was read from (None: none); or, when the
        ConfigMap is not certsmith's or is damaged, what to publish meanwhile (the CRLs last
        published, never overwriting it: the entries in it keep certificates revoked). A
        deleted record is rebuilt from the one this operator published last or, after a
        restart, from the CRLs in the trust bundle of certsmith's namespace."""
        name = material.name
        record_name = revocation.record_name(name)
        stored = self._kube.get_configmap(namespace=self._config.namespace, name=record_name)
        where = f"ConfigMap {self._config.namespace}/{record_name}"
        last = self._last.get(name)
        if stored is not None and not _ours(stored, name):
            message = (
                f"{where} was not created by certsmith and is left untouched: delete it "
                "(certsmith then writes its own) or restore certsmith's from a backup"
            )
            return Published(material, now + FINISH_RETRY, (RECORD_CONFLICT, message))
        try:
            record = revocation.load((stored or {}).get("data"))
        except ValueError as error:
            message = (
                f"{where}: {error}; the CRLs are not updated until it is restored from a "
                "backup or deleted"
            )
            crl_pem = ((stored or {}).get("data") or {}).get(revocation.CRL_KEY, "")
            kept = last.crl_pem if last is not None else _parsable(crl_pem)
            revoked = frozenset(e.serial for e in last.entries) if last is not None else frozenset()
            retry = now + FINISH_RETRY  # until it is restored or deleted
            return Published(
                replace(material, crl_pem=kept, revoked=revoked), retry, (RECORD_INVALID, message)
            )
        if stored is None:
            rebuilt = last or self._published(material, signers, now)
            if rebuilt is not None and rebuilt.entries:
                record = replace(rebuilt, entries=revocation.live(rebuilt.entries, now))
                message = (
                    f"{where} was deleted: rebuilt from the {len(record.entries)} revocations "
                    "published last (deleting it does not un-revoke)"
                )
                logger.warning("CertificateAuthority %s: %s", name, message)
                self._event(body, "Warning", RECORD_RESTORED, message)
        return record, stored

    def _keep_published(
        self,
        body: Mapping[str, Any],
        name: str,
        record: revocation.Record,
        last: revocation.Record,
        now: datetime,
    ) -> revocation.Record:
        """`record` with the revocations published last that it lacks (a backup restored or
        a hand edit: never an un-revocation), with a Warning event saying so."""
        merged, missing = revocation.with_published(
            record, replace(last, entries=revocation.live(last.entries, now))
        )
        if missing:
            message = (
                f"ConfigMap {self._config.namespace}/{revocation.record_name(name)} lacked "
                f"{len(missing)} revocations published before (restored from an older backup "
                "or edited?): they are kept, a revocation is final; the CRL number keeps growing"
            )
            logger.warning("CertificateAuthority %s: %s", name, message)
            self._event(body, "Warning", RECORD_RESTORED, message)
        return merged

    def report_stale(self, material: authority.AuthorityMaterial) -> None:
        """Its CRLs could not be updated: the metrics say how old those served are
        (`material.crl_pem`, or after a restart those in the trust bundle of certsmith's
        namespace), the epoch when there are none, so that an alert on their age fires
        for every authority in every state."""
        pem = material.crl_pem
        if not pem:
            try:
                pem = self._bundle_crl(material)
            except ApiError as error:
                logger.warning("CertificateAuthority %s: CRL metrics: %s", material.name, error)
        revoked, this_update = revocation.served_state(pem)
        metrics.crl_published(material.name, revoked, this_update or EPOCH)

    def _bundle_crl(self, material: authority.AuthorityMaterial) -> str:
        """The CRLs in the trust bundle of certsmith's namespace ("" when none)."""
        if material.bundle_config_map is None:
            return ""
        found = self._kube.get_configmap(
            namespace=self._config.namespace, name=material.bundle_config_map
        )
        return str(((found or {}).get("data") or {}).get(revocation.CRL_KEY, ""))

    def _published(
        self, material: authority.AuthorityMaterial, signers: revocation.Signers, now: datetime
    ) -> revocation.Record | None:
        """The record as the CRLs last published in the trust bundle of certsmith's own
        namespace show it (entries kept until their intermediate expires, the CRL number
        they had); None when there is no such bundle or CRL."""
        if material.bundle_config_map is None:
            return None
        pem = self._bundle_crl(material)
        try:
            lists = crl.split_pem(pem)
            entries = revocation.entries_from_crls(pem, signers, now)
        except ValueError:
            return None
        numbers = [
            c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for c in lists
        ]
        return revocation.Record(entries, max(numbers, default=0))

    def requested(self, authority_name: str, kind: str, namespace: str, name: str) -> None:
        """A watch saw the revoke annotation on this Certificate or CertificateRequest
        (`kind`) of authority `authority_name`: its next step reads it. Also each object
        listed at the start of a term, so a request made while no replica led is seen."""
        with self._guard:
            self._pending.setdefault(authority_name, set()).add((kind, namespace, name))

    def release_deleted(self, name: str) -> None:
        """Authority `name` does not exist: each request addressed to it on an object being
        deleted is refused (Warning event; annotations and finalizer removed), so that the
        object goes instead of waiting for an authority that may never come back. Others
        stay pending: the authority re-created handles them."""
        with self._guard:
            pending = sorted(self._pending.get(name, ()))
        for key in pending:
            kind, namespace, object_name = key
            plural = names.CERTIFICATES if kind == "Certificate" else names.CERTIFICATE_REQUESTS
            try:
                item = self._read(kind, namespace, object_name)
            except ApiError as error:
                logger.warning("%s %s/%s: %s", kind, namespace, object_name, error)
                continue
            metadata = (item or {}).get("metadata") or {}
            if item is None or not metadata.get("deletionTimestamp") or _issuer(item) != name:
                continue
            if revocation.REQUESTED_AT_ANNOTATION in (metadata.get("annotations") or {}):
                self._event(
                    item,
                    "Warning",
                    INVALID_REVOCATION,
                    f"CertificateAuthority {name} does not exist: nothing revoked",
                )
            if self._clear(plural, item, {}):
                self._done(name, key)

    def _signers(self, material: authority.AuthorityMaterial, now: datetime) -> revocation.Signers:
        """The CAs whose CRLs are published, kept in the signers Secret (written when that
        set changes): the current intermediate is kept there before it can be replaced,
        so its leaves keep a CRL after an intermediate renewal or a root rotation."""
        secret_name = revocation.signers_secret_name(material.name)
        stored = self._kube.get_secret(namespace=self._config.namespace, name=secret_name)
        kept = revocation.load_signers((stored or {}).get("data"))
        before = self._signed_with.get(material.name)
        remembered = [*before.intermediates, *before.roots] if before is not None else []
        signers = revocation.retained(
            [*kept, *remembered], intermediate=material.intermediate, root=material.root, now=now
        )
        self._signed_with[material.name] = signers
        if sorted(crl.key_id(p.certificate) for p in kept) == sorted(signers.key_ids):
            return signers
        have = {crl.key_id(p.certificate) for p in kept}
        lost = [k for k in signers.key_ids if k not in have and before and k in before.key_ids]
        if lost:
            logger.warning(
                "CertificateAuthority %s: Secret %s/%s lacked the CRL signers %s (deleted or "
                "edited?): written again from memory",
                material.name,
                self._config.namespace,
                secret_name,
                ", ".join(lost),
            )
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name,
                "namespace": self._config.namespace,
                "labels": {
                    names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
                    names.CA_AUTHORITY_LABEL: material.name,
                },
            },
            "data": revocation.signers_data(signers),
        }
        if stored is None:
            self._kube.create_secret(body=body)
        else:
            body["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
            self._kube.replace_secret(body=body)
        return signers

    def _requests(
        self, name: str, signers: revocation.Signers, now: datetime
    ) -> list[tuple[revocation.Request, revocation.Target, Mapping[str, Any]]]:
        """The revocations asked for on this authority's Certificates and CertificateRequests
        (those `requested`, read now) with what each revokes; an invalid one gets a Warning
        event and its annotations removed. One no longer asking is forgotten."""
        found: list[tuple[revocation.Request, revocation.Target, Mapping[str, Any]]] = []
        with self._guard:
            pending = sorted(self._pending.get(name, ()))
        intermediates = signers.intermediate_certificates()
        for key in pending:
            kind, namespace, object_name = key
            plural = names.CERTIFICATES if kind == "Certificate" else names.CERTIFICATE_REQUESTS
            item = self._read(kind, namespace, object_name)
            annotations = ((item or {}).get("metadata") or {}).get("annotations") or {}
            if item is None or revocation.REQUESTED_AT_ANNOTATION not in annotations:
                # Gone, or handled (or the annotation removed by hand): only its finalizer
                # may be left.
                if item is None or self._clear(plural, item, {}):
                    self._done(name, key)
                continue
            if _issuer(item) != name:
                self._done(name, key)  # moved to another authority: its watch event says so
                continue
            try:
                request = revocation.request_of(kind, item, now)
                if request is None:
                    continue
                status = item.get("status") or {}
                if kind == "Certificate":
                    target = revocation.certificate_target(
                        request, status, self._leaf(item), intermediates, name
                    )
                else:
                    target = revocation.request_target(
                        request, status.get("certificate"), intermediates, name
                    )
            except revocation.InvalidRequest as error:
                self._event(item, "Warning", INVALID_REVOCATION, str(error))
                if self._clear(plural, item, {}):
                    self._done(name, key)
                continue
            found.append((request, target, item))
        return found

    def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The Certificate or CertificateRequest (`kind`), or None."""
        if kind == "Certificate":
            return self._kube.get_certificate(namespace=namespace, name=name)
        return self._kube.get_certificate_request(namespace=namespace, name=name)

    def _leaf(self, certificate: Mapping[str, Any]) -> x509.Certificate | None:
        """The leaf in a Certificate's Secret when its key matches the Secret's tls.key
        (a certificate planted there without its key is never taken), else None."""
        secret_name = (certificate.get("spec") or {}).get("secretName")
        namespace = (certificate.get("metadata") or {}).get("namespace")
        if not secret_name or not namespace:
            return None
        secret = self._kube.get_secret(namespace=namespace, name=secret_name)
        if secret is None:
            return None
        contents = tls_secret.parse_secret(secret)
        if contents.leaf is None or contents.key is None:
            return None
        if not keys.key_matches_certificate(contents.key, contents.leaf):
            return None
        return contents.leaf

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
        change: revocation.Change,
        authority_name: str,
    ) -> bool:
        """Post what became of the request and remove its annotations; for a Certificate
        recorded, ask for its re-issue in the same write unless --no-reissue. Whether that
        was written (`_clear`)."""
        plural = names.CERTIFICATES if request.kind == "Certificate" else names.CERTIFICATE_REQUESTS
        extra: dict[str, str | None] = {}
        if change.recorded:
            message = f"{change.message}; the CRL of CertificateAuthority {authority_name} lists it"
            same_key = request.reason in names.KEY_COMPROMISE_REASONS and _keeps_its_key(involved)
            if same_key and request.reissue:
                message += (
                    "; not re-issued: spec.privateKey.rotationPolicy is Never, which would "
                    "certify the compromised key again (set it to Always, then kubectl "
                    "certsmith renew)"
                )
            self._event(involved, "Normal", REVOKED, message)
            going = (involved.get("metadata") or {}).get("deletionTimestamp")
            if request.reissue and not same_key and not going:
                extra[names.RENEWAL_REQUEST_ANNOTATION] = request.requested_at
        else:
            self._event(involved, "Warning", RECORD_FULL, change.message)
        return self._clear(plural, involved, extra)

    def _clear(
        self, plural: str, involved: Mapping[str, Any], extra: Mapping[str, str | None]
    ) -> bool:
        """Remove the revoke annotations of `involved` and set `extra`, then its
        names.REVOKE_FINALIZER (an object deleted after the request goes only now); False
        (logged) when the apiserver refused or did not answer: the step finishes it later
        (the record holds the revocation already, so it is never applied twice)."""
        metadata = involved.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        finalizers = metadata.get("finalizers") or []
        patch: dict[str, str | None] = dict.fromkeys(revocation.REQUEST_ANNOTATIONS)
        patch.update(extra)
        try:
            if any(k in annotations for k in patch):
                self._kube.patch_annotations(
                    plural=plural,
                    namespace=metadata.get("namespace"),
                    name=metadata.get("name", ""),
                    annotations=patch,
                )
            if names.REVOKE_FINALIZER in finalizers:
                self._kube.remove_finalizer(
                    plural=plural,
                    namespace=metadata.get("namespace"),
                    name=metadata.get("name", ""),
                    finalizers=finalizers,
                    finalizer=names.REVOKE_FINALIZER,
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
        self, body: Mapping[str, Any], changes: Mapping[str, revocation.Change], problems: list[str]
    ) -> bool:
        """Post what became of the authority's `revoke.certsmith.dev/` annotations and remove
        them: recorded, or refused (a Warning event said why). Whether that was written
        (as `_clear`)."""
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        keys_ = [k for k in annotations if k.startswith(revocation.SERIAL_ANNOTATION_PREFIX)]
        if not keys_:
            return True
        for source, change in changes.items():
            if not source.startswith("serial "):
                continue
            if change.recorded:
                self._event(body, "Normal", REVOKED, f"{source}: {change.message}")
            else:
                self._event(body, "Warning", RECORD_FULL, change.message)
        return self._clear(names.AUTHORITIES, body, dict.fromkeys(keys_))


def _keeps_its_key(involved: Mapping[str, Any]) -> bool:
    """Whether a Certificate re-uses its key when re-issued (privateKey.rotationPolicy Never)."""
    key = (involved.get("spec") or {}).get("privateKey") or {}
    return bool(key.get("rotationPolicy") == "Never")


def _ours(stored: Mapping[str, Any], authority_name: str) -> bool:
    """Whether a record ConfigMap carries the labels certsmith writes on it."""
    labels = (stored.get("metadata") or {}).get("labels") or {}
    return (
        labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE
        and labels.get(names.CA_AUTHORITY_LABEL) == authority_name
    )


def _parsable(crl_pem: str) -> str:
    """`crl_pem` when every CRL in it parses, else ""."""
    try:
        return crl_pem if crl.split_pem(crl_pem) else ""
    except ValueError:
        return ""


def _issuer(involved: Mapping[str, Any]) -> str:
    """The authority a Certificate or CertificateRequest names (spec.issuerRef.name)."""
    return str(
        ((involved.get("spec") or {}).get("issuerRef") or {}).get("name", model.DEFAULT_ISSUER)
    )


CRL_CACHE_SECONDS = 10.0
"""How long a replica serves a CRL it read before reading the record again: clients fetching
the distribution point do not each cost an apiserver read."""


class CrlCache:
    """The DER of each authority's CRLs, by the key identifier of the CA that signed each
    (revocation.CRL_KEY of its record), read at most every CRL_CACHE_SECONDS; served by
    every replica at /crl/<authority>.crl (the current intermediate's) and
    /crl/<authority>/<key id>.crl (that CA's)."""

    def __init__(
        self, kube: Kube, config: Config, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._kube = kube
        self._config = config
        self._clock = clock
        self._read: dict[str, tuple[float, list[tuple[str, bytes]]]] = {}
        self._guard = threading.Lock()

    def der(self, authority_name: str, key_id: str | None = None) -> bytes | None:
        """The CRL of the CA with `key_id` (None: the current intermediate's, the first);
        None when the authority has no such CRL. ApiError when the apiserver does not
        answer, ValueError when the record holds a CRL that does not parse."""
        now = self._clock()
        with self._guard:
            cached = self._read.get(authority_name)
        if cached is None or now - cached[0] >= CRL_CACHE_SECONDS:
            stored = self._kube.get_configmap(
                namespace=self._config.namespace, name=revocation.record_name(authority_name)
            )
            pem = ((stored or {}).get("data") or {}).get(revocation.CRL_KEY, "")
            lists = [
                (crl.authority_key_id(c) or "", c.public_bytes(serialization.Encoding.DER))
                for c in crl.split_pem(pem)
            ]
            cached = (now, lists)
            with self._guard:
                self._read[authority_name] = cached
        for found, der in cached[1]:
            if key_id is None or found == key_id:
                return der
        return None
