"""Admission handlers: pod injection (mutating) and Certificate validation, and the webhook
server, metrics and `/readyz` they start with.

`registry(...)` builds them around the collaborators they use; every replica runs them,
leader or not. Thin like the watch handlers: parse with pure functions, read what they need
from the apiserver now (a standby replica sees no watch events, so no cache of the
controller's can answer here), answer. They run only for requests the webhook
configurations route here (see webhook_config.py in this folder).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kopf

from certsmith import metrics
from certsmith.admission import webhook_config
from certsmith.admission.serving_keeper import ServingKeeper
from certsmith.api import model, names
from certsmith.authorities import crl_publisher
from certsmith.certificates import isolation
from certsmith.config import Config
from certsmith.enrolment import csr
from certsmith.kube import ApiError, Kube
from certsmith.pki import name_constraints
from certsmith.pods import injection
from certsmith.replicas import readiness
from certsmith.replicas.state import ReplicaState
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)
NEVER_RESTART_SECONDS = 10.0**9
"""kopf's file check interval: its server is never restarted for new files (see
_webhook_server)."""


def registry(
    *,
    config: Config,
    kube: Kube,
    executor: ThreadPoolExecutor,
    serving: ServingKeeper,
    replica: ReplicaState,
    scheduler: Scheduler,
) -> kopf.OperatorRegistry:
    """The webhook server with its handlers (only metrics and health when
    `config.webhooks` is off); `scheduler` is read for the metric of waiting actions."""
    handlers = kopf.OperatorRegistry()

    @kopf.on.login(registry=handlers)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own has none of kopf's default login handlers.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=handlers)
    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.posting.enabled = False
        settings.peering.standalone = True
        settings.execution.executor = executor
        if config.webhooks:
            await _start_webhook(settings, config=config, executor=executor, serving=serving)
        if config.metrics_port:
            metrics.serve(config.metrics_port, lambda: len(scheduler))
        if config.health_port:
            memo.health = await readiness.serve(
                port=config.health_port,
                replica=replica,
                authority_problem=_authority_problem(config, serving, replica),
                webhook_port=config.webhook_port if config.webhooks else None,
                crl=crl_publisher.CrlCache(kube, config).der,
            )

    if config.webhooks:
        _injection_handler(handlers, config=config, kube=kube)
        _validation_handler(handlers, config=config, kube=kube)
        _request_validation_handler(handlers)
    return handlers


def _authority_problem(
    config: Config, serving: ServingKeeper, replica: ReplicaState
) -> Callable[[], str | None]:
    """What /readyz asks of the default authority. A replica with webhooks off needs it only
    while it leads (it signs then); as a standby it loads nothing and waits, ready."""
    if config.webhooks:
        return serving.default_authority_problem
    return lambda: serving.default_authority_problem() if replica.leading else None


async def _start_webhook(
    settings: kopf.OperatorSettings,
    *,
    config: Config,
    executor: ThreadPoolExecutor,
    serving: ServingKeeper,
) -> None:
    """Its certificate first (a broken authority does not stop the start: see
    ServingKeeper.prepare), then the server, then the thread that keeps both current."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(executor, serving.prepare)
    directory = Path(config.webhook_cert_dir)
    certfile, keyfile = str(directory / "tls.crt"), str(directory / "tls.key")
    # kopf would restart its server when the files change, dropping requests in flight
    # (an admission failing with EOF mid-rotation). The server keeps running instead, and
    # a new certificate is loaded into its context, on the loop that does the handshakes.
    context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
    settings.admission.server = kopf.WebhookServer(
        addr="0.0.0.0",
        port=config.webhook_port,
        context=context,
        certfile=certfile,
        pkeyfile=keyfile,
        file_check_interval=NEVER_RESTART_SECONDS,
        # Only the apiserver holds a certificate from this CA (its AdmissionConfiguration):
        # anyone else in the cluster cannot even complete the handshake.
        verify_mode=ssl.CERT_REQUIRED if config.webhook_client_ca else None,
        verify_cafile=config.webhook_client_ca,
    )
    _log_caller_authentication(config.webhook_client_ca)

    def load() -> None:
        error = load_serving_pair(context, certfile, keyfile)
        if error is not None:
            # The files changed under the load (another process writing the same
            # directory): the server keeps the pair it had, and a new one is written.
            logger.error("webhook certificate files not loaded: %s; writing them again", error)
            serving.load_failed()

    threading.Thread(
        target=serving.follow,
        args=(lambda: loop.call_soon_threadsafe(load),),
        name="serving-follower",
        daemon=True,
    ).start()


