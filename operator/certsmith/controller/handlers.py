"""kopf handlers: thin adapters from watch events to the Runtime.

They gather what kopf hands them and call the reconciler; the status a handler returns
travels in kopf's own status patch, so an issuance costs one Secret write and one
status write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from certsmith.api import names
from certsmith.authorities import store
from certsmith.kube import ApiError
from certsmith.runtime import AUTHORITY, Runtime

logger = logging.getLogger(__name__)

RETRY_DELAY = 2.0


@contextlib.contextmanager
def _retry_soon() -> Iterator[None]:
    """The apiserver did not answer: have kopf retry in seconds, not its default minute."""
    try:
        yield
    except ApiError as error:
        raise kopf.TemporaryError(str(error), delay=RETRY_DELAY) from None


# The controller's handlers; they run only in the replica holding the Lease.
REGISTRY = kopf.OperatorRegistry()


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


@kopf.on.login(registry=REGISTRY)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # A registry of our own has none of kopf's default login handlers.
    return kopf.login_via_client(**kwargs)


@kopf.on.startup(registry=REGISTRY)
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    configure(settings, runtime.executor, runtime.config.workers)
    runtime.new_term()
    # The default authority is ready before any Certificate is handled.
    loop = asyncio.get_running_loop()
    try:
        body = await loop.run_in_executor(
            runtime.executor, store.ensure_default_authority, runtime.kube, runtime.config
        )
        status = await loop.run_in_executor(runtime.executor, runtime.load_authority, body)
        if status is not None:
            await loop.run_in_executor(
                runtime.executor,
                lambda: runtime.kube.patch_authority_status(
                    name=runtime.config.default_authority, status=status
                ),
            )
    except ApiError as error:
        raise kopf.TemporaryError(f"apiserver not ready: {error}", delay=RETRY_DELAY) from None
    memo.scheduler_task = asyncio.create_task(runtime.scheduler.run())


@kopf.on.cleanup(registry=REGISTRY)
async def stop(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("scheduler_task")
    if task is not None:
        task.cancel()


@kopf.on.resume(names.GROUP, names.VERSION, names.AUTHORITIES, registry=REGISTRY)
def authority_resumed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    with _retry_soon():
        patch.status.update(memo.runtime.load_authority(body) or {})


@kopf.on.create(names.GROUP, names.VERSION, names.AUTHORITIES, registry=REGISTRY)
@kopf.on.update(names.GROUP, names.VERSION, names.AUTHORITIES, registry=REGISTRY)
def authority_changed(
    body: kopf.Body, name: str, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    """Created (perhaps again, after a deletion), or a new policy, bundle setting or rotation
    request: step now, and re-judge its leaves."""
    runtime: Runtime = memo.runtime
    with _retry_soon():
        patch.status.update(runtime.load_authority(body) or {})
        runtime.reconcile_authority_certificates(name)


# Deletions are taken from the watch's DELETED events, not from on.delete handlers: without
# a finalizer kopf never calls those (kopf #701), and a finalizer would make every delete
# wait for a running operator (an uninstall that removes the operator first would hang).
# Nothing has to happen before an object goes; what certsmith holds about it is dropped
# after. Deletions missed while no replica led are covered too: a new term rebuilds its
# caches from the cluster.
def _deleted(type: str, **_: Any) -> bool:
    # A filter, not a check inside the handler: kopf logs every handler call it makes.
    return type == "DELETED"


@kopf.on.event(names.GROUP, names.VERSION, names.AUTHORITIES, when=_deleted, registry=REGISTRY)
def authority_deleted(name: str, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    try:
        runtime.authority_deleted(name)
    except ApiError as error:  # event handlers are not retried: the scheduled step finishes it
        logger.warning("CertificateAuthority %s deleted, follow-up deferred: %s", name, error)
        runtime.scheduler.schedule((AUTHORITY, "", name), runtime.clock())


@kopf.on.resume(names.GROUP, names.VERSION, names.CERTIFICATES, registry=REGISTRY)
@kopf.on.create(names.GROUP, names.VERSION, names.CERTIFICATES, registry=REGISTRY)
@kopf.on.update(names.GROUP, names.VERSION, names.CERTIFICATES, registry=REGISTRY)
def certificate_changed(
    body: kopf.Body, namespace: str, name: str, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    runtime: Runtime = memo.runtime
    with _retry_soon():
        outcome = runtime.reconciler.reconcile(body)
    if outcome.status is not None:
        patch.status.update(outcome.status)
    runtime.after_certificate(namespace, name, outcome)


@kopf.on.event(names.GROUP, names.VERSION, names.CERTIFICATES, when=_deleted, registry=REGISTRY)
def certificate_deleted(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    # The Secret is kept on purpose (as cert-manager does): pods using it keep working.
    memo.runtime.forget_certificate(namespace, name)


@kopf.on.event("v1", "secrets", labels={names.CERTIFICATE_LABEL: kopf.PRESENT}, registry=REGISTRY)
async def certsmith_secret_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """A Secret of ours changed or vanished: have its Certificate looked at now, and any
    Certificate in SecretConflict over it (deleting a left-over Secret resolves that)."""
    if event["type"] is None:
        return  # the initial listing; resume handlers cover existing Certificates
    runtime: Runtime = memo.runtime
    metadata = body["metadata"]
    namespace, secret_name = metadata["namespace"], metadata["name"]
    for waiting in runtime.reconciler.waiting_on_secret(namespace, secret_name):
        runtime.certificate_due_now(namespace, waiting)
    if event["type"] != "DELETED" and runtime.reconciler.is_own_write(
        namespace, secret_name, metadata.get("resourceVersion", "")
    ):
        return
    runtime.certificate_due_now(namespace, metadata["labels"][names.CERTIFICATE_LABEL])


@kopf.on.event("v1", "namespaces", registry=REGISTRY)
def namespace_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """New namespaces get their trust bundles; labels are cached for the isolation policy."""
    if event["type"] == "DELETED":
        memo.runtime.namespace_deleted(body["metadata"]["name"])
        return
    try:
        memo.runtime.namespace_seen(body)
    except ApiError as error:  # event handlers are not retried: let the authorities catch up
        logger.warning(
            "trust bundle for namespace %s deferred: %s", body["metadata"]["name"], error
        )
        memo.runtime.step_authorities_soon()


@kopf.on.event("v1", "configmaps", labels={names.BUNDLE_LABEL: kopf.PRESENT}, registry=REGISTRY)
def trust_bundle_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A trust bundle was edited or deleted by someone else: put it back. Removing its label
    arrives as DELETED (the watch selects by label); the repair finds it by name."""
    if event["type"] is None:
        return
    runtime: Runtime = memo.runtime
    metadata = body["metadata"]
    key = (metadata["namespace"], metadata["name"])
    if event["type"] != "DELETED" and runtime.authorities.own_bundle_versions.get(
        key
    ) == metadata.get("resourceVersion"):
        return
    try:
        runtime.bundle_changed(body)
    except ApiError as error:
        logger.warning("trust bundle %s/%s deferred: %s", *key, error)
        runtime.step_authorities_soon()
