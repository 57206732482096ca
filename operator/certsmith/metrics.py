"""Prometheus metrics, served on port 9402 (`CERTSMITH_METRICS_PORT`).

Names follow cert-manager's where they mean the same, so its dashboards and alerts carry
over: expiry and renewal timestamps per Certificate, Ready state, and what cert-manager
lacks: an issuance latency histogram (apply or renewal due → Secret written).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily


class _CertificateSeries:
    """The three per-Certificate gauges, kept as plain floats by (namespace, name) and
    turned into samples at each scrape. prometheus_client's labelled Gauge keeps a child
    object, a value object and a lock per series: ~2.3 KiB per Certificate (measured with
    tracemalloc at 2,000), ~23 MiB at 10,000; this keeps one small list each."""

    FAMILIES = (
        (
            "certsmith_certificate_expiration_timestamp_seconds",
            "When the certificate in the Secret expires (Unix time).",
        ),
        (
            "certsmith_certificate_renewal_timestamp_seconds",
            "When certsmith will renew the certificate (Unix time).",
        ),
        ("certsmith_certificate_ready", "1 when the Certificate is Ready, 0 otherwise."),
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (namespace, name) → [expiration, renewal, ready]; None: no such series (yet).
        self._values: dict[tuple[str, str], list[float | None]] = {}

    def set(self, namespace: str, name: str, index: int, value: float) -> None:
        with self._lock:
            self._values.setdefault((namespace, name), [None, None, None])[index] = value

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._values.pop((namespace, name), None)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without samples: the registry's check of duplicate names and its
        `name[]` filter use them."""
        for name, documentation in self.FAMILIES:
            yield GaugeMetricFamily(name, documentation, labels=("namespace", "name"))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = list(self.describe())
        # A copy under the lock, the samples built outside it: workers setting values do
        # not wait for a scrape.
        with self._lock:
            rows = [(key, tuple(values)) for key, values in self._values.items()]
        for key, values in rows:
            for family, value in zip(families, values, strict=True):
                if value is not None:
                    family.add_metric(key, value)
        yield from families


