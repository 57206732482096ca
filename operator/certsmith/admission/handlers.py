"""Admission handlers: pod injection (mutating) and Certificate validation.

Thin like the watch handlers: parse with pure functions, look up what they need through
the Runtime, answer. They run only for requests the webhook configurations route here
(see webhook_config.py in this folder).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import kopf

from certsmith import metrics
from certsmith.admission import serving, webhook_config
from certsmith.api import model, names
from certsmith.authorities import store
from certsmith.certificates import isolation
from certsmith.kube import ApiError
from certsmith.pods import injection
from certsmith.replicas import readiness
from certsmith.runtime import Runtime

logger = logging.getLogger(__name__)
NEVER_RESTART_SECONDS = 10.0**9
"""kopf's file check interval: its server is never restarted for new files (see serving_reload)."""
# Admission handlers and their server; every replica runs them, leader or not.
REGISTRY = kopf.OperatorRegistry()
# The same minus the admission handlers, for CERTSMITH_WEBHOOKS=off: metrics and health only.
SERVING_ONLY = kopf.OperatorRegistry()


@kopf.on.login(registry=REGISTRY)
@kopf.on.login(registry=SERVING_ONLY)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # A registry of our own has none of kopf's default login handlers.
    return kopf.login_via_client(**kwargs)


@kopf.on.startup(registry=REGISTRY)
@kopf.on.startup(registry=SERVING_ONLY)
async def start_serving(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    cfg = runtime.config
    settings.posting.enabled = False
    settings.peering.standalone = True
    settings.execution.executor = runtime.executor
    loop = asyncio.get_running_loop()
    if cfg.webhooks:
        # The serving certificate comes from the default authority's current intermediate;
        # a broken authority does not stop the start (probes, retries): see prepare_serving.
        await loop.run_in_executor(runtime.executor, runtime.prepare_serving)
        directory = Path(cfg.webhook_cert_dir)
        certfile, keyfile = str(directory / "tls.crt"), str(directory / "tls.key")
        # kopf would restart its server when the files change, dropping requests in flight
        # (an admission failing with EOF mid-rotation). The server keeps running instead, and
        # a new certificate is loaded into its context, on the loop that does the handshakes.
        context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
        runtime.serving_reload = lambda: loop.call_soon_threadsafe(
            context.load_cert_chain, certfile, keyfile
        )
        settings.admission.server = kopf.WebhookServer(
            addr="0.0.0.0",
            port=cfg.webhook_port,
            context=context,
            certfile=certfile,
            pkeyfile=keyfile,
            file_check_interval=NEVER_RESTART_SECONDS,
            # Only the apiserver holds a certificate from this CA (its AdmissionConfiguration):
            # anyone else in the cluster cannot even complete the handshake.
            verify_mode=ssl.CERT_REQUIRED if cfg.webhook_client_ca else None,
            verify_cafile=cfg.webhook_client_ca,
        )
        if cfg.webhook_client_ca:
            logger.info(
                "webhook callers must present a certificate signed by %s", cfg.webhook_client_ca
            )
        else:
            logger.warning(
                "webhook callers are not authenticated: set "
                "CERTSMITH_WEBHOOK_CLIENT_CA (README: Hardening the webhook)"
            )
        # A thread, not an asyncio task: when the controller's kopf operator stops (the
        # Lease lost), kopf cancels every task created after it started, whoever owns it.
        threading.Thread(
            target=_follow_authority, args=(runtime,), name="serving-follower", daemon=True
        ).start()
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port, lambda: len(runtime.scheduler))
    if cfg.health_port:
        memo.health = await readiness.serve(
            port=cfg.health_port,
            authority_problem=runtime.default_authority_problem,
            webhook_port=cfg.webhook_port if cfg.webhooks else None,
            apiserver_silence=runtime.apiserver_silence,
            controller_problem=runtime.controller_problem,
        )


def _follow_authority(runtime: Runtime) -> None:
    while True:
        time.sleep(serving.CHECK_PERIOD)
        try:
            runtime.refresh_serving()
        except (ApiError, store.AuthorityNotReady) as error:
            logger.warning("webhook certificate not checked against the authority: %s", error)
        except Exception:
            # This loop is what moves the webhook through a root rotation: it must outlive
            # any single failure, and say what it was.
            logger.exception("webhook certificate not checked against the authority")


