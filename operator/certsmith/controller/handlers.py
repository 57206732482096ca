"""kopf handlers: thin adapters from watch events to the controller's parts.

`registry(...)` builds them around the collaborators they use. They run only in the replica
holding the Lease. They gather what kopf hands them and call the reconciler; the status a
handler returns travels in kopf's own status patch, so an issuance costs one Secret write
and one status write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from certsmith.api import model, names
from certsmith.authorities import cluster_trust_bundle, revocation
from certsmith.certificates import status as certificate_status
from certsmith.certificates.reconcile import Reconciler
from certsmith.config import Config
from certsmith.controller import api_session
from certsmith.controller.authority_steps import AuthoritySteps
from certsmith.controller.bundle_repair import BundleRepair
from certsmith.controller.certificate_queue import CertificateQueue
from certsmith.controller.certificate_requests import CertificateRequestSigner
from certsmith.controller.certificate_signing_requests import CertificateSigningRequestSigner
from certsmith.controller.dispatch import ScheduledActions
from certsmith.controller.namespace_events import NamespaceEvents
from certsmith.controller.namespace_labels import NamespaceLabels
from certsmith.controller.pod_certificates import PodCertificateSigner
from certsmith.controller.seal_key import SealKey
from certsmith.controller.secret_versions import SecretVersions
from certsmith.enrolment import signing_requests
from certsmith.kube import ApiError
from certsmith.podcerts import requests
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)

RETRY_DELAY_SECONDS = 2.0
CA_SECRETS_WAIT_SECONDS = 10.0
"""How long a term's start waits for the CA Secrets' watch to have its first list before
it gives up and tries again (kopf.TemporaryError)."""


@contextlib.contextmanager
def _retry_soon() -> Iterator[None]:
    """The apiserver did not answer: have kopf retry in seconds, not its default minute."""
    try:
        yield
    except ApiError as error:
        raise kopf.TemporaryError(str(error), delay=RETRY_DELAY_SECONDS) from None


def _namespaced(namespace: str | None, kind: str) -> str:
    """kopf types every handler's namespace as optional; certsmith's namespaced kinds have one."""
    if namespace is None:
        raise kopf.PermanentError(f"a {kind} without a namespace")
    return namespace


OBJECT_TASK_IDLE_SECONDS = 0.1
"""How long kopf keeps an object's task after its last event (its own status write's echo
is awaited regardless, up to kopf's consistency_timeout)."""


def object_tasks(workers: int) -> int:
    """How many objects of one kind kopf handles at once (per watched resource): 16 per
    worker thread, at least 256, so the threads never wait for work while a task waits for
    its status echo."""
    return max(256, 16 * workers)


def configure(settings: kopf.OperatorSettings, executor: ThreadPoolExecutor, workers: int) -> None:
    # kopf's bookkeeping lives in status, so it rides along with our status patch.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.last-handled-configuration"
    )
    # Events are posted by the reconciler, only for decisions a person cares about.
    settings.posting.enabled = False
    # Watch only certsmith's own Secrets, filtered by the apiserver, not every Secret.
    settings.watching.label_selectors["secrets"] = names.CERTIFICATE_LABEL
    settings.watching.label_selectors["configmaps"] = names.BUNDLE_LABEL
    settings.execution.executor = executor
    settings.execution.max_workers = workers
    # kopf starts a task per object with events, each holding its handler's arguments
    # (body, diff, patch) while it waits for a worker thread: 10,000 Certificates applied
    # at once held ~10,000 of them. Beyond the limit an object waits with its raw event
    # only. A task whose object is handled (its status echo seen) ends after idle_timeout,
    # not kopf's 5 s, so its place goes to the next object at once.
    settings.queueing.worker_limit = object_tasks(workers)
    settings.queueing.idle_timeout = OBJECT_TASK_IDLE_SECONDS
    # A watch that silently stops (a dropped connection without a FIN, kopf #1276, #996)
    # must not stall certsmith: the apiserver ends each watch after 20 s, and a client that
    # heard nothing for 25 s reconnects; both resume from the last resourceVersion.
    settings.watching.server_timeout = 20
    settings.watching.client_timeout = 25
    settings.watching.connect_timeout = 5
    # kopf's own calls (status patches) wait 5 min by default on a dead connection.
    settings.networking.request_timeout = 15
    settings.networking.connect_timeout = 5
    # One replica acts, chosen by a Lease (replicas/leadership.py), not by kopf's peering.
    settings.peering.standalone = True


