"""Every long-lived part of the operator, built once in dependency order (`build`).

`Parts` only holds them: behaviour lives in the parts, each owned by the folder of the place
it runs (controller/: only in the Lease holder; admission/: in every replica; replicas/:
this replica's own state). Nothing runs until `__main__` starts the kopf operators.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import kopf

from certsmith.admission.handlers import registry as admission_registry
from certsmith.admission.serving_keeper import ServingKeeper
from certsmith.authorities import rotation, store
from certsmith.authorities.controller import AuthorityController
from certsmith.certificates.reconcile import Reconciler
from certsmith.config import Config
from certsmith.controller.authority_steps import AuthoritySteps
from certsmith.controller.bundle_repair import BundleRepair
from certsmith.controller.certificate_queue import CertificateQueue
from certsmith.controller.certificate_requests import CertificateRequestSigner
from certsmith.controller.certificate_signing_requests import CertificateSigningRequestSigner
from certsmith.controller.dispatch import ScheduledActions
from certsmith.controller.handlers import registry as controller_registry
from certsmith.controller.namespace_events import NamespaceEvents
from certsmith.controller.namespace_labels import NamespaceLabels
from certsmith.controller.pod_certificates import PodCertificateSigner
from certsmith.controller.seal_key import SealKey
from certsmith.controller.secret_versions import SecretVersions
from certsmith.kube import Kube, new_api_client
from certsmith.podcerts.apis import PodCertificateApis
from certsmith.replicas.state import ReplicaState
from certsmith.scheduler import Scheduler


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Shared:
    """Parts both the controller and admission use."""

    config: Config
    kube: Kube
    executor: ThreadPoolExecutor
    """The worker threads: certificate building, authority steps, blocking API calls."""
    scheduler: Scheduler
    """Every timed action; run (Scheduler.run) only while this replica leads."""
    registry: store.AuthorityRegistry
    """The authorities' loaded material: the controller's, and the default one for the webhook."""
    replica: ReplicaState
    """This replica: apiserver contact, watch health, whether it leads."""
    pod_certificate_apis: PodCertificateApis
    """The pod-certificate API versions the cluster serves (found at start)."""


@dataclass(frozen=True)
class ControllerParts:
    """What runs only in the Lease holder."""

    namespace_labels: NamespaceLabels
    authority_controller: AuthorityController
    reconciler: Reconciler
    certificates: CertificateQueue
    secret_versions: SecretVersions
    """Every certsmith Secret's resourceVersion (a restart reads no Secret still as judged)."""
    seal_key: SealKey
    """The key of status seals, loaded at each term's start."""
    authorities: AuthoritySteps
    bundles: BundleRepair
    namespaces: NamespaceEvents
    actions: ScheduledActions
    pod_certificates: PodCertificateSigner | None
    """The PodCertificateRequest signer; None when the cluster serves no such requests."""
    certificate_requests: CertificateRequestSigner
    """Decides and signs CertificateRequests (enrolment by CSR)."""
    certificate_signing_requests: CertificateSigningRequestSigner
    """Signs the approved Kubernetes CertificateSigningRequests of certsmith's signers."""


@dataclass(frozen=True)
class Parts:
    shared: Shared
    controller: ControllerParts
    serving: ServingKeeper
    """The webhook's certificate and configurations, kept in every replica."""
    controller_handlers: kopf.OperatorRegistry
    """The watch handlers, run only while this replica holds the Lease."""
    admission_handlers: kopf.OperatorRegistry
    """The webhook server and its handlers, metrics and /readyz, run in every replica."""


LONG_LIVED_CONNECTIONS = 4
"""Connections held by the process's own watch threads (the Lease canary, the CA Secrets,
the serving certificate's follower) and the elector, beside the workers' ones: a pool with
no room for them discards a connection at every burst and dials (TLS) a new one."""


def new_kube(config: Config) -> Kube:
    """The one API client of the process, its pool sized for the workers and the
    long-lived watches."""
    return Kube(
        new_api_client(
            kubeconfig=config.kubeconfig, pool_size=config.workers + LONG_LIVED_CONNECTIONS
        )
    )


