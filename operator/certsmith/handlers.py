"""kopf handlers: thin adapters from watch events to the Runtime.

They gather what kopf hands them and call the reconciler; the status a handler returns
travels in kopf's own status patch, so an issuance costs one Secret write and one
status write.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf

from certsmith import authorities, config, health, kube, metrics, tls_secret, trust_bundle
from certsmith.reconcile import Reconciler
from certsmith.runtime import Runtime
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)

GROUP, VERSION = kube.GROUP, kube.VERSION


def utc_now() -> datetime:
    return datetime.now(UTC)


def _configure(settings: kopf.OperatorSettings, cfg: config.Config) -> ThreadPoolExecutor:
    # kopf's bookkeeping lives in status, so it rides along with our status patch.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.last-handled-configuration"
    )
    # Events are posted by the reconciler, only for decisions a person cares about.
    settings.posting.enabled = False
    # Watch only certsmith's own Secrets, filtered by the apiserver, not every Secret.
    settings.watching.label_selectors["secrets"] = tls_secret.CERTIFICATE_LABEL
    settings.watching.label_selectors["configmaps"] = trust_bundle.BUNDLE_LABEL
    executor = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="certsmith")
    settings.execution.executor = executor
    settings.execution.max_workers = cfg.workers
    settings.peering.standalone = True
    return executor


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    cfg = config.from_env()
    executor = _configure(settings, cfg)
    client = kube.Kube(kube.new_api_client(kubeconfig=cfg.kubeconfig, pool_size=cfg.workers))
    registry = authorities.AuthorityRegistry()
    runtime_ref: list[Runtime] = []

    async def run_scheduled(key: Any) -> None:
        await runtime_ref[0].run_scheduled(key)

    runtime = Runtime(
        config=cfg,
        kube=client,
        registry=registry,
        reconciler=Reconciler(
            kube=client,
            config=cfg,
            authorities=registry,
            clock=utc_now,
            namespace_labels=lambda namespace: runtime_ref[0].namespace_labels(namespace),
        ),
        scheduler=Scheduler(clock=utc_now, action=run_scheduled, concurrency=cfg.workers),
        executor=executor,
        clock=utc_now,
    )
    runtime_ref.append(runtime)
    memo.runtime = runtime
    # The default authority is ready before any Certificate is handled.
    loop = asyncio.get_running_loop()
    body = await loop.run_in_executor(executor, authorities.ensure_default_authority, client, cfg)
    status = await loop.run_in_executor(executor, runtime.load_authority, body)
    await loop.run_in_executor(
        executor, lambda: client.patch_authority_status(name=cfg.default_authority, status=status)
    )
    if cfg.webhooks:
        await loop.run_in_executor(executor, runtime.write_serving_certificate)
        directory = Path(cfg.webhook_cert_dir)
        settings.admission.server = kopf.WebhookServer(
            addr="0.0.0.0",
            port=cfg.webhook_port,
            certfile=str(directory / "tls.crt"),
            pkeyfile=str(directory / "tls.key"),
            file_check_interval=10,
        )
        await loop.run_in_executor(executor, runtime.register_webhooks)
    memo.scheduler_task = asyncio.create_task(runtime.scheduler.run())
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port, lambda: len(runtime.scheduler))
    if cfg.health_port:
        memo.health = await health.serve(
            port=cfg.health_port,
            authority_loaded=lambda: registry.get(cfg.default_authority) is not None,
            webhook_port=cfg.webhook_port if cfg.webhooks else None,
        )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("scheduler_task")
    if task is not None:
        task.cancel()


@kopf.on.resume(GROUP, VERSION, "certificateauthorities")
@kopf.on.create(GROUP, VERSION, "certificateauthorities")
def authority_appeared(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    patch.status.update(memo.runtime.load_authority(body))


@kopf.on.update(GROUP, VERSION, "certificateauthorities")
def authority_changed(
    body: kopf.Body, name: str, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    """A new policy, bundle setting or rotation request: step now, and re-judge its leaves."""
    runtime: Runtime = memo.runtime
    patch.status.update(runtime.load_authority(body))
    runtime.reconcile_authority_certificates(name)


@kopf.on.delete(GROUP, VERSION, "certificateauthorities", optional=True)
def authority_deleted(name: str, memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.registry.remove(name)


@kopf.on.resume(GROUP, VERSION, "certificates")
@kopf.on.create(GROUP, VERSION, "certificates")
@kopf.on.update(GROUP, VERSION, "certificates")
def certificate_changed(
    body: kopf.Body, namespace: str, name: str, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    runtime: Runtime = memo.runtime
    outcome = runtime.reconciler.reconcile(body)
    if outcome.status is not None:
        patch.status.update(outcome.status)
    runtime.after_certificate(namespace, name, outcome)


@kopf.on.delete(GROUP, VERSION, "certificates", optional=True)
def certificate_deleted(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    # The Secret is kept on purpose (as cert-manager does): pods using it keep working.
    memo.runtime.forget_certificate(namespace, name)


@kopf.on.event("v1", "secrets", labels={tls_secret.CERTIFICATE_LABEL: kopf.PRESENT})
async def certsmith_secret_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """A Secret of ours changed or vanished: have its Certificate looked at now."""
    if event["type"] is None:
        return  # the initial listing; resume handlers cover existing Certificates
    runtime: Runtime = memo.runtime
    metadata = body["metadata"]
    namespace, secret_name = metadata["namespace"], metadata["name"]
    if event["type"] != "DELETED" and runtime.reconciler.is_own_write(
        namespace, secret_name, metadata.get("resourceVersion", "")
    ):
        return
    runtime.certificate_due_now(namespace, metadata["labels"][tls_secret.CERTIFICATE_LABEL])


@kopf.on.event("v1", "namespaces")
def namespace_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """New namespaces get their trust bundles; labels are cached for the isolation policy."""
    if event["type"] == "DELETED":
        memo.runtime.namespaces.pop(body["metadata"]["name"], None)
        return
    memo.runtime.namespace_seen(body)


@kopf.on.event("v1", "configmaps", labels={trust_bundle.BUNDLE_LABEL: kopf.PRESENT})
def trust_bundle_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A trust bundle was edited or deleted by someone else: put it back."""
    if event["type"] is None:
        return
    runtime: Runtime = memo.runtime
    metadata = body["metadata"]
    key = (metadata["namespace"], metadata["name"])
    if event["type"] != "DELETED" and runtime.authorities.own_bundle_versions.get(
        key
    ) == metadata.get("resourceVersion"):
        return
    runtime.bundle_needed(metadata["namespace"], metadata["labels"][trust_bundle.BUNDLE_LABEL])
