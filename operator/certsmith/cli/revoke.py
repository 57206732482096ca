"""`kubectl certsmith revoke`: have the operator revoke a certificate and publish its CRL.

The plugin never writes a revocation itself: it annotates the object the revocation is
about, and the operator records it (the serial taken from what certsmith wrote), signs the
authority's CRL again, and removes the annotation. A Certificate is re-issued (a new key)
in the same move unless --no-reissue. A bare serial is asked for on the CertificateAuthority
(`revoke.certsmith.dev/<serial>`), which needs `patch` on that cluster-scoped object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from certsmith.api import model, names, times
from certsmith.cli import renew
from certsmith.cli.api import CliError, Conflict, NotFound
from certsmith.pki import crl

if TYPE_CHECKING:
    from certsmith.cli.api import Api

POLL_INTERVAL_SECONDS = 0.5
CONFLICT_RETRIES = 5
"""How often the request is tried again when the object changed between read and write."""
CERTIFICATE = "Certificate"
CERTIFICATE_REQUEST = "CertificateRequest"
_KINDS = {
    "certificate": CERTIFICATE,
    "certificates": CERTIFICATE,
    "certificate.certsmith.dev": CERTIFICATE,
    "certificates.certsmith.dev": CERTIFICATE,
    "certificaterequest": CERTIFICATE_REQUEST,
    "certificaterequests": CERTIFICATE_REQUEST,
    "certificaterequest.certsmith.dev": CERTIFICATE_REQUEST,
    "certificaterequests.certsmith.dev": CERTIFICATE_REQUEST,
}


@dataclass(frozen=True)
class Target:
    """What to revoke: a Certificate's or CertificateRequest's certificate (kind, name)."""

    kind: str
    name: str


def parse_target(text: str) -> Target:
    """`NAME` (a Certificate), `certificate/NAME` or `certificaterequest/NAME` (plural and
    `.certsmith.dev` forms too, as kubectl writes them); CliError otherwise."""
    kind, slash, name = text.rpartition("/")
    if not slash:
        return Target(CERTIFICATE, text)
    found = _KINDS.get(kind.lower())
    if found is None or not name:
        raise CliError(
            f"{text!r}: revoke a certificate/NAME, a certificaterequest/NAME, or a serial "
            "with --serial HEX --authority NAME"
        )
    return Target(found, name)


def check_reason(reason: str) -> str:
    """`--reason`: a CRLReason name (pki.crl.REASONS); CliError otherwise."""
    problem = crl.reason_problem(reason)
    if problem is not None:
        raise CliError(f"--reason: {problem}")
    return reason


def request_annotations(
    *, now: datetime, reason: str, reissue: bool, kind: str, serial: str
) -> dict[str, str | None]:
    """The annotations that ask for the revocation (api.names.REVOKE_*); the time has
    microseconds, so two requests a moment apart differ; `serial` (hex) pins the
    certificate meant: the operator refuses the request if the object holds another by
    then. `reissue` applies to Certificates."""
    annotations: dict[str, str | None] = {
        names.REVOKE_REQUEST_ANNOTATION: times.format_micro_time(now),
        names.REVOKE_REASON_ANNOTATION: reason,
        names.REVOKE_SERIAL_ANNOTATION: serial,
    }
    if kind == CERTIFICATE:
        annotations[names.REVOKE_REISSUE_ANNOTATION] = None if reissue else "false"
    return annotations


def _ask(
    api: Api,
    namespace: str,
    target: Target,
    reason: str,
    reissue: bool,
    clock: Callable[[], datetime],
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """Annotate the object with the request and add REVOKE_FINALIZER, read again when it
    changed meanwhile; the object as read and the annotations written. CliError when it
    has no certificate to revoke."""
    get = api.get_certificate if target.kind == CERTIFICATE else api.get_certificate_request
    annotate = (
        api.annotate_certificate if target.kind == CERTIFICATE else api.annotate_certificate_request
    )
    attempts = CONFLICT_RETRIES
    while True:
        body = get(namespace, target.name)
        if (
            target.kind == CERTIFICATE
            and reissue
            and reason in names.KEY_COMPROMISE_REASONS
            and keeps_its_key(body)
        ):
            raise CliError(
                f"--reason {reason}: certificate {target.name} has "
                "spec.privateKey.rotationPolicy Never, so its re-issue would certify the "
                "compromised key again: set it to Always first, or pass --no-reissue"
            )
        serial = (body.get("status") or {}).get("serialNumber")
        if not serial:
            raise CliError(
                f"{target.kind.lower()} {target.name} has no certificate to revoke yet "
                "(status.serialNumber is empty)"
            )
        annotations = request_annotations(
            now=clock(), reason=reason, reissue=reissue, kind=target.kind, serial=serial
        )
        metadata = body.get("metadata") or {}
        try:
            # The finalizer keeps the object (and the request) until the operator handled
            # it: deleting it right after asking must not lose the revocation.
            annotate(
                namespace,
                target.name,
                annotations,
                # The apiserver adds no finalizer to an object being deleted already.
                finalizers=None
                if metadata.get("deletionTimestamp")
                else with_finalizer(metadata.get("finalizers") or []),
                resource_version=metadata.get("resourceVersion"),
            )
            return body, annotations
        except Conflict:
            attempts -= 1
            if not attempts:
                raise


def with_finalizer(finalizers: Sequence[str]) -> list[str]:
    """`finalizers` with api.names.REVOKE_FINALIZER added (once)."""
    return [
        *finalizers,
        *([] if names.REVOKE_FINALIZER in finalizers else [names.REVOKE_FINALIZER]),
    ]


def pending(body: Mapping[str, Any], requested_at: str) -> bool:
    """Whether the operator has yet to record the request made at `requested_at`."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return annotations.get(names.REVOKE_REQUEST_ANNOTATION) == requested_at