def build(config: Config, *, kube: Kube, pod_certificate_apis: PodCertificateApis) -> Parts:
    """Every long-lived part, wired; nothing runs until the operators start. `kube` is
    `new_kube(config)`; `pod_certificate_apis` what discovery found at start."""
    shared = Shared(
        config=config,
        kube=kube,
        pod_certificate_apis=pod_certificate_apis,
        executor=ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="certsmith"),
        scheduler=Scheduler(clock=utc_now, concurrency=config.workers),
        registry=store.AuthorityRegistry(),
        replica=ReplicaState(),
    )
    controller = _controller(shared)
    serving = ServingKeeper(kube=kube, config=config, registry=shared.registry, clock=utc_now)
    return Parts(
        shared=shared,
        controller=controller,
        serving=serving,
        controller_handlers=controller_registry(
            config=config,
            executor=shared.executor,
            scheduler=shared.scheduler,
            actions=controller.actions,
            reconciler=controller.reconciler,
            certificates=controller.certificates,
            secret_versions=controller.secret_versions,
            seal_key=controller.seal_key,
            authorities=controller.authorities,
            namespace_labels=controller.namespace_labels,
            namespaces=controller.namespaces,
            bundles=controller.bundles,
            cluster_trust_bundles=pod_certificate_apis.bundles,
            pod_certificates=controller.pod_certificates,
            certificate_requests=controller.certificate_requests,
            certificate_signing_requests=controller.certificate_signing_requests,
        ),
        admission_handlers=admission_registry(
            config=config,
            kube=kube,
            executor=shared.executor,
            serving=serving,
            replica=shared.replica,
            scheduler=shared.scheduler,
        ),
    )


def _controller(shared: Shared) -> ControllerParts:
    """The controller's parts, bottom up: the caches, the reconciler and the queue of
    Certificates, the authorities' steps and bundle repair, and last what dispatches to them.
    One straight list of constructions, so the dependency order reads top to bottom."""
    # Shared by the reconciler and the authorities: rotation re-issues at most reissueRate
    # per second.
    pacer = rotation.ReissuePacer()
    # Every write of the controller checks this replica's claim on the Lease first.
    kube = shared.kube.fenced(lambda: shared.replica.holds_claim(utc_now()))
    labels = NamespaceLabels(kube=kube)
    authority_controller = AuthorityController(
        kube=kube,
        config=shared.config,
        registry=shared.registry,
        scheduler=shared.scheduler,
        clock=utc_now,
        pacer=pacer,
        cluster_trust_bundles=shared.pod_certificate_apis.bundles,
    )
    seal_key = SealKey(kube=kube, namespace=shared.config.namespace)
    reconciler = Reconciler(
        kube=kube,
        config=shared.config,
        authorities=shared.registry,
        clock=utc_now,
        namespace_labels=labels.labels,
        pacer=pacer,
        seal_key=seal_key,
    )
    certificates = CertificateQueue(
        kube=kube,
        reconciler=reconciler,
        scheduler=shared.scheduler,
        pacer=pacer,
        clock=utc_now,
        default_authority=shared.config.default_authority,
    )
    certificate_requests = CertificateRequestSigner(
        kube=kube,
        config=shared.config,
        registry=shared.registry,
        namespace_labels=labels.labels,
        scheduler=shared.scheduler,
        clock=utc_now,
    )
    authorities = AuthoritySteps(
        kube=kube,
        config=shared.config,
        controller=authority_controller,
        registry=shared.registry,
        scheduler=shared.scheduler,
        certificates=certificates,
        replica=shared.replica,
        clock=utc_now,
        pod_certificate_apis=shared.pod_certificate_apis,
        roots_changed=certificate_requests.authority_roots_changed,
    )
    requests_version = shared.pod_certificate_apis.requests
    pod_certificates = (
        None
        if requests_version is None
        else PodCertificateSigner(
            kube=kube,
            config=shared.config,
            version=requests_version,
            registry=shared.registry,
            namespace_labels=labels.labels,
            scheduler=shared.scheduler,
            clock=utc_now,
        )
    )
    certificate_signing_requests = CertificateSigningRequestSigner(
        kube=kube,
        config=shared.config,
        registry=shared.registry,
        namespace_labels=labels.labels,
        scheduler=shared.scheduler,
        clock=utc_now,
    )
    bundles = BundleRepair(
        default_authority=shared.config.default_authority,
        controller=authority_controller,
        steps=authorities,
        namespaces=labels,
    )
    return ControllerParts(
        namespace_labels=labels,
        authority_controller=authority_controller,
        reconciler=reconciler,
        certificates=certificates,
        secret_versions=SecretVersions(kube=kube, reconciler=reconciler, certificates=certificates),
        seal_key=seal_key,
        authorities=authorities,
        bundles=bundles,
        namespaces=NamespaceEvents(
            kube=kube, labels=labels, certificates=certificates, bundles=bundles
        ),
        actions=ScheduledActions(
            executor=shared.executor,
            certificates=certificates,
            authorities=authorities,
            scheduler=shared.scheduler,
            clock=utc_now,
            pod_certificates=pod_certificates,
            certificate_requests=certificate_requests,
            certificate_signing_requests=certificate_signing_requests,
        ),
        pod_certificates=pod_certificates,
        certificate_requests=certificate_requests,
        certificate_signing_requests=certificate_signing_requests,
    )
