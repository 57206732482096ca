"""Revocation: the requests users make, the record certsmith keeps, and the CRLs it publishes.

A request is made through an object its maker may write, and certsmith takes the serial
from what only it writes:
- a Certificate annotated `certsmith.dev/revoke-requested-at` (`kubectl certsmith revoke`):
  its `status.serialNumber` (written through the status subresource by certsmith) and the
  certificate in its Secret when that is the same one (its key matching tls.key);
- a CertificateRequest so annotated: the certificate in its `status.certificate` (written
  only by a holder of the `sign` verb), checked against the authority's signatures;
- a CertificateAuthority annotated `revoke.certsmith.dev/<serial hex>: <reason>` (a
  cluster-scoped object: revoking a bare serial needs `patch` on the authority).
The plugin also pins the serial it read (`certsmith.dev/revoke-serial`): a request whose
object holds another certificate by the time it is handled is refused, never applied to a
certificate issued after it.

CRLs are per issuing CA (RFC 5280 5.1: a CRL is signed by the issuer of the certificates it
lists): one per intermediate whose leaves may still be valid (the current one and those it
replaced, until they expire) and one, empty, per root that signed one of them.

The record lives in the ConfigMap `<authority>-revocations` of the operator's namespace,
written only by certsmith: every entry until its certificate expires, the last CRL number,
and the CRLs last published. Pure: no I/O.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from certsmith.api import conditions, model, names, times
from certsmith.certificates import status as certificate_status
from certsmith.pki import ca, crl, inspect, keys

REQUESTED_AT_ANNOTATION = names.REVOKE_REQUEST_ANNOTATION
REASON_ANNOTATION = names.REVOKE_REASON_ANNOTATION
REISSUE_ANNOTATION = names.REVOKE_REISSUE_ANNOTATION
SERIAL_ANNOTATION = names.REVOKE_SERIAL_ANNOTATION
SERIAL_ANNOTATION_PREFIX = names.REVOKE_SERIAL_PREFIX
REQUEST_ANNOTATIONS = (
    REQUESTED_AT_ANNOTATION,
    REASON_ANNOTATION,
    REISSUE_ANNOTATION,
    SERIAL_ANNOTATION,
)

RECORD_KEY = "revocations.json"
CRL_KEY = "ca.crl"
"""The key of the published CRLs (PEM: the current intermediate's first, then the earlier
intermediates', then the roots') in the record and in each trust-bundle ConfigMap."""

CRL_VALIDITY = timedelta(hours=24)
"""nextUpdate = thisUpdate + CRL_VALIDITY (RFC 5280 5.1.2.5)."""
REPUBLISH_AFTER = timedelta(hours=12)
"""A CRL is signed again this long after its thisUpdate (half its validity), or at once
when an entry is added, changed or dropped or the set of issuing CAs changed."""
CLOCK_SKEW = ca.BACKDATE
"""thisUpdate is this long before the signing time, as leaves' notBefore: a verifier whose
clock is behind by less does not find the CRL 'not yet valid' (RFC 5280 5.1.2.4)."""
FUTURE_REQUEST = certificate_status.REVOCATION_AHEAD
"""A request time further ahead than this is refused (a typo, not a clock difference)."""

MAX_RECORD_BYTES = 900_000
"""The record's data (entries and CRLs) is kept below this: a ConfigMap holds at most
1 MiB (Kubernetes), and the trust-bundle ConfigMaps carry the same CRLs next to the roots.
A revocation that would go beyond is refused (`RecordFull`)."""
CRL_ENTRY_BYTES = 80
"""A generous size of one CRL entry in PEM (serial of up to 20 octets, date, reason code)."""

REASON_CODES: dict[str, int] = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "privilegeWithdrawn": 9,
}
"""RFC 5280 5.3.1 CRLReason codes of crl.REASONS: how the record stores a reason."""
_REASON_NAMES = {code: name for name, code in REASON_CODES.items()}

CRL_URL_FIELD = "spec.crl.distributionPointURL"
ISSUER_PLACEHOLDER = "{issuer}"
"""In spec.crl.distributionPointURL: replaced by the hex key identifier of the intermediate
that signs the leaf (crl.key_id), so each leaf names its own issuer's CRL
(/crl/<authority>/<key id>.crl on certsmith's server)."""

PUBLISHED = "CRLPublished"
"""The authority condition saying whether its CRLs are current."""


def crl_url(spec: Mapping[str, Any]) -> str | None:
    """spec.crl.distributionPointURL (None when unset); InvalidSpec unless it is an http or
    https URL with a host and no spaces (RFC 5280 4.2.1.13 recommends http: a verifier
    fetching a CRL over https would need to check that server's certificate first)."""
    value = (spec.get("crl") or {}).get("distributionPointURL")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise model.InvalidSpec(CRL_URL_FIELD, f"{value!r} is not a string")
    parts = urllib.parse.urlsplit(value.replace(ISSUER_PLACEHOLDER, "x"))
    spaced = any(c.isspace() for c in value)
    if parts.scheme not in ("http", "https") or not parts.hostname or spaced:
        raise model.InvalidSpec(CRL_URL_FIELD, f"{value!r} is not an http:// or https:// URL")
    return value


def distribution_point(url: str | None, intermediate: x509.Certificate) -> str | None:
    """The CRL distribution point a leaf signed by `intermediate` names: `url` with
    ISSUER_PLACEHOLDER replaced by the intermediate's key identifier."""
    if url is None:
        return None
    return url.replace(ISSUER_PLACEHOLDER, crl.key_id(intermediate))


def record_name(authority: str) -> str:
    """The ConfigMap (operator's namespace) holding `authority`'s revocations and CRLs."""
    return f"{authority}-revocations"


def signers_secret_name(authority: str) -> str:
    """The Secret (operator's namespace) keeping the CA key pairs that sign `authority`'s
    CRLs: each intermediate it had until it expires, each root while one of those or the
    current intermediate was signed by it."""
    return f"{authority}-crl-signers"


@dataclass(frozen=True)
class Entry:
    """A revoked certificate: serial, when revoked, why (a crl.REASONS name), when the
    certificate expires (the entry is dropped then), what asked for it ("Certificate
    ns/name", "CertificateRequest ns/name", "serial"), and the key identifier of the
    intermediate that signed it ("" for a bare serial: every intermediate's CRL lists it)."""

    serial: int
    revoked_at: datetime
    reason: str
    not_after: datetime
    source: str
    issuer: str = ""


@dataclass(frozen=True)
class Record:
    """What `<authority>-revocations` holds."""

    entries: tuple[Entry, ...] = ()
    number: int = 0
    """The CRL number of the last CRLs published (RFC 5280 5.2.3: increases with each)."""
    this_update: datetime | None = None
    signers: tuple[str, ...] = ()
    """The key identifiers of the CAs whose CRLs were published last, in ca.crl's order."""
    crl_pem: str = ""


@dataclass(frozen=True)
class Request:
    """A revocation asked for on a Certificate or CertificateRequest (`request_of`)."""

    kind: str
    namespace: str
    name: str
    requested_at: str
    reason: str
    reissue: bool
    pinned: int | None
    """The serial the plugin read when it made the request (None: hand-written, meaning
    whatever the object holds)."""

    @property
    def source(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Target:
    """The certificate a request revokes (`certificate_target`, `request_target`)."""

    serial: int
    not_after: datetime
    issuer: str
    """The key identifier of the intermediate that signed it ("" when unknown)."""


class InvalidRequest(ValueError):
    """A revocation that cannot be honoured; the message names the annotation or field."""


def parse_reason(value: str | None, where: str) -> str:
    """A CRLReason name (crl.REASONS; default `unspecified`); InvalidRequest naming `where`."""
    reason = value or "unspecified"
    problem = crl.reason_problem(reason)
    if problem is not None:
        raise InvalidRequest(f"{where}: {problem}")
    return reason


def parse_serial(text: str, where: str) -> int:
    """A serial in hex (crl.parse_serial: positive, at most 20 octets); InvalidRequest
    naming `where`."""
    try:
        return crl.parse_serial(text)
    except ValueError as error:
        raise InvalidRequest(f"{where}: {error}") from None


def request_of(kind: str, body: Mapping[str, Any], now: datetime) -> Request | None:
    """The revocation asked for on a Certificate or CertificateRequest `body` (None: none);
    InvalidRequest naming the annotation whose value is not one: a reason not in
    crl.REASONS, a time that is not RFC 3339 or is more than FUTURE_REQUEST ahead of `now`,
    a reissue other than `true`/`false`, a serial that is not one."""
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    requested_at = annotations.get(REQUESTED_AT_ANNOTATION)
    if not requested_at:
        return None
    at = times.parse_time(str(requested_at))
    if at is None:
        raise InvalidRequest(f"{REQUESTED_AT_ANNOTATION}: {requested_at!r} is not an RFC 3339 time")
    if at > now + FUTURE_REQUEST:
        raise InvalidRequest(f"{REQUESTED_AT_ANNOTATION}: {requested_at!r} is in the future")
    reason = parse_reason(annotations.get(REASON_ANNOTATION), REASON_ANNOTATION)
    reissue = annotations.get(REISSUE_ANNOTATION, "true")
    if reissue not in ("true", "false"):
        raise InvalidRequest(f"{REISSUE_ANNOTATION}: {reissue!r} is neither true nor false")
    pinned_text = annotations.get(SERIAL_ANNOTATION)
    pinned = parse_serial(pinned_text, SERIAL_ANNOTATION) if pinned_text else None
    return Request(
        kind=kind,
        namespace=metadata.get("namespace", ""),
        name=metadata.get("name", ""),
        requested_at=str(requested_at),
        reason=reason,
        reissue=kind == "Certificate" and reissue == "true",
        pinned=pinned,
    )


def _check_pinned(request: Request, serial: int) -> None:
    if request.pinned is None or request.pinned == serial:
        return
    if request.kind != "Certificate":  # a CertificateRequest is signed once, never re-issued
        raise InvalidRequest(
            f"{SERIAL_ANNOTATION}: {request.kind} {request.name} holds serial {serial:x}, not "
            f"{request.pinned:x}: nothing revoked (a request revokes only its own certificate)"
        )
    raise InvalidRequest(
        f"{SERIAL_ANNOTATION}: {request.kind} {request.name} holds serial {serial:x}, not "
        f"{request.pinned:x} (re-issued since the request): nothing revoked; to revoke "
        f"{request.pinned:x}, kubectl certsmith revoke --serial {request.pinned:x} "
        "--authority AUTHORITY"
    )


def certificate_target(
    request: Request,
    status: Mapping[str, Any],
    leaf: x509.Certificate | None,
    intermediates: Mapping[str, x509.Certificate],
    authority: str,
) -> Target:
    """What a Certificate's request revokes: the serial in its `status` (certsmith's), with
    the expiry and issuer of `leaf` (its Secret's certificate, passed only when its key
    matches the Secret's tls.key) when it is that same certificate. InvalidRequest when it
    has none yet, holds another than the pinned serial, or its leaf was signed by none of
    `intermediates` (by key identifier: those of `authority`)."""
    serial_text = status.get("serialNumber")
    if not serial_text:
        raise InvalidRequest(
            f"nothing to revoke: Certificate {request.name} has no certificate yet "
            "(status.serialNumber is empty)"
        )
    serial = parse_serial(str(serial_text), "status.serialNumber")
    _check_pinned(request, serial)
    if leaf is not None and leaf.serial_number == serial:
        return Target(serial, leaf.not_valid_after_utc, _issuer_of(leaf, intermediates, authority))
    not_after = times.parse_time(status.get("notAfter"))
    if not_after is None:
        raise InvalidRequest("status.notAfter: not a time")
    return Target(serial, not_after, "")


def request_target(
    request: Request,
    certificate_pem: str | None,
    intermediates: Mapping[str, x509.Certificate],
    authority: str,
) -> Target:
    """What a CertificateRequest's request revokes: the leaf of its `status.certificate`,
    which must be signed by one of `intermediates` (`authority`'s, by key identifier and
    signature). InvalidRequest when it has none, holds another than the pinned serial, or
    another CA signed it."""
    if not certificate_pem:
        raise InvalidRequest(
            f"nothing to revoke: CertificateRequest {request.name} has no certificate yet "
            "(status.certificate is empty)"
        )
    try:
        leaf = inspect.load_pem_certificates(certificate_pem.encode())[0]
    except (ValueError, IndexError):
        raise InvalidRequest("status.certificate: not a PEM certificate") from None
    _check_pinned(request, leaf.serial_number)
    return Target(
        leaf.serial_number, leaf.not_valid_after_utc, _issuer_of(leaf, intermediates, authority)
    )


def _issuer_of(
    leaf: x509.Certificate, intermediates: Mapping[str, x509.Certificate], authority: str
) -> str:
    """The key identifier of the intermediate of `intermediates` that signed `leaf`;
    InvalidRequest (naming the leaf's issuer) when none did."""
    issuer = crl.authority_key_id(leaf)
    signer = intermediates.get(issuer or "")
    if signer is None or not inspect.issued_by(leaf, signer):
        raise InvalidRequest(
            f"serial {leaf.serial_number:x} was signed by {leaf.issuer.rfc4514_string()!r}, "
            f"not by a CA of CertificateAuthority {authority} that signs CRLs: nothing revoked "
            "(spec.issuerRef changed since it was issued? revoke it through the authority that "
            f"signed it; or the key of that intermediate, {issuer}, is "
            f"no longer kept in Secret {signers_secret_name(authority)})"
        )
    return str(issuer)


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


@dataclass(frozen=True)
class Change:
    """What `with_requests` did with one request or serial: `recorded` (now in the record,
    or already there with that reason), else `refused` says why."""

    recorded: bool
    message: str


def with_requests(
    record: Record,
    targets: Iterable[tuple[Request, Target]],
    serials: Mapping[int, str],
    *,
    now: datetime,
    serial_not_after: datetime,
    intermediates: int = 1,
    max_bytes: int = MAX_RECORD_BYTES,
) -> tuple[Record, dict[str, Change]]:
    """`record` with every target and bare serial added, and what became of each (by the
    request's source, or `serial <hex>`). A serial revoked already keeps its first entry;
    a new reason replaces its reason (RFC 5280 allows a reason to change, e.g. to
    keyCompromise after an investigation). A bare serial's certificate is unknown: its
    entry stays until `serial_not_after` (the current intermediate's expiry) and the CRL of
    every intermediate there is now lists it (`intermediates` of them; not a later one:
    `lists`). An addition that would take the
    record beyond `max_bytes` (`record_bytes`) is refused."""
    entries = {e.serial: e for e in record.entries}
    size = record_bytes(record)
    changes: dict[str, Change] = {}
    at = now.replace(microsecond=0)
    wanted = [
        (
            request.source,
            Entry(
                target.serial,
                (times.parse_time(request.requested_at) or now).replace(microsecond=0),
                request.reason,
                target.not_after,
                request.source,
                target.issuer,
            ),
        )
        for request, target in targets
    ]
    wanted += [
        (f"serial {serial:x}", Entry(serial, at, reason, serial_not_after, "serial"))
        for serial, reason in sorted(serials.items())
    ]
    changed = False
    for key, entry in wanted:
        found = entries.get(entry.serial)
        if found is not None:
            if found.reason != entry.reason:
                entries[entry.serial] = replace(found, reason=entry.reason)
                changed = True
                message = f"reason changed from {found.reason} to {entry.reason}"
            else:
                message = f"revoked already ({found.reason}, {times.format_time(found.revoked_at)})"
            changes[key] = Change(True, message)
            continue
        cost = entry_bytes(entry, intermediates)
        if size + cost > max_bytes:
            changes[key] = Change(
                False,
                f"the revocation record is full ({len(entries)} entries, {size} of "
                f"{max_bytes} bytes): serial {entry.serial:x} is not revoked; entries leave "
                "it as their certificates expire",
            )
            continue
        entries[entry.serial] = entry
        size += cost
        changed = True
        changes[key] = Change(True, f"revoked ({entry.reason})")
    if not changed:
        return record, changes
    # No CRL lists the new entries yet: `publish` signs new ones.
    return replace(record, entries=tuple(entries.values()), crl_pem=""), changes


def with_published(record: Record, published: Record) -> tuple[Record, tuple[Entry, ...]]:
    """`record` with each entry of `published` (what certsmith published last) it lacks,
    and those entries: a record restored from an older backup, or edited, never un-revokes
    (a revocation is final, RFC 5280 5.3.1 without certificateHold). `record` itself when
    it lacks none."""
    have = {e.serial for e in record.entries}
    missing = tuple(e for e in published.entries if e.serial not in have)
    if not missing:
        return record, ()
    return replace(record, entries=(*record.entries, *missing), crl_pem=""), missing


def live(entries: Sequence[Entry], now: datetime) -> tuple[Entry, ...]:
    """The entries whose certificate has not expired at `now` (RFC 5280 5.1.2.6: an entry
    may be removed once the certificate's validity has ended)."""
    return tuple(e for e in entries if e.not_after > now)


def unsigned(record: Record, signers: Signers, now: datetime) -> tuple[str, ...]:
    """The key identifiers of the intermediates that signed live entries of `record` but
    are not among `signers` (their key lost: the signers Secret deleted while no operator
    ran): no CRL lists those entries, so their leaves' verifiers find no current CRL."""
    have = {crl.key_id(p.certificate) for p in signers.intermediates}
    return tuple(
        sorted({e.issuer for e in live(record.entries, now) if e.issuer and e.issuer not in have})
    )


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


@dataclass(frozen=True)
class Signers:
    """The CAs whose CRLs are published: intermediates (the current one first), whose CRLs
    list their revoked leaves, and roots (the signing one first), whose CRLs are empty."""

    intermediates: tuple[ca.CAKeyPair, ...]
    roots: tuple[ca.CAKeyPair, ...]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(crl.key_id(p.certificate) for p in (*self.intermediates, *self.roots))

    def intermediate_certificates(self) -> dict[str, x509.Certificate]:
        """Each intermediate's certificate by key identifier."""
        return {crl.key_id(p.certificate): p.certificate for p in self.intermediates}


def retained(
    kept: Iterable[ca.CAKeyPair],
    *,
    intermediate: ca.CAKeyPair,
    root: ca.CAKeyPair,
    now: datetime,
) -> Signers:
    """The CAs whose CRLs are published at `now`: the current `intermediate` and `root`,
    and of `kept` (those retained earlier) each intermediate not yet expired (no leaf it
    signed outlives it) and each root that signed one of them."""
    pairs = {crl.key_id(p.certificate): p for p in kept}
    current_intermediate = crl.key_id(intermediate.certificate)
    current_root = crl.key_id(root.certificate)
    intermediates = [
        intermediate,
        *sorted(
            (
                p
                for k, p in pairs.items()
                if k != current_intermediate
                and not _is_root(p.certificate)
                and p.certificate.not_valid_after_utc > now
            ),
            key=lambda p: p.certificate.not_valid_after_utc,
            reverse=True,
        ),
    ]
    issuers = {crl.authority_key_id(p.certificate) for p in intermediates}
    roots = [
        root,
        *(
            p
            for k, p in sorted(pairs.items())
            if k != current_root and _is_root(p.certificate) and k in issuers
        ),
    ]
    return Signers(tuple(intermediates), tuple(roots))


def _is_root(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


def publish(record: Record, *, signers: Signers, now: datetime, floor: int = 0) -> Record:
    """`record` with its expired entries dropped and new CRLs if anything changed, they are
    due again (`republish_at`) or the issuing CAs changed; else `record` itself.

    `ca.crl` holds one CRL per intermediate of `signers` (the entries it `lists`) and one,
    empty, per root (certsmith never revokes its intermediates): a verifier that checks
    every certificate of the chain (nginx `ssl_crl`, openssl `-crl_check_all`) needs the
    CRL of each CA in it. The CRL number is above both the record's and `floor` (the
    highest this operator published: RFC 5280 5.2.3 wants it to
    grow even when the record was lost or an older one restored: a record below `floor` is
    signed again, never its old CRLs served). thisUpdate is CLOCK_SKEW before `now`.
    """
    entries = live(record.entries, now)
    due = republish_at(record)
    if (
        entries == record.entries
        and record.signers == signers.key_ids
        and record.crl_pem
        and due is not None
        and now < due
        and record.number >= floor
    ):
        return record
    number = max(record.number, floor) + 1
    this_update = now.replace(microsecond=0) - CLOCK_SKEW
    pem = ""
    for pair in signers.intermediates:
        listing = [
            crl.Revoked(e.serial, e.revoked_at, e.reason)
            for e in entries
            if lists(pair.certificate, e)
        ]
        pem += _signed(pair, listing, number, this_update)
    for pair in signers.roots:
        pem += _signed(pair, [], number, this_update)
    return Record(entries, number, this_update, signers.key_ids, pem)


def lists(intermediate: x509.Certificate, entry: Entry) -> bool:
    """Whether `intermediate`'s CRL lists `entry`: a leaf's entry in its issuer's CRL only; a
    bare serial (its issuer unknown) in the CRL of each intermediate that existed when it was
    revoked (notBefore, backdated, at or before revoked_at). An intermediate made later never
    signed it (certsmith's serials are random, RFC 5280 4.1.2.2), so an intermediate renewal
    never lists the bare serials again: the record's size, checked when each was revoked
    (`entry_bytes`), does not grow with a renewal."""
    if entry.issuer:
        return entry.issuer == crl.key_id(intermediate)
    return intermediate.not_valid_before_utc <= entry.revoked_at


def _signed(
    pair: ca.CAKeyPair, listing: list[crl.Revoked], number: int, this_update: datetime
) -> str:
    return crl.to_pem(
        crl.build_crl(
            issuer=pair,
            entries=listing,
            number=number,
            this_update=this_update,
            next_update=this_update + CLOCK_SKEW + CRL_VALIDITY,
        )
    )


def entries_from_crls(crl_pem: str, signers: Signers, now: datetime) -> tuple[Entry, ...]:
    """The entries the intermediates' CRLs of `crl_pem` list, each kept until its
    intermediate expires (the certificate's own expiry is not in a CRL; a serial two
    intermediates list is a bare serial again): how a lost record is rebuilt from what was
    published."""
    by_key = signers.intermediate_certificates()
    entries: dict[int, Entry] = {}
    for revocation_list in crl.split_pem(crl_pem):
        issuer = crl.authority_key_id(revocation_list) or ""
        signer = by_key.get(issuer)
        if signer is None:
            continue
        for revoked in revocation_list:
            try:
                flag = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
                reason = next(n for n, f in crl.REASONS.items() if f is flag)
            except (x509.ExtensionNotFound, StopIteration):
                reason = "unspecified"
            found = entries.get(revoked.serial_number)
            if found is not None:
                # Listed by two intermediates: a bare serial, kept for every one of them.
                later = max(found.not_after, signer.not_valid_after_utc)
                entries[revoked.serial_number] = replace(found, issuer="", not_after=later)
                continue
            entries[revoked.serial_number] = Entry(
                revoked.serial_number,
                revoked.revocation_date_utc,
                reason,
                signer.not_valid_after_utc,
                "restored from a published CRL",
                issuer,
            )
    return live(tuple(entries.values()), now)


def served_state(crl_pem: str) -> tuple[int, datetime | None]:
    """What CRLs being served say for the metrics: how many serials they list (each once)
    and the oldest thisUpdate (None: no CRL, or one that does not parse)."""
    try:
        lists = crl.split_pem(crl_pem)
    except ValueError:
        return 0, None
    serials = {r.serial_number for revocation_list in lists for r in revocation_list}
    return len(serials), min((c.last_update_utc for c in lists), default=None)


def record_bytes(record: Record) -> int:
    """The size of `record`'s ConfigMap data (`dump`), in bytes."""
    return sum(len(v.encode()) for v in dump(record).values())


def entry_bytes(entry: Entry, intermediates: int = 1) -> int:
    """What adding `entry` costs the record: its row in the JSON and its place in each CRL
    listing it (every intermediate's for a bare serial)."""
    listed_in = intermediates if entry.issuer == "" else 1
    return (
        len(json.dumps(_row(entry, {entry.issuer: 0}), separators=(",", ":")))
        + 1
        + (CRL_ENTRY_BYTES * listed_in)
    )


def _row(entry: Entry, issuers: Mapping[str, int]) -> list[Any]:
    return [
        format(entry.serial, "x"),
        int(entry.revoked_at.timestamp()),
        REASON_CODES[entry.reason],
        int(entry.not_after.timestamp()),
        issuers.get(entry.issuer, -1) if entry.issuer else -1,
        entry.source,
    ]


def dump(record: Record) -> dict[str, str]:
    """The ConfigMap data of `record`: compact JSON (`entries`: one row per entry, [serial
    hex, revoked at (Unix s), RFC 5280 reason code, notAfter (Unix s), index in `issuers`
    or -1 for a bare serial, source]) and the CRLs (PEM)."""
    issuers = sorted({e.issuer for e in record.entries if e.issuer})
    index = {issuer: i for i, issuer in enumerate(issuers)}
    body = {
        "version": 2,
        "crlNumber": record.number,
        "thisUpdate": times.format_time(record.this_update) if record.this_update else None,
        "signers": list(record.signers),
        "issuers": issuers,
        "entries": [_row(e, index) for e in record.entries],
    }
    return {RECORD_KEY: json.dumps(body, separators=(",", ":")), CRL_KEY: record.crl_pem}


def load(data: Mapping[str, str] | None) -> Record:
    """The Record in ConfigMap data (an empty one when there is none); ValueError when it
    is not what `dump` writes."""
    if not data or RECORD_KEY not in data:
        return Record()
    try:
        body = json.loads(data[RECORD_KEY])
        if body.get("version") != 2:
            raise ValueError(f"version {body.get('version')!r} is not 2")
        issuers = [str(i) for i in body["issuers"]]
        entries = tuple(
            Entry(
                serial=parse_serial(serial, "serial"),
                revoked_at=datetime.fromtimestamp(int(revoked), UTC),
                reason=_REASON_NAMES[int(code)],
                not_after=datetime.fromtimestamp(int(not_after), UTC),
                source=str(source),
                issuer=issuers[int(issuer)] if int(issuer) >= 0 else "",
            )
            for serial, revoked, code, not_after, issuer, source in body["entries"]
        )
        this_update = times.parse_time(body.get("thisUpdate"))
        crl.split_pem(data.get(CRL_KEY, ""))  # a CRL that does not parse is a damaged record
        return Record(
            entries,
            int(body["crlNumber"]),
            this_update,
            tuple(str(s) for s in body["signers"]),
            data.get(CRL_KEY, ""),
        )
    except (KeyError, TypeError, ValueError, IndexError, InvalidRequest) as error:
        raise ValueError(f"{RECORD_KEY} is not a revocation record: {error}") from None


def signers_data(signers: Signers) -> dict[str, str]:
    """The data of the signers Secret (`signers_secret_name`): `<key id>.crt` and
    `<key id>.key` (PEM, PKCS#8) of each CA, base64 as Secret data is."""
    data = {}
    for pair in (*signers.intermediates, *signers.roots):
        key_id = crl.key_id(pair.certificate)
        data[f"{key_id}.crt"] = _b64(inspect.certificates_to_pem([pair.certificate]))
        data[f"{key_id}.key"] = _b64(keys.encode_private_key(pair.key, "PKCS8"))
    return data


def load_signers(data: Mapping[str, str] | None) -> list[ca.CAKeyPair]:
    """The key pairs in a signers Secret's data; one that does not parse or match is left
    out (it can sign nothing)."""
    pairs = []
    for name, value in (data or {}).items():
        if not name.endswith(".crt"):
            continue
        try:
            certificate = inspect.load_pem_certificates(_unb64(value))[0]
            key = keys.load_private_key(_unb64((data or {})[name.removesuffix(".crt") + ".key"]))
        except (KeyError, ValueError, IndexError):
            continue
        if keys.key_matches_certificate(key, certificate):
            pairs.append(ca.CAKeyPair(certificate, key))
    return pairs


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def published_condition(number: int, problem: tuple[str, str] | None) -> conditions.Condition:
    """CRLPublished: True with the CRL number, or False with the (reason, message) of what
    keeps the CRLs from being updated (the authority's other work goes on)."""
    if problem is None:
        return conditions.Condition(PUBLISHED, True, "Published", f"CRL number {number} published")
    return conditions.Condition(PUBLISHED, False, problem[0], problem[1])
