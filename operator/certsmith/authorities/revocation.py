"""Revocation: the requests users make, the record certsmith keeps, and the CRL it publishes.

A request is made through an object its maker may write, and certsmith takes the serial
from what only it writes:
- a Certificate or a CertificateRequest annotated `certsmith.dev/revoke-requested-at`
  (`kubectl certsmith revoke`): its `status.serialNumber` (written through the status
  subresource by certsmith, so a namespace user can revoke only what was issued to their
  namespace's objects);
- a CertificateAuthority annotated `revoke.certsmith.dev/<serial hex>: <reason>` (a
  cluster-scoped object: revoking a bare serial needs `patch` on the authority).

The record lives in the ConfigMap `<authority>-revocations` of the operator's namespace,
written only by certsmith: every entry until its certificate expires, the last CRL number,
and the CRLs last published. Pure: no I/O.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from certsmith.api import model, names, times
from certsmith.pki import ca, crl, inspect

REQUESTED_AT_ANNOTATION = names.REVOKE_REQUEST_ANNOTATION
REASON_ANNOTATION = names.REVOKE_REASON_ANNOTATION
REISSUE_ANNOTATION = names.REVOKE_REISSUE_ANNOTATION
SERIAL_ANNOTATION_PREFIX = names.REVOKE_SERIAL_PREFIX
REQUEST_ANNOTATIONS = (REQUESTED_AT_ANNOTATION, REASON_ANNOTATION, REISSUE_ANNOTATION)

RECORD_KEY = "revocations.json"
CRL_KEY = "ca.crl"
"""The key of the published CRLs (PEM: the intermediate's, then the root's) in the record and
in each trust-bundle ConfigMap."""

CRL_VALIDITY = timedelta(hours=24)
"""nextUpdate = thisUpdate + CRL_VALIDITY (RFC 5280 5.1.2.5)."""
REPUBLISH_AFTER = timedelta(hours=12)
"""A CRL is signed again this long after its thisUpdate (half its validity), or at once
when an entry is added or dropped or the intermediate changed."""


CRL_URL_FIELD = "spec.crl.distributionPointURL"


def crl_url(spec: Mapping[str, Any]) -> str | None:
    """spec.crl.distributionPointURL (None when unset); InvalidSpec unless it is an http or
    https URL with a host (RFC 5280 4.2.1.13 recommends http: a verifier fetching a CRL over
    https would need to check that server's certificate first)."""
    value = (spec.get("crl") or {}).get("distributionPointURL")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise model.InvalidSpec(CRL_URL_FIELD, f"{value!r} is not a string")
    parts = urllib.parse.urlsplit(value)
    spaced = any(c.isspace() for c in value)
    if parts.scheme not in ("http", "https") or not parts.hostname or spaced:
        raise model.InvalidSpec(CRL_URL_FIELD, f"{value!r} is not an http:// or https:// URL")
    return value


def record_name(authority: str) -> str:
    """The ConfigMap (operator's namespace) holding `authority`'s revocations and CRL."""
    return f"{authority}-revocations"


@dataclass(frozen=True)
class Entry:
    """A revoked certificate: serial, when revoked (the request's time), why (a
    crl.REASONS name), when the certificate expires (the entry is dropped then), what asked
    for it ("Certificate ns/name", "CertificateRequest ns/name", "serial")."""

    serial: int
    revoked_at: datetime
    reason: str
    not_after: datetime
    source: str
    requested_at: str = ""
    """The request's annotation value: the same request is never applied twice."""


@dataclass(frozen=True)
class Record:
    """What `<authority>-revocations` holds."""

    entries: tuple[Entry, ...] = ()
    number: int = 0
    """The CRL number of the last CRL published (RFC 5280 5.2.3: increases with each)."""
    this_update: datetime | None = None
    issuer: str = ""
    """The SHA-256 fingerprint of the intermediate that signed the last CRL."""
    crl_pem: str = ""


@dataclass(frozen=True)
class Request:
    """A revocation asked for on an object (`requests_of`)."""

    kind: str
    namespace: str
    name: str
    requested_at: str
    reason: str
    reissue: bool
    serial: int | None
    not_after: datetime | None

    @property
    def source(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class InvalidRequest(ValueError):
    """A revocation annotation that cannot be honoured; the message names the annotation."""


def parse_reason(value: str | None, where: str) -> str:
    """A CRLReason name (crl.REASONS; default `unspecified`); InvalidRequest naming `where`."""
    reason = value or "unspecified"
    problem = crl.reason_problem(reason)
    if problem is not None:
        raise InvalidRequest(f"{where}: {problem}")
    return reason


def parse_serial(text: str, where: str) -> int:
    """A serial in hex (crl.parse_serial); InvalidRequest naming `where`."""
    try:
        return crl.parse_serial(text)
    except ValueError as error:
        raise InvalidRequest(f"{where}: {error}") from None


def request_of(kind: str, body: Mapping[str, Any]) -> Request | None:
    """The revocation asked for on a Certificate or CertificateRequest `body` (None: none);
    InvalidRequest when its reason is not one. `serial` and `not_after` come from its
    status (None when nothing was issued yet)."""
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    requested_at = annotations.get(REQUESTED_AT_ANNOTATION)
    if not requested_at:
        return None
    reason = parse_reason(annotations.get(REASON_ANNOTATION), REASON_ANNOTATION)
    status = body.get("status") or {}
    serial_text = status.get("serialNumber")
    serial = parse_serial(serial_text, "status.serialNumber") if serial_text else None
    return Request(
        kind=kind,
        namespace=metadata.get("namespace", ""),
        name=metadata.get("name", ""),
        requested_at=str(requested_at),
        reason=reason,
        reissue=kind == "Certificate" and annotations.get(REISSUE_ANNOTATION) != "false",
        serial=serial,
        not_after=times.parse_time(status.get("notAfter")),
    )


def serial_requests(annotations: Mapping[str, str]) -> tuple[dict[int, str], list[str]]:
    """The serials a CertificateAuthority's `revoke.certsmith.dev/<hex>` annotations revoke,
    with their reasons, and a problem for each annotation that is not one."""
    found, problems = {}, []
    for key, value in annotations.items():
        if not key.startswith(SERIAL_ANNOTATION_PREFIX):
            continue
        try:
            serial = parse_serial(key.removeprefix(SERIAL_ANNOTATION_PREFIX), key)
            found[serial] = parse_reason(value, key)
        except InvalidRequest as error:
            problems.append(str(error))
    return found, problems


def applied(record: Record, request: Request) -> bool:
    """Whether `request` was recorded already (its serial may since have been dropped)."""
    return any(
        e.source == request.source and e.requested_at == request.requested_at
        for e in record.entries
    )


def with_requests(
    record: Record,
    requests: Iterable[Request],
    serials: Mapping[int, str],
    *,
    now: datetime,
    serial_not_after: datetime,
) -> Record:
    """`record` with every request and bare serial not yet in it added (a serial revoked
    already keeps its first entry). A bare serial's certificate is unknown: its entry stays
    until `serial_not_after` (the intermediate's expiry, which no leaf it signed outlives)."""
    entries = list(record.entries)
    revoked = {e.serial for e in entries}
    for request in requests:
        if request.serial is None or request.serial in revoked or applied(record, request):
            continue
        entries.append(
            Entry(
                serial=request.serial,
                revoked_at=(times.parse_time(request.requested_at) or now).replace(microsecond=0),
                reason=request.reason,
                not_after=request.not_after or serial_not_after,
                source=request.source,
                requested_at=request.requested_at,
            )
        )
        revoked.add(request.serial)
    for serial, reason in sorted(serials.items()):
        if serial not in revoked:
            at = now.replace(microsecond=0)
            entries.append(Entry(serial, at, reason, serial_not_after, "serial"))
            revoked.add(serial)
    return replace(record, entries=tuple(entries))


def live(entries: Sequence[Entry], now: datetime) -> tuple[Entry, ...]:
    """The entries whose certificate has not expired at `now` (RFC 5280 5.1.2.6: an entry
    may be removed once the certificate's validity has ended)."""
    return tuple(e for e in entries if e.not_after > now)


def republish_at(record: Record) -> datetime | None:
    """When the CRL must be signed again without any change (None: none published yet)."""
    return None if record.this_update is None else record.this_update + REPUBLISH_AFTER


def next_change(record: Record) -> datetime | None:
    """The next time the record changes by itself: a republication or an entry expiring."""
    times_ = [e.not_after for e in record.entries]
    due = republish_at(record)
    if due is not None:
        times_.append(due)
    return min(times_) if times_ else None


def publish(
    record: Record, *, intermediate: ca.CAKeyPair, root: ca.CAKeyPair, now: datetime
) -> Record:
    """`record` with its expired entries dropped and a new CRL if anything changed, the CRL
    is due again (`republish_at`) or another intermediate signs now; else `record` itself.

    `ca.crl` holds two CRLs: the intermediate's, listing the revoked leaves, and the root's,
    empty (certsmith never revokes its intermediates): a verifier that checks every
    certificate of the chain (nginx `ssl_crl`, openssl `-crl_check_all`) needs both.
    """
    entries = live(record.entries, now)
    issuer = inspect.fingerprint_sha256(intermediate.certificate)
    due = republish_at(record)
    if (
        sorted(e.serial for e in entries) == listed(record.crl_pem)
        and record.issuer == issuer
        and record.crl_pem
        and due is not None
        and now < due
    ):
        return record
    number = record.number + 1
    this_update = now.replace(microsecond=0)
    revoked = [crl.Revoked(e.serial, e.revoked_at, e.reason) for e in entries]
    pem = "".join(
        crl.to_pem(
            crl.build_crl(
                issuer=signer,
                entries=listing,
                number=number,
                this_update=this_update,
                next_update=this_update + CRL_VALIDITY,
            )
        )
        for signer, listing in ((intermediate, revoked), (root, []))
    )
    return Record(entries, number, this_update, issuer, pem)


def listed(crl_pem: str) -> list[int]:
    """The serials the first CRL of `crl_pem` (the intermediate's) lists, ascending; empty
    when there is none."""
    if not crl_pem:
        return []
    return sorted(r.serial_number for r in x509.load_pem_x509_crl(crl_pem.encode()))


def dump(record: Record) -> dict[str, str]:
    """The ConfigMap data of `record`."""
    body = {
        "crlNumber": record.number,
        "thisUpdate": times.format_time(record.this_update) if record.this_update else None,
        "issuer": record.issuer,
        "entries": [
            {
                "serial": format(e.serial, "x"),
                "revokedAt": times.format_time(e.revoked_at),
                "reason": e.reason,
                "notAfter": times.format_time(e.not_after),
                "source": e.source,
                "requestedAt": e.requested_at,
            }
            for e in record.entries
        ],
    }
    return {RECORD_KEY: json.dumps(body, indent=1), CRL_KEY: record.crl_pem}


def load(data: Mapping[str, str] | None) -> Record:
    """The Record in ConfigMap data (an empty one when there is none); ValueError when it
    is not what `dump` writes."""
    if not data or RECORD_KEY not in data:
        return Record()
    try:
        body = json.loads(data[RECORD_KEY])
        entries = tuple(
            Entry(
                serial=int(item["serial"], 16),
                revoked_at=_time(item["revokedAt"]),
                reason=parse_reason(item["reason"], "reason"),
                not_after=_time(item["notAfter"]),
                source=str(item["source"]),
                requested_at=str(item.get("requestedAt", "")),
            )
            for item in body["entries"]
        )
        this_update = times.parse_time(body.get("thisUpdate"))
        listed(data.get(CRL_KEY, ""))  # a CRL that does not parse is a damaged record too
        return Record(
            entries, int(body["crlNumber"]), this_update, str(body["issuer"]), data.get(CRL_KEY, "")
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{RECORD_KEY} is not a revocation record: {error}") from None


def _time(text: str) -> datetime:
    parsed = times.parse_time(text)
    if parsed is None:
        raise ValueError(f"{text!r} is not a time")
    return parsed