def registry(
    *,
    config: Config,
    executor: ThreadPoolExecutor,
    scheduler: Scheduler,
    actions: ScheduledActions,
    reconciler: Reconciler,
    certificates: CertificateQueue,
    secret_versions: SecretVersions,
    seal_key: SealKey,
    authorities: AuthoritySteps,
    namespace_labels: NamespaceLabels,
    namespaces: NamespaceEvents,
    bundles: BundleRepair,
    cluster_trust_bundles: str | None,
    pod_certificates: PodCertificateSigner | None,
    certificate_requests: CertificateRequestSigner,
    certificate_signing_requests: CertificateSigningRequestSigner,
) -> kopf.OperatorRegistry:
    """The controller's handlers, each bound to the parts it uses; run by one kopf operator
    per term (while this replica holds the Lease). `cluster_trust_bundles`: the served
    version of ClusterTrustBundles, None when the cluster does not serve them (not watched);
    `pod_certificates`: None when the cluster serves no PodCertificateRequests."""
    handlers = kopf.OperatorRegistry()
    _lifecycle(
        handlers,
        config=config,
        executor=executor,
        scheduler=scheduler,
        actions=actions,
        authorities=authorities,
        namespace_labels=namespace_labels,
        secret_versions=secret_versions,
        seal_key=seal_key,
        certificates=certificates,
    )
    _authority_handlers(handlers, authorities)
    _certificate_handlers(handlers, executor, reconciler, certificates, secret_versions)
    _certificate_event_handlers(handlers, executor, certificates, seal_key, authorities)
    _certificate_request_handlers(handlers, certificate_requests)
    _revocation_handlers(handlers, authorities)
    _certificate_signing_request_handlers(handlers, certificate_signing_requests)
    _namespace_handlers(handlers, namespaces, authorities)
    _bundle_handlers(handlers, bundles, authorities)
    if cluster_trust_bundles is not None:
        _cluster_trust_bundle_handlers(handlers, bundles, authorities, cluster_trust_bundles)
    if pod_certificates is not None:
        _pod_certificate_handlers(handlers, pod_certificates)
    return handlers


def _lifecycle(
    handlers: kopf.OperatorRegistry,
    *,
    config: Config,
    executor: ThreadPoolExecutor,
    scheduler: Scheduler,
    actions: ScheduledActions,
    authorities: AuthoritySteps,
    namespace_labels: NamespaceLabels,
    secret_versions: SecretVersions,
    seal_key: SealKey,
    certificates: CertificateQueue,
) -> None:
    @kopf.on.login(registry=handlers)
    async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
        # A registry of our own has none of kopf's default login handlers. Async: the
        # session is made on kopf's loop.
        info = kopf.login_via_client(**kwargs)
        if info is None:
            return None
        return api_session.bounded_session(info, limit=api_session.connection_limit(config.workers))

    @kopf.on.startup(registry=handlers)
    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings, executor, config.workers)
        # What an earlier term cached may be stale: the watches' first listing refills it.
        authorities.start_term()
        namespace_labels.clear()
        # The default authority is ready, and the Secrets' versions listed, before any
        # Certificate is handled (kopf starts its watches after the startup handlers).
        loop = asyncio.get_running_loop()
        watched = await loop.run_in_executor(
            executor, authorities.ca_secrets_watched, CA_SECRETS_WAIT_SECONDS
        )
        if not watched:
            raise kopf.TemporaryError(
                "the CA Secrets are not listed yet", delay=RETRY_DELAY_SECONDS
            )
        try:
            # One list of every Certificate serves the default authority's step and the
            # schedule's rebuild: at 10,000 a list takes a second to decode.
            listed = await loop.run_in_executor(executor, certificates.list_all)
            await loop.run_in_executor(executor, authorities.ensure_default, listed)
            await loop.run_in_executor(executor, seal_key.load)
            await loop.run_in_executor(executor, secret_versions.start_term)
            # After the Secrets' list: their versions vouch for the Certificates' status.
            await loop.run_in_executor(
                executor, certificates.resume_listed, listed, secret_versions.get
            )
        except ApiError as error:
            raise kopf.TemporaryError(
                f"apiserver not ready: {error}", delay=RETRY_DELAY_SECONDS
            ) from None
        memo.scheduler_task = asyncio.create_task(scheduler.run(actions))

    @kopf.on.cleanup(registry=handlers)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        secret_versions.end_term()
        task = memo.get("scheduler_task")
        if task is not None:
            task.cancel()