CERTIFICATE_SERIES = _CertificateSeries()
REGISTRY.register(CERTIFICATE_SERIES)
_EXPIRATION, _RENEWAL, _READY = range(3)
ISSUANCES = Counter(
    "certsmith_issuances",
    "Certificates issued, by why they were issued (SecretMissing, RenewalDue, SpecChanged, …).",
    ["reason"],
)
ISSUANCE_LATENCY = Histogram(
    "certsmith_issuance_latency_seconds",
    "From the Certificate's creation or renewal time (or the change that triggered it) to "
    "its Secret being written.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
FAILURES = Counter(
    "certsmith_issuance_failures",
    "Reconciles that ended without a valid certificate, by reason.",
    ["reason"],
)
AUTHORITY_EXPIRATION = Gauge(
    "certsmith_authority_expiration_timestamp_seconds",
    "When a CertificateAuthority's root or intermediate expires (Unix time).",
    ["authority", "role"],
)
ROTATION_PHASE = Gauge(
    "certsmith_authority_rotation_phase",
    "1 for the CertificateAuthority's current phase (Ready, Distributing, Reissuing, Retiring).",
    ["authority", "phase"],
)
CLUSTER_TRUST_BUNDLE_ROOTS = Gauge(
    "certsmith_cluster_trust_bundle_roots",
    "Roots in the CertificateAuthority's ClusterTrustBundle (2 during a root rotation); 0 "
    "while it cannot be written, also when the cluster does not serve ClusterTrustBundles.",
    ["authority"],
)
QUEUE_DEPTH = Gauge(
    "certsmith_scheduled_actions",
    "Renewals, retries, authority steps and pending pod certificate requests waiting in the "
    "scheduler.",
)
POD_CERTIFICATES = Counter(
    "certsmith_pod_certificate_requests",
    "PodCertificateRequests answered, by condition (Issued, Denied, Failed) and reason.",
    ["condition", "reason"],
)
POD_CERTIFICATE_LATENCY = Histogram(
    "certsmith_pod_certificate_latency_seconds",
    "From a PodCertificateRequest's creation (whole seconds, as the apiserver stamps it) to "
    "its answer written.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
)
CERTIFICATE_REQUESTS = Counter(
    "certsmith_certificate_requests",
    "CertificateRequests decided, by outcome (Issued, Pending, Denied, InvalidRequest, "
    "PolicyDenied, IssuerNotReady, Expired, DecisionFailed).",
    ["outcome"],
)
REVOKED = Gauge(
    "certsmith_revoked_certificates",
    "Entries in the CertificateAuthority's CRL (revoked certificates not yet expired).",
    ["authority"],
)
CRL_THIS_UPDATE = Gauge(
    "certsmith_crl_this_update_timestamp_seconds",
    "The thisUpdate of the CertificateAuthority's published CRL (Unix time).",
    ["authority"],
)
CRL_AGE = Gauge(
    "certsmith_crl_age_seconds",
    "Seconds since the thisUpdate of the CertificateAuthority's published CRL, at the scrape "
    "(re-signed every 12 h; its nextUpdate is thisUpdate + 24 h).",
    ["authority"],
)
CERTIFICATE_SIGNING_REQUESTS = Counter(
    "certsmith_certificate_signing_requests",
    "Kubernetes CertificateSigningRequests of certsmith's signers answered, by outcome "
    "(Issued, or the reason of Failed).",
    ["outcome"],
)
PHASES = ("Ready", "Distributing", "Reissuing", "Retiring")


def serve(port: int, queue_depth: Callable[[], int]) -> None:
    """Serve /metrics on `port` (all interfaces) from a daemon thread; QUEUE_DEPTH reads
    `queue_depth()` at each scrape. OSError when the port is taken."""
    QUEUE_DEPTH.set_function(lambda: float(queue_depth()))
    start_http_server(port)


def certificate_ready(namespace: str, name: str, not_after: datetime, renewal: datetime) -> None:
    """The Certificate is Ready: its expiry and renewal times (as Unix seconds), READY 1."""
    CERTIFICATE_SERIES.set(namespace, name, _EXPIRATION, not_after.timestamp())
    CERTIFICATE_SERIES.set(namespace, name, _RENEWAL, renewal.timestamp())
    certificate_readiness(namespace, name, ready=True)


def certificate_not_ready(namespace: str, name: str) -> None:
    """READY 0; the expiry and renewal series keep the last certificate's times."""
    certificate_readiness(namespace, name, ready=False)


def certificate_readiness(namespace: str, name: str, *, ready: bool) -> None:
    """READY 1 or 0, the other series as they are."""
    CERTIFICATE_SERIES.set(namespace, name, _READY, 1.0 if ready else 0.0)


def issued(reason: str, latency_seconds: float) -> None:
    """One issuance and its latency (a negative latency, from clock skew, counts as 0)."""
    ISSUANCES.labels(reason).inc()
    ISSUANCE_LATENCY.observe(max(0.0, latency_seconds))


def certificate_forgotten(namespace: str, name: str) -> None:
    """A deleted Certificate leaves no series behind."""
    CERTIFICATE_SERIES.remove(namespace, name)


def authority_state(
    name: str, root_expiry: datetime, intermediate_expiry: datetime, phase: str
) -> None:
    """The authority's root and intermediate expiry (Unix seconds) and its rotation phase
    (one of PHASES set to 1, the others 0)."""
    AUTHORITY_EXPIRATION.labels(name, "root").set(root_expiry.timestamp())
    AUTHORITY_EXPIRATION.labels(name, "intermediate").set(intermediate_expiry.timestamp())
    for candidate in PHASES:
        ROTATION_PHASE.labels(name, candidate).set(1 if candidate == phase else 0)


def cluster_trust_bundle_roots(name: str, roots: int) -> None:
    """How many roots authority `name` publishes in its ClusterTrustBundle (0: none now)."""
    CLUSTER_TRUST_BUNDLE_ROOTS.labels(name).set(roots)


def authority_forgotten(name: str) -> None:
    """A deleted authority leaves no series behind."""
    for gauge in (CLUSTER_TRUST_BUNDLE_ROOTS, REVOKED, CRL_THIS_UPDATE, CRL_AGE):
        with contextlib.suppress(KeyError):
            gauge.remove(name)
    for role in ("root", "intermediate"):
        with contextlib.suppress(KeyError):
            AUTHORITY_EXPIRATION.remove(name, role)
    for phase in PHASES:
        with contextlib.suppress(KeyError):
            ROTATION_PHASE.remove(name, phase)


def crl_published(name: str, revoked: int, this_update: datetime) -> None:
    """Authority `name` publishes (or serves, unable to update them) CRLs of `revoked`
    entries signed at `this_update`; the Unix epoch when it has none, so that the CRL-stale
    alert fires for it too."""
    REVOKED.labels(name).set(revoked)
    CRL_THIS_UPDATE.labels(name).set(this_update.timestamp())
    stamp = this_update.timestamp()
    CRL_AGE.labels(name).set_function(lambda: time.time() - stamp)


def pod_certificate_answered(condition: str, reason: str, latency_seconds: float | None) -> None:
    """One PodCertificateRequest answered (`condition` Issued, Denied or Failed) and, when its
    creation time is known, how long it waited (negative, from clock skew, counts as 0)."""
    POD_CERTIFICATES.labels(condition, reason).inc()
    if latency_seconds is not None:
        POD_CERTIFICATE_LATENCY.observe(max(0.0, latency_seconds))


def certificate_request_decided(outcome: str) -> None:
    """A CertificateRequest was signed, left pending, denied or refused (`outcome`)."""
    CERTIFICATE_REQUESTS.labels(outcome).inc()


def certificate_signing_request_answered(outcome: str) -> None:
    """A CertificateSigningRequest was signed (`outcome` Issued) or failed (its reason)."""
    CERTIFICATE_SIGNING_REQUESTS.labels(outcome).inc()
