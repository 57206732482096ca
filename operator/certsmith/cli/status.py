"""`kubectl certsmith status`: what is not Ready and why, then what expires soonest, then
the CertificateRequests waiting for a decision or not Ready, then which pod-certificate
APIs the cluster serves (and how to turn on those it does not).

The exit code is the verdict on Certificates (0 all Ready, 1 otherwise), so scripts and CI
can gate on it; an API the cluster does not serve does not change it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from certsmith.api import conditions, names, times
from certsmith.cli import output
from certsmith.podcerts.apis import PodCertificateApis

if TYPE_CHECKING:  # for the hint only: the report logic is tested without a client
    from certsmith.cli.api import Api


class CertificateStateJson(TypedDict):
    """One Certificate in `status -o json`; times RFC 3339 UTC."""

    namespace: str
    name: str
    ready: str
    reason: str
    message: str
    notAfter: str | None
    renewalTime: str | None
    expiresInSeconds: int | None
    """Whole seconds from now to notAfter, negative once expired."""
    serialNumber: str | None


class PodCertificateApisJson(TypedDict):
    """The served version of each pod-certificate API (null: not served), and one sentence
    per API not served saying what is lost and how to turn it on."""

    podCertificateRequests: str | None
    clusterTrustBundles: str | None
    notServed: list[str]


class RequestStateJson(TypedDict):
    """One CertificateRequest in `status -o json`: its Ready reason and message."""

    namespace: str
    name: str
    issuer: str
    reason: str
    message: str


class RequestsJson(TypedDict):
    """The CertificateRequests waiting for a decision, and the others not Ready."""

    pending: list[RequestStateJson]
    notReady: list[RequestStateJson]


class SummaryJson(TypedDict):
    """`status -o json`."""

    allReady: bool
    total: int
    notReady: list[CertificateStateJson]
    expiringSoonest: list[CertificateStateJson]
    certificateRequests: RequestsJson
    podCertificateApis: PodCertificateApisJson


@dataclass(frozen=True)
class Requests:
    """CertificateRequests `status` shows (`requests_summary`), by namespace and name."""

    pending: tuple[RequestStateJson, ...]
    """Waiting for someone to approve or deny them (Ready reason Pending)."""
    not_ready: tuple[RequestStateJson, ...]
    """Any other not Ready: denied, invalid, expired, root retired, issuer not ready, …"""


PENDING_REQUEST = "Pending"


def requests_summary(bodies: Iterable[Mapping[str, Any]]) -> Requests:
    """Every CertificateRequest that is not Ready, pending ones apart; a request the
    operator has not reported on yet counts as pending."""
    pending: list[RequestStateJson] = []
    not_ready: list[RequestStateJson] = []
    for body in bodies:
        metadata, spec = body.get("metadata") or {}, body.get("spec") or {}
        found = (body.get("status") or {}).get("conditions")
        ready = conditions.find_condition(found, conditions.READY)
        if ready is not None and ready.get("status") == "True":
            continue
        reason = str((ready or {}).get("reason") or PENDING_REQUEST)
        state: RequestStateJson = {
            "namespace": str(metadata.get("namespace", "")),
            "name": str(metadata.get("name", "")),
            "issuer": str((spec.get("issuerRef") or {}).get("name") or ""),
            "reason": reason,
            "message": str((ready or {}).get("message") or "not judged by certsmith yet"),
        }
        (pending if reason == PENDING_REQUEST else not_ready).append(state)
    return Requests(tuple(sorted(pending, key=_by_name)), tuple(sorted(not_ready, key=_by_name)))


def _by_name(state: RequestStateJson) -> tuple[str, str]:
    return state["namespace"], state["name"]


def render_requests(requests: Requests, *, where: str) -> str | None:
    """The CertificateRequests section, None when every request is Ready (or none)."""
    sections = []
    if requests.pending:
        rows = [(r["name"], r["namespace"], r["issuer"], r["message"]) for r in requests.pending]
        sections.append(
            f"{len(requests.pending)} CertificateRequests in {where} wait for a decision "
            "(kubectl certsmith approve|deny NAME -n NAMESPACE):\n"
            + output.table(("NAME", "NAMESPACE", "ISSUER", "MESSAGE"), rows)
        )
    if requests.not_ready:
        rows = [(r["name"], r["namespace"], r["reason"], r["message"]) for r in requests.not_ready]
        sections.append(
            f"{len(requests.not_ready)} CertificateRequests in {where} are not Ready:\n"
            + output.table(("NAME", "NAMESPACE", "REASON", "MESSAGE"), rows)
        )
    return "\n\n".join(sections) or None


@dataclass(frozen=True)
class CertificateState:
    """A Certificate as `status` judges it (`certificate_state`)."""

    namespace: str
    name: str
    ready: str
    """"True", "False" or "Unknown"."""
    reason: str
    message: str
    not_after: datetime | None
    renewal_time: datetime | None
    serial_number: str | None

    @property
    def is_ready(self) -> bool:
        return self.ready == "True"

    def to_json(self, now: datetime) -> CertificateStateJson:
        """The `-o json` form; `expiresInSeconds` is counted from `now`."""
        expires_in = None if self.not_after is None else (self.not_after - now).total_seconds()
        return {
            "namespace": self.namespace,
            "name": self.name,
            "ready": self.ready,
            "reason": self.reason,
            "message": self.message,
            "notAfter": None if self.not_after is None else output.format_time(self.not_after),
            "renewalTime": None
            if self.renewal_time is None
            else output.format_time(self.renewal_time),
            "expiresInSeconds": None if expires_in is None else int(expires_in),
            "serialNumber": self.serial_number,
        }


def certificate_state(body: Mapping[str, Any], now: datetime) -> CertificateState:
    """Judge one Certificate as a person would, not only by its Ready condition.

    A Ready=True written for an older generation, or for a certificate that has since
    expired, is not taken at its word: both mean the operator has not caught up.
    """
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    not_after = times.parse_time(status.get("notAfter"))
    ready = conditions.find_condition(status.get("conditions"), conditions.READY)
    generation = metadata.get("generation")

    def state(ready_status: str, reason: str, message: str) -> CertificateState:
        return CertificateState(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            ready=ready_status,
            reason=reason,
            message=message,
            not_after=not_after,
            renewal_time=times.parse_time(status.get("renewalTime")),
            serial_number=status.get("serialNumber"),
        )

    if ready is None:
        return state("Unknown", "Pending", "the operator has not reported on it yet")
    observed = ready.get("observedGeneration")
    reason, message = str(ready.get("reason", "")), str(ready.get("message", ""))
    if isinstance(observed, int) and isinstance(generation, int) and observed < generation:
        return state(
            "Unknown",
            "Reconciling",
            f"generation {generation} not handled yet (last: {reason}: {message})",
        )
    if ready.get("status") == "True" and not_after is not None and not_after <= now:
        return state(
            "False",
            "Expired",
            f"the certificate expired at {output.format_time(not_after)}; is the operator running?",
        )
    return state(str(ready.get("status", "Unknown")), reason, message)


@dataclass(frozen=True)
class Summary:
    """Every Certificate looked at, as `status` reports them (`summarize`)."""

    total: int
    not_ready: tuple[CertificateState, ...]
    expiring: tuple[CertificateState, ...]
    """Certificates that hold a certificate, soonest expiry first, at most `limit`."""

    @property
    def all_ready(self) -> bool:
        return not self.not_ready


def summarize(bodies: Iterable[Mapping[str, Any]], now: datetime, *, limit: int) -> Summary:
    """Judge every Certificate; `limit` bounds the expiring list (0 or less: no bound)."""
    states = [certificate_state(body, now) for body in bodies]
    not_ready = sorted((s for s in states if not s.is_ready), key=lambda s: (s.namespace, s.name))
    issued = sorted(
        (s for s in states if s.not_after is not None),
        key=lambda s: (s.not_after, s.namespace, s.name),
    )
    return Summary(
        total=len(states),
        not_ready=tuple(not_ready),
        expiring=tuple(issued if limit <= 0 else issued[:limit]),
    )


def render(summary: Summary, now: datetime, *, where: str, color: bool = False) -> str:
    """The text report; `where` says what was looked at ("namespace shop", "all namespaces")."""
    if summary.total == 0:
        return f"No Certificates found in {where}."
    sections: list[str] = []
    if summary.not_ready:
        rows = [(s.name, s.namespace, s.ready, s.reason, s.message) for s in summary.not_ready]
        sections.append(
            f"{len(summary.not_ready)} of {summary.total} Certificates in {where} are not Ready:\n"
            + output.table(
                ("NAME", "NAMESPACE", "READY", "REASON", "MESSAGE"),
                rows,
                style=lambda column, text: output.color_status(text, color and column == 2),
            )
        )
    else:
        sections.append(f"All {summary.total} Certificates in {where} are Ready.")
    if summary.expiring:
        rows = [
            (
                s.name,
                s.namespace,
                output.format_time(s.not_after),
                output.format_time(s.renewal_time),
                output.until(s.not_after, now),
            )
            for s in summary.expiring
        ]
        sections.append(
            "Expiring soonest:\n"
            + output.table(("NAME", "NAMESPACE", "EXPIRES", "RENEWAL", "EXPIRES IN"), rows)
        )
    return "\n\n".join(sections)


def render_apis(apis: PodCertificateApis) -> str:
    """The pod-certificate APIs section: each API served, with its version, or the sentence
    saying it is not served and how to turn it on."""
    sentences = apis.unserved()
    lines = ["Pod-certificate APIs:"]
    for resource, version in (
        (names.POD_CERTIFICATE_REQUESTS, apis.requests),
        (names.CLUSTER_TRUST_BUNDLES, apis.bundles),
    ):
        api = f"{resource}.{names.CERTIFICATES_GROUP}"
        if version is not None:
            lines.append(f"  {api}: served in {version}")
        else:
            lines.extend(f"  {s}" for s in sentences if s.startswith(f"{api} "))
    return "\n".join(lines)


def to_json(
    summary: Summary, now: datetime, apis: PodCertificateApis, requests: Requests
) -> SummaryJson:
    """`status -o json`."""
    return {
        "allReady": summary.all_ready,
        "total": summary.total,
        "notReady": [s.to_json(now) for s in summary.not_ready],
        "expiringSoonest": [s.to_json(now) for s in summary.expiring],
        "certificateRequests": {
            "pending": list(requests.pending),
            "notReady": list(requests.not_ready),
        },
        "podCertificateApis": {
            "podCertificateRequests": apis.requests,
            "clusterTrustBundles": apis.bundles,
            "notServed": apis.unserved(),
        },
    }


def discover_apis(api: Api) -> PodCertificateApis:
    """The served versions of the pod-certificate APIs, found by discovery as the operator
    finds them at start."""

    def served(resource: str) -> str | None:
        return api.served_version(
            names.CERTIFICATES_GROUP, resource, names.POD_CERTIFICATE_VERSIONS
        )

    return PodCertificateApis(
        requests=served(names.POD_CERTIFICATE_REQUESTS),
        bundles=served(names.CLUSTER_TRUST_BUNDLES),
    )


def exit_code(summary: Summary) -> int:
    """0 when every Certificate is Ready (or there is none), else 1."""
    return 0 if summary.all_ready else 1


def describe_scope(namespace: str | None) -> str:
    """ "namespace shop", or "all namespaces" for None."""
    return "all namespaces" if namespace is None else f"namespace {namespace}"


def run(
    api: Api,
    *,
    namespace: str | None,
    json_output: bool,
    color: bool,
    limit: int,
    now: datetime,
) -> int:
    """`namespace` None means every namespace (-A)."""
    summary = summarize(api.list_certificates(namespace), now, limit=limit)
    requests = requests_summary(api.list_certificate_requests(namespace))
    apis = discover_apis(api)
    if json_output:
        output.print_json(to_json(summary, now, apis, requests))
    else:
        where = describe_scope(namespace)
        print(render(summary, now, where=where, color=color))
        requests_text = render_requests(requests, where=where)
        if requests_text is not None:
            print(f"\n{requests_text}")
        print(f"\n{render_apis(apis)}")
    return exit_code(summary)