def _still_pending(
    get: Callable[[str, str], dict[str, Any]], namespace: str, name: str, requested_at: str
) -> bool:
    """`pending` for the object as it is now; False once it is gone (deleted after the
    operator handled the request and removed REVOKE_FINALIZER)."""
    try:
        return pending(get(namespace, name), requested_at)
    except NotFound:
        return False


def run_object(
    api: Api,
    *,
    namespace: str,
    target: Target,
    reason: str,
    reissue: bool,
    wait: bool,
    timeout: timedelta,
    clock: Callable[[], datetime],
) -> int:
    """Annotate the Certificate or CertificateRequest; with `wait`, until the operator
    recorded it (exit 1 on timeout). CliError when it has no certificate to revoke."""
    get = api.get_certificate if target.kind == CERTIFICATE else api.get_certificate_request
    body, annotations = _ask(api, namespace, target, reason, reissue, clock)
    serial = str(annotations[names.REVOKE_SERIAL_ANNOTATION])
    requested_at = str(annotations[names.REVOKE_REQUEST_ANNOTATION])
    what = f"{target.kind.lower()} {target.name}: serial {serial}"
    reissuing = reissue and target.kind == CERTIFICATE
    if reissuing and keeps_its_key(body):
        print(
            f"{what}: warning: spec.privateKey.rotationPolicy is Never, so it is re-issued "
            "with the same key; set it to Always for a new key"
        )
    if not wait:
        print(f"{what}: revocation ({reason}) requested")
        return 0
    deadline = time.monotonic() + timeout.total_seconds()
    while _still_pending(get, namespace, target.name, requested_at):
        if time.monotonic() >= deadline:
            print(f"{what}: not recorded by the operator within {timeout} (is it running?)")
            return 1
        time.sleep(POLL_INTERVAL_SECONDS)
    found = outcome(
        api.list_events(namespace, target.name), kind=target.kind, requested_at=requested_at
    )
    if found is None:
        print(f"{what}: handled by the operator (no event found: kubectl describe it)")
        return 0
    recorded, message = found
    print(f"{what}: {message}")
    if not recorded:
        return 1
    if not _wait_listed(api, namespace, body, int(serial, 16), deadline, what):
        return 1
    if not reissuing:
        return 0
    return _wait_reissued(api, namespace, target, serial, deadline, timeout)


def not_listing(configmaps: Sequence[Mapping[str, Any]], serial: int) -> list[str]:
    """The names of the trust-bundle ConfigMaps whose CRLs (data `ca.crl`) do not list
    `serial`: a verifier reading them does not refuse it yet."""
    missing = []
    for configmap in configmaps:
        try:
            lists = crl.split_pem(str((configmap.get("data") or {}).get("ca.crl", "")))
        except ValueError:
            lists = []
        if not any(c.get_revoked_certificate_by_serial_number(serial) for c in lists):
            missing.append(str((configmap.get("metadata") or {}).get("name")))
    return missing


def _wait_listed(
    api: Api, namespace: str, body: Mapping[str, Any], serial: int, deadline: float, what: str
) -> bool:
    """Until every trust bundle of the namespace lists `serial` (False, said, past
    `deadline`: one its authority cannot write, BundlesSynced False, keeps the old CRL)."""
    issuer = ((body.get("spec") or {}).get("issuerRef") or {}).get("name", model.DEFAULT_ISSUER)
    try:
        while missing := not_listing(api.list_trust_bundles(namespace, str(issuer)), serial):
            if time.monotonic() >= deadline:
                print(
                    f"{what}: warning: ConfigMap {namespace}/{', '.join(missing)} does not list "
                    f"it yet (CertificateAuthority {issuer}'s BundlesSynced condition says why): "
                    "servers reading it still accept the certificate"
                )
                return False
            time.sleep(POLL_INTERVAL_SECONDS)
    except CliError as error:  # no right to read ConfigMaps: the operator's word stands
        print(f"{what}: note: the namespace's trust bundles not checked: {error}")
    return True