@kopf.on.mutate(
    "v1",
    "pods",
    id=webhook_config.INJECT_POD_PATH,
    operations=["CREATE"],
    side_effects=True,
    labels={names.INJECT_LABEL: "true"},
    registry=REGISTRY,
)
def inject_certificate(
    body: kopf.Body,
    patch: kopf.Patch,
    dryrun: bool,
    warnings: list[str],
    memo: kopf.Memo,
    **_: Any,
) -> None:
    runtime: Runtime = memo.runtime
    namespace = body["metadata"].get("namespace") or ""
    refusal = isolation.operator_namespace_refusal(namespace, runtime.config.namespace)
    if refusal is not None:
        # Neither an identity Certificate nor a named one can exist there.
        raise kopf.AdmissionError(f"label {names.INJECT_LABEL}: {refusal}", code=403)
    try:
        request = injection.parse_request(body["metadata"].get("annotations") or {})
    except injection.InjectionError as error:
        raise kopf.AdmissionError(str(error), code=400) from None

    try:
        if request.certificate is not None:
            certificate = runtime.kube.get_certificate(
                namespace=namespace, name=request.certificate
            )
            if certificate is None:
                raise kopf.AdmissionError(
                    f"annotation {names.INJECT_CERTIFICATE_ANNOTATION}: Certificate "
                    f"{namespace}/{request.certificate} does not exist",
                    code=400,
                )
            mounted = _mounted(body, request, certificate)
        else:
            certificate = injection.identity_certificate(
                namespace=namespace,
                service_account=injection.service_account(body["spec"]),
                dns_names=request.dns_names,
                trust_domain=runtime.config.trust_domain,
            )
            # Judged before the Certificate is created: a refused pod leaves nothing behind.
            mounted = _mounted(body, request, certificate)
            stored = (
                runtime.kube.get_certificate(
                    namespace=namespace, name=certificate["metadata"]["name"]
                )
                if dryrun
                else runtime.ensure_certificate(certificate)
            )
            if stored is not None:
                conflict = injection.identity_conflict(stored, certificate)
                if conflict is not None:
                    raise kopf.AdmissionError(conflict, code=409)
                if stored["spec"]["secretName"] != certificate["spec"]["secretName"]:
                    mounted = _mounted(body, request, stored)
    except ApiError as error:
        raise kopf.AdmissionError(f"certsmith could not prepare the certificate: {error}") from None

    # Shown by kubectl; a pod made by a controller only gets the unreadable file.
    warnings.extend(
        injection.ignored_annotation_warnings(body["metadata"].get("annotations") or {})
    )
    warnings.extend(
        injection.unreadable_key_warnings(
            body["spec"], mount_path=request.mount_path, key_mode=request.key_mode
        )
    )
    for key, value in mounted.items():
        patch.spec[key] = value


def _mounted(
    body: kopf.Body, request: injection.InjectionRequest, certificate: dict[str, Any]
) -> dict[str, Any]:
    try:
        return injection.mounted_pod_spec(
            body["spec"],
            secret_name=certificate["spec"]["secretName"],
            mount_path=request.mount_path,
            key_mode=request.key_mode,
        )
    except injection.InjectionError as error:
        raise kopf.AdmissionError(str(error), code=400) from None


@kopf.on.validate(
    names.GROUP,
    names.VERSION,
    names.CERTIFICATES,
    id=webhook_config.VALIDATE_CERTIFICATE_PATH,
    operations=["CREATE", "UPDATE"],
    registry=REGISTRY,
)
def validate_certificate(
    spec: kopf.Spec, old: kopf.Body | None, namespace: str, memo: kopf.Memo, **_: Any
) -> None:
    """Refuse at apply time what the operator would otherwise report as InvalidSpec or
    PolicyDenied.

    Only a new or changed spec is judged: metadata edits (labels, a renewal request) must
    stay possible on a Certificate admitted while the webhook was down.
    """
    if old is not None and dict(old.get("spec") or {}) == dict(spec):
        return
    runtime: Runtime = memo.runtime
    refusal = isolation.operator_namespace_refusal(namespace, runtime.config.namespace)
    if refusal is not None:
        raise kopf.AdmissionError(refusal, code=403)
    try:
        parsed = model.parse_certificate_spec(dict(spec))
    except model.InvalidSpec as invalid:
        raise kopf.AdmissionError(str(invalid), code=422) from None
    # Read the authority and the namespace fresh: a standby replica sees no watch events,
    # and grants and labels change.
    authority_body = runtime.kube.get_authority(name=parsed.issuer_name)
    if authority_body is None:
        return  # judged again at signing, once the authority exists
    try:
        grants = isolation.parse_grants((authority_body.get("spec") or {}).get("policy"))
    except model.InvalidSpec:
        grants = ()  # the authority reports its own bad policy; here it grants nothing
    violations = isolation.evaluate(
        namespace=namespace,
        namespace_labels=runtime.current_namespace_labels(namespace),
        spec=parsed,
        grants=grants,
        trust_domain=runtime.config.trust_domain,
    )
    if violations:
        raise kopf.AdmissionError("; ".join(str(v) for v in violations), code=403)