def load_serving_pair(
    context: ssl.SSLContext, certfile: str, keyfile: str
) -> ssl.SSLError | OSError | None:
    """Load the pair into the server's `context`, or return why it cannot be loaded and
    leave `context` serving what it had. A failed load_cert_chain leaves a context
    half-loaded (the new certificate with the old key: no handshake completes), so the
    pair is tried on a scratch context first."""
    try:
        ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            certfile, keyfile
        )
    except (ssl.SSLError, OSError) as error:
        return error
    context.load_cert_chain(certfile, keyfile)
    return None


def _log_caller_authentication(client_ca: str | None) -> None:
    if client_ca:
        logger.info("webhook callers must present a certificate signed by %s", client_ca)
    else:
        logger.warning(
            "webhook callers are not authenticated: set "
            "CERTSMITH_WEBHOOK_CLIENT_CA (README: Hardening the webhook)"
        )


def ensure_certificate(kube: Kube, body: Mapping[str, Any]) -> dict[str, Any]:
    """Create a Certificate unless one of that name exists; return the stored one.
    ApiError when the apiserver refuses or does not answer."""
    metadata = body["metadata"]
    try:
        return kube.create_certificate(body=body)
    except ApiError as error:
        if not error.conflict:
            raise
    found = kube.get_certificate(namespace=metadata["namespace"], name=metadata["name"])
    if found is None:
        raise ApiError(409, "Conflict", f"Certificate {metadata['name']} vanished")
    return found


def _injection_handler(handlers: kopf.OperatorRegistry, *, config: Config, kube: Kube) -> None:
    @kopf.on.mutate(
        "v1",
        "pods",
        id=webhook_config.INJECT_POD_PATH,
        operations=["CREATE"],
        side_effects=True,
        labels={names.INJECT_LABEL: "true"},
        registry=handlers,
    )
    def inject_certificate(
        body: kopf.Body, patch: kopf.Patch, dryrun: bool, warnings: list[str], **_: Any
    ) -> None:
        namespace = body["metadata"].get("namespace") or ""
        refusal = isolation.operator_namespace_refusal(namespace, config.namespace)
        if refusal is not None:
            # Neither an identity Certificate nor a named one can exist there.
            raise kopf.AdmissionError(f"label {names.INJECT_LABEL}: {refusal}", code=403)
        annotations = body["metadata"].get("annotations") or {}
        try:
            request = injection.parse_request(annotations)
        except injection.InjectionError as error:
            raise kopf.AdmissionError(str(error), code=400) from None
        try:
            mounted = _certificate_mount(body, request, config, kube, dryrun=dryrun)
        except ApiError as error:
            raise kopf.AdmissionError(
                f"certsmith could not prepare the certificate: {error}"
            ) from None
        # Shown by kubectl; a pod made by a controller only gets the unreadable file.
        warnings.extend(injection.ignored_annotation_warnings(annotations))
        warnings.extend(
            injection.unreadable_key_warnings(
                body["spec"], mount_path=request.mount_path, key_mode=request.key_mode
            )
        )
        for key, value in mounted.items():
            patch.spec[key] = value


def _certificate_mount(
    body: kopf.Body,
    request: injection.InjectionRequest,
    config: Config,
    kube: Kube,
    *,
    dryrun: bool,
) -> dict[str, Any]:
    """The pod spec fields that mount the Certificate's Secret: the named Certificate's, or
    the pod's identity Certificate's (created unless `dryrun`). AdmissionError when the pod
    cannot have it; ApiError when the apiserver does not answer."""
    namespace = body["metadata"].get("namespace") or ""
    if request.certificate is None:
        return _identity_mount(body, request, config, kube, dryrun=dryrun)
    named = kube.get_certificate(namespace=namespace, name=request.certificate)
    if named is None:
        raise kopf.AdmissionError(
            f"annotation {names.INJECT_CERTIFICATE_ANNOTATION}: Certificate "
            f"{namespace}/{request.certificate} does not exist",
            code=400,
        )
    return _mounted(body, request, named)


def _identity_mount(
    body: kopf.Body,
    request: injection.InjectionRequest,
    config: Config,
    kube: Kube,
    *,
    dryrun: bool,
) -> dict[str, Any]:
    """The pod's identity Certificate (its service account's SPIFFE ID), created unless it
    exists or `dryrun`; the pod spec fields that mount its Secret."""
    namespace = body["metadata"].get("namespace") or ""
    identity = injection.identity_certificate(
        namespace=namespace,
        service_account=injection.service_account(body["spec"]),
        dns_names=request.dns_names,
        trust_domain=config.trust_domain,
    )
    # Judged before the Certificate is created: a refused pod leaves nothing behind.
    mounted = _mounted(body, request, identity)
    stored = (
        kube.get_certificate(namespace=namespace, name=identity["metadata"]["name"])
        if dryrun
        else ensure_certificate(kube, identity)
    )
    if stored is None:
        return mounted
    conflict = injection.identity_conflict(stored, identity)
    if conflict is not None:
        raise kopf.AdmissionError(conflict, code=409)
    if stored["spec"]["secretName"] != identity["spec"]["secretName"]:
        return _mounted(body, request, stored)
    return mounted