def _wait_reissued(
    api: Api, namespace: str, target: Target, serial: str, deadline: float, timeout: timedelta
) -> int:
    """Until the Certificate holds another serial than `serial` (exit 1 past `deadline`)."""
    what = f"{target.kind.lower()} {target.name}"
    while not renew.reissued(body := api.get_certificate(namespace, target.name), serial):
        if time.monotonic() >= deadline:
            print(f"{what}: serial {serial}: not re-issued within {timeout}")
            return 1
        time.sleep(POLL_INTERVAL_SECONDS)
    print(f"{what}: re-issued, serial {renew.serial_of(body)}")
    return 0


_OUTCOMES = {
    names.REVOKED_EVENT: True,
    names.INVALID_REVOCATION_EVENT: False,
    names.RECORD_FULL_EVENT: False,
}


def outcome(
    events: Sequence[Mapping[str, Any]], *, kind: str, requested_at: str
) -> tuple[bool, str] | None:
    """What the operator did with the request made at `requested_at` on an object of `kind`,
    from its Events (the newest Revoked, InvalidRevocation or RevocationRecordFull at or
    after that second): (recorded, the event's message); None when there is none."""
    since = times.parse_time(requested_at)
    best: tuple[datetime, bool, str] | None = None
    for event in events:
        if (event.get("involvedObject") or {}).get("kind") != kind:
            continue
        recorded = _OUTCOMES.get(str(event.get("reason")))
        at = times.parse_time(event.get("lastTimestamp") or event.get("eventTime"))
        if recorded is None or at is None:
            continue
        if since is not None and at < since.replace(microsecond=0):
            continue
        if best is None or at >= best[0]:
            best = (at, recorded, str(event.get("message", "")))
    return None if best is None else (best[1], best[2])


def keeps_its_key(body: Mapping[str, Any]) -> bool:
    """Whether the Certificate re-uses its key when re-issued (privateKey.rotationPolicy
    Never), so a re-issue after a revocation does not replace a compromised key."""
    key = (body.get("spec") or {}).get("privateKey") or {}
    return key.get("rotationPolicy") == "Never"


def holder(items: Sequence[Mapping[str, Any]], kind: str, serial: int) -> tuple[str, str] | None:
    """The ("Kind namespace/name", authority) of the first of `items` (Certificates or
    CertificateRequests, `kind`) whose status.serialNumber is `serial`; None if none."""
    for item in items:
        text = (item.get("status") or {}).get("serialNumber")
        try:
            if not text or crl.parse_serial(str(text)) != serial:
                continue
        except ValueError:
            continue
        metadata = item.get("metadata") or {}
        issuer = ((item.get("spec") or {}).get("issuerRef") or {}).get("name", model.DEFAULT_ISSUER)
        return f"{kind} {metadata.get('namespace')}/{metadata.get('name')}", str(issuer)
    return None


def _check_authority(api: Api, authority: str, serial: int) -> None:
    """CliError when a Certificate or CertificateRequest holds `serial` under another
    authority (its CRL would list it, which no verifier of that certificate reads). A
    serial no object holds (one replaced since, a device's) cannot be checked."""
    try:
        lists = (
            (CERTIFICATE, api.list_certificates(None)),
            (CERTIFICATE_REQUEST, api.list_certificate_requests(None)),
        )
    except CliError as error:  # e.g. no cluster-wide list: the annotation is still asked
        print(f"note: --serial {serial:x} not checked against issued certificates: {error}")
        return
    for kind, items in lists:
        found = holder(items, kind, serial)
        if found is not None and found[1] != authority:
            raise CliError(
                f"--serial {serial:x}: {found[0]} holds it, issued by CertificateAuthority "
                f"{found[1]}, not {authority}: revoke it with --authority {found[1]}"
            )


def run_serial(
    api: Api,
    *,
    authority: str,
    serial: str,
    reason: str,
    wait: bool,
    timeout: timedelta,
) -> int:
    """Annotate the CertificateAuthority `revoke.certsmith.dev/<serial>: <reason>`; with
    `wait`, until the operator recorded it (the annotation gone)."""
    try:
        value = crl.parse_serial(serial)
    except ValueError as error:
        raise CliError(f"--serial: {error}") from None
    _check_authority(api, authority, value)
    key = f"{names.REVOKE_SERIAL_PREFIX}{value:x}"
    api.annotate_authority(authority, {key: reason})
    what = f"serial {value:x} of certificateauthority {authority}"
    if not wait:
        print(f"{what}: revocation ({reason}) requested")
        return 0
    deadline = time.monotonic() + timeout.total_seconds()
    while key in ((api.get_authority(authority).get("metadata") or {}).get("annotations") or {}):
        if time.monotonic() >= deadline:
            print(f"{what}: not recorded by the operator within {timeout} (is it running?)")
            return 1
        time.sleep(POLL_INTERVAL_SECONDS)
    print(f"{what}: revoked ({reason}), in the CRL")
    return 0