# Deletions are taken from the watch's DELETED events, not from on.delete handlers: without
# a finalizer kopf never calls those (kopf #701), and a finalizer would make every delete
# wait for a running operator (an uninstall that removes the operator first would hang).
# Nothing has to happen before an object goes; what certsmith holds about it is dropped
# after. Deletions missed while no replica led are covered too: a new term rebuilds its
# caches from the cluster.
def _deleted(type: str, **_: Any) -> bool:
    # A filter, not a check inside the handler: kopf logs every handler call it makes.
    return type == "DELETED"


def _authority_handlers(handlers: kopf.OperatorRegistry, authorities: AuthoritySteps) -> None:
    # A step writes the authority's status itself, under its lock: kopf's patch, written
    # after the handler, could overwrite the status of a step that ran meanwhile.
    @kopf.on.resume(names.GROUP, names.VERSION, names.AUTHORITIES, registry=handlers)
    def authority_resumed(body: kopf.Body, **_: Any) -> None:
        with _retry_soon():
            authorities.resumed(body)

    @kopf.on.create(names.GROUP, names.VERSION, names.AUTHORITIES, registry=handlers)
    @kopf.on.update(names.GROUP, names.VERSION, names.AUTHORITIES, registry=handlers)
    def authority_changed(body: kopf.Body, **_: Any) -> None:
        """Created (perhaps again, after a deletion), or a new policy, bundle setting or
        rotation request: step now, and re-judge its leaves."""
        with _retry_soon():
            authorities.changed(body)

    @kopf.on.event(names.GROUP, names.VERSION, names.AUTHORITIES, when=_deleted, registry=handlers)
    def authority_deleted(name: str, **_: Any) -> None:
        try:
            authorities.deleted(name)
        except ApiError as error:  # event handlers are not retried: the scheduled step ends it
            logger.warning("CertificateAuthority %s deleted, follow-up deferred: %s", name, error)
            authorities.step_now(name)


def _certificate_handlers(
    handlers: kopf.OperatorRegistry,
    executor: ThreadPoolExecutor,
    reconciler: Reconciler,
    certificates: CertificateQueue,
    secret_versions: SecretVersions,
) -> None:
    def judge(body: kopf.Body, where: str, name: str, secret_name: str, patch: kopf.Patch) -> None:
        # A change of its Secret reported from here on has it judged again after.
        with certificates.running(where, name):
            listed = secret_versions.get(where, secret_name)
            with _retry_soon():
                outcome = reconciler.reconcile(body, secret_version=listed)
            if outcome.status is not None:
                patch.status.update(outcome.status)
            certificates.after(where, name, outcome)

    @kopf.on.resume(names.GROUP, names.VERSION, names.CERTIFICATES, registry=handlers)
    @kopf.on.create(names.GROUP, names.VERSION, names.CERTIFICATES, registry=handlers)
    @kopf.on.update(names.GROUP, names.VERSION, names.CERTIFICATES, registry=handlers)
    async def certificate_changed(
        body: kopf.Body,
        namespace: str | None,
        name: str,
        patch: kopf.Patch,
        spec: kopf.Spec,
        **_: Any,
    ) -> None:
        where = _namespaced(namespace, "Certificate")
        # Async: a Certificate the term's start already judged at this version (most of
        # them, at a restart) costs no hop to a worker thread.
        if certificates.resumed_at_start(
            where, name, str(body.metadata.get("resourceVersion") or "")
        ):
            return
        secret_name = str(spec.get("secretName") or "")
        await asyncio.get_running_loop().run_in_executor(
            executor, judge, body, where, name, secret_name, patch
        )