def _mounted(
    body: kopf.Body, request: injection.InjectionRequest, certificate: Mapping[str, Any]
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


def _validation_handler(handlers: kopf.OperatorRegistry, *, config: Config, kube: Kube) -> None:
    @kopf.on.validate(
        names.GROUP,
        names.VERSION,
        names.CERTIFICATES,
        id=webhook_config.VALIDATE_CERTIFICATE_PATH,
        operations=["CREATE", "UPDATE"],
        registry=handlers,
    )
    def validate_certificate(
        spec: kopf.Spec, namespace: str | None, old: kopf.Body | None = None, **_: Any
    ) -> None:
        """Refuse at apply time what the operator would otherwise report as InvalidSpec or
        PolicyDenied, for the specs the ValidatingAdmissionPolicy leaves to this webhook
        (admission_policy.judged_in_cel false: the apiserver calls it for no other).

        Only a new or changed spec is judged: metadata edits (labels, a renewal request)
        must stay possible on a Certificate admitted while the webhook was down.
        """
        if old is not None and dict(old.get("spec") or {}) == dict(spec):
            return
        violations = _certificate_violations(dict(spec), namespace or "", config, kube)
        if violations:
            raise kopf.AdmissionError("; ".join(violations), code=403)


def _certificate_violations(
    spec: dict[str, Any], namespace: str, config: Config, kube: Kube
) -> list[str]:
    """Why the Certificate `spec` may not exist in `namespace` (empty: admitted).
    AdmissionError when the spec is invalid (422) or the namespace is the operator's (403)."""
    refusal = isolation.operator_namespace_refusal(namespace, config.namespace)
    if refusal is not None:
        raise kopf.AdmissionError(refusal, code=403)
    try:
        parsed = model.parse_certificate_spec(spec)
    except model.InvalidSpec as invalid:
        raise kopf.AdmissionError(str(invalid), code=422) from None
    # Read the authority and the namespace fresh: a standby replica sees no watch events,
    # and grants and labels change (a cache there would keep the labels of a namespace
    # since relabelled, or deleted and recreated).
    authority_body = kube.get_authority(name=parsed.issuer_name)
    if authority_body is None:
        return []  # judged again at signing, once the authority exists
    try:
        grants = isolation.parse_grants((authority_body.get("spec") or {}).get("policy"))
    except model.InvalidSpec:
        grants = ()  # the authority reports its own bad policy; here it grants nothing
    violations = isolation.evaluate(
        namespace=namespace,
        namespace_labels=kube.get_namespace_labels(name=namespace),
        spec=parsed,
        grants=grants,
        trust_domain=config.trust_domain,
    )
    try:
        constraints = name_constraints.parse(
            (authority_body.get("spec") or {}).get("nameConstraints")
        )
    except model.InvalidSpec:
        constraints = name_constraints.NameConstraints()  # the authority reports it
    outside = name_constraints.violations(
        constraints, name_constraints.spec_names(parsed), authority=parsed.issuer_name
    )
    return [*(str(violation) for violation in violations), *outside]


def _request_validation_handler(handlers: kopf.OperatorRegistry) -> None:
    @kopf.on.validate(
        names.GROUP,
        names.VERSION,
        names.CERTIFICATE_REQUESTS,
        id=webhook_config.VALIDATE_CERTIFICATE_REQUEST_PATH,
        operations=["CREATE"],
        registry=handlers,
    )
    def validate_certificate_request(spec: kopf.Spec, **_: Any) -> None:
        """Refuse at creation a CertificateRequest the operator would mark InvalidRequest:
        a CSR that is not base64 PEM PKCS#10, whose signature does not verify, with a weak
        or unknown key, or names, a duration or usages a Certificate may not have (422,
        the field named). Its names are not judged here: a name the namespace may not carry
        makes the request wait for approval, not fail. The spec is immutable (CRD rule), so
        only a CREATE is judged; the operator judges again before signing."""
        try:
            csr.parse_request(dict(spec))
        except model.InvalidSpec as invalid:
            raise kopf.AdmissionError(str(invalid), code=422) from None