def _certificate_event_handlers(
    handlers: kopf.OperatorRegistry,
    executor: ThreadPoolExecutor,
    certificates: CertificateQueue,
    seal_key: SealKey,
    authorities: AuthoritySteps,
) -> None:
    """A Certificate deleted, asking to be revoked, or its status edited by someone else."""

    def status_edited(type: str | None, body: kopf.Body) -> bool:
        # Status is not part of what kopf's update handlers compare; a status certsmith did
        # not write (its seal does not hold) is judged again on the Secret. The term's
        # first list (type None) is the resume handler's.
        if type not in ("ADDED", "MODIFIED"):
            return False
        observed = certificate_status.Observed.from_body(body)
        return certificate_status.edited(observed, seal_key(), created=type == "ADDED")

    def wanted(type: str | None, body: kopf.Body, **_: Any) -> bool:
        # One filter for the three cases, not one handler each: kopf builds a filter's
        # arguments anew for every handler on every event, two events per issuance.
        return type == "DELETED" or _revocation_requested(body) or status_edited(type, body)

    # Async: a deletion or status edit only touches memory, so it runs on the event loop
    # instead of waiting for a worker thread behind every queued issuance. The Secrets'
    # events come from secret_versions' own watch, not kopf's.
    @kopf.on.event(names.GROUP, names.VERSION, names.CERTIFICATES, when=wanted, registry=handlers)
    async def certificate_event(
        event: kopf.RawEvent, namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> None:
        where = _namespaced(namespace, "Certificate")
        if event["type"] == "DELETED":
            # The Secret is kept on purpose (as cert-manager does): pods using it keep working.
            certificates.forget(where, name)
            return
        if _revocation_requested(body):
            await asyncio.get_running_loop().run_in_executor(
                executor, _step_its_authority, authorities, "Certificate", body
            )
        if status_edited(event["type"], body):
            logger.info(
                "Certificate %s/%s: status edited by someone else, judged again", where, name
            )
            certificates.due_now(where, name)


def _certificate_request_handlers(
    handlers: kopf.OperatorRegistry, signer: CertificateRequestSigner
) -> None:
    @kopf.on.event(names.GROUP, names.VERSION, names.CERTIFICATE_REQUESTS, registry=handlers)
    def certificate_request_event(
        event: kopf.RawEvent, namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> None:
        """Decide it now: created, approved or denied through its status, or listed at the
        start of a term (one approved before a restart is signed then)."""
        if event["type"] == "DELETED":
            signer.forget(_namespaced(namespace, "CertificateRequest"), name)
            return
        signer.seen(body)


def _revocation_requested(body: kopf.Body, **_: Any) -> bool:
    # A finalizer alone: handled, but not removed yet (the object waits to be deleted).
    metadata = body.get("metadata", {})
    return revocation.REQUESTED_AT_ANNOTATION in metadata.get(
        "annotations", {}
    ) or names.REVOKE_FINALIZER in (metadata.get("finalizers") or [])


def _step_its_authority(authorities: AuthoritySteps, kind: str, body: kopf.Body) -> None:
    """`kubectl certsmith revoke` annotated a Certificate or CertificateRequest (`kind`): its
    authority steps now, which records the revocation, publishes its CRL and removes the
    annotation (authorities.crl_publisher)."""
    issuer = (body.get("spec", {}).get("issuerRef") or {}).get("name", model.DEFAULT_ISSUER)
    metadata = body["metadata"]
    authorities.revocation_requested(issuer, kind, metadata["namespace"], metadata["name"])


def _revocation_handlers(handlers: kopf.OperatorRegistry, authorities: AuthoritySteps) -> None:
    """CertificateRequests asking to be revoked (Certificates: `_certificate_event_handlers`)."""

    @kopf.on.event(
        names.GROUP,
        names.VERSION,
        names.CERTIFICATE_REQUESTS,
        when=_revocation_requested,
        registry=handlers,
    )
    def certificate_request_revocation(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        if event["type"] != "DELETED":
            _step_its_authority(authorities, "CertificateRequest", body)


def _approved_certsmith_csr(type: str, body: kopf.Body, **_: Any) -> bool:
    # Another signer's CSR is never handed to a handler (nor logged); one of certsmith's only
    # once approved and not answered, or when it goes away.
    if not signing_requests.is_certsmiths(body):
        return False
    return type == "DELETED" or signing_requests.stage(body) == signing_requests.Stage.SIGN


def _certificate_signing_request_handlers(
    handlers: kopf.OperatorRegistry, signer: CertificateSigningRequestSigner
) -> None:
    @kopf.on.startup(registry=handlers)
    def certificate_signing_requests_start(**_: Any) -> None:
        signer.start_term()

    @kopf.on.event(
        names.CERTIFICATES_GROUP,
        "v1",
        names.CERTIFICATE_SIGNING_REQUESTS,
        when=_approved_certsmith_csr,
        registry=handlers,
    )
    def certificate_signing_request_event(
        event: kopf.RawEvent, name: str, body: kopf.Body, **_: Any
    ) -> None:
        """Sign it now: approved, or listed at the start of a term (one approved before a
        restart is signed then)."""
        if event["type"] == "DELETED":
            signer.forget(name)
            return
        signer.seen(body)


def _namespace_handlers(
    handlers: kopf.OperatorRegistry, namespaces: NamespaceEvents, authorities: AuthoritySteps
) -> None:
    @kopf.on.event("v1", "namespaces", registry=handlers)
    def namespace_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        """New namespaces get their trust bundles; labels are cached for the isolation policy."""
        if event["type"] == "DELETED":
            namespaces.deleted(body["metadata"]["name"])
            return
        try:
            if event["type"] is None:
                namespaces.listed(body)
            else:
                namespaces.seen(body)
        except ApiError as error:  # event handlers are not retried: let the authorities catch up
            logger.warning(
                "trust bundle for namespace %s deferred: %s", body["metadata"]["name"], error
            )
            authorities.all_step_soon()


def _bundle_handlers(
    handlers: kopf.OperatorRegistry, bundles: BundleRepair, authorities: AuthoritySteps
) -> None:
    @kopf.on.event("v1", "configmaps", labels={names.BUNDLE_LABEL: kopf.PRESENT}, registry=handlers)
    def trust_bundle_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        """A trust bundle was edited or deleted by someone else: put it back. Removing its
        label arrives as DELETED (the watch selects by label); the repair finds it by name."""
        if event["type"] is None:
            return
        metadata = body["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        if event["type"] != "DELETED" and bundles.is_own_write(
            namespace, name, metadata.get("resourceVersion", "")
        ):
            return
        try:
            bundles.changed(body)
        except ApiError as error:
            logger.warning("trust bundle %s/%s deferred: %s", namespace, name, error)
            authorities.all_step_soon()


def _an_authoritys_bundle(name: str, **_: Any) -> bool:
    # A filter, not a check inside the handler: kopf logs every handler call it makes.
    return cluster_trust_bundle.bundle_authority(name) is not None


def _cluster_trust_bundle_handlers(
    handlers: kopf.OperatorRegistry,
    bundles: BundleRepair,
    authorities: AuthoritySteps,
    version: str,
) -> None:
    @kopf.on.event(
        names.CERTIFICATES_GROUP,
        version,
        names.CLUSTER_TRUST_BUNDLES,
        when=_an_authoritys_bundle,
        registry=handlers,
    )
    def cluster_trust_bundle_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        """An authority's ClusterTrustBundle was created, edited or deleted by someone else:
        put it back (or report the foreign one). Few objects exist cluster-wide, so all are
        watched: a removed label must not hide an edit."""
        if event["type"] is None:
            return  # the initial listing; the authorities' steps publish them
        metadata = body["metadata"]
        name = metadata["name"]
        if event["type"] != "DELETED" and bundles.is_own_cluster_trust_bundle_write(
            name, metadata.get("resourceVersion", "")
        ):
            return
        try:
            bundles.cluster_trust_bundle_changed(name)
        except ApiError as error:
            logger.warning("ClusterTrustBundle %s deferred: %s", name, error)
            authorities.all_step_soon()


def _pending_certsmith_request(type: str, body: kopf.Body, **_: Any) -> bool:
    # Another signer's request is never handed to a handler (nor logged); an answered one
    # only when it goes away.
    return requests.is_certsmiths(body) and (type == "DELETED" or requests.answered(body) is None)


def _pod_certificate_handlers(
    handlers: kopf.OperatorRegistry, signer: PodCertificateSigner
) -> None:
    @kopf.on.startup(registry=handlers)
    def pod_certificates_start(**_: Any) -> None:
        signer.start_term()

    @kopf.on.event(
        names.CERTIFICATES_GROUP,
        signer.version,
        names.POD_CERTIFICATE_REQUESTS,
        when=_pending_certsmith_request,
        registry=handlers,
    )
    def pod_certificate_request_event(
        event: kopf.RawEvent, namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> None:
        """Answer it now; the first listing of a term brings those created meanwhile."""
        if event["type"] == "DELETED":
            signer.forget(_namespaced(namespace, "PodCertificateRequest"), name)
            return
        signer.seen(body)
