"""Admission handlers: pod injection (mutating) and Certificate validation.

Thin like the watch handlers: parse with pure functions, look up what they need through
the Runtime, answer. They run only for requests the webhook configurations route here
(see webhook_config.py).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from certsmith import injection, isolation, model, webhook_config
from certsmith.kube import ApiError
from certsmith.runtime import Runtime

logger = logging.getLogger(__name__)


@kopf.on.mutate(
    "v1",
    "pods",
    id=webhook_config.INJECT_POD_PATH,
    operations=["CREATE"],
    side_effects=True,
    labels={injection.INJECT_LABEL: "true"},
)
def inject_certificate(
    body: kopf.Body, patch: kopf.Patch, dryrun: bool, memo: kopf.Memo, **_: Any
) -> None:
    runtime: Runtime = memo.runtime
    namespace = body["metadata"].get("namespace") or ""
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
                    f"annotation {injection.CERTIFICATE_ANNOTATION}: Certificate "
                    f"{namespace}/{request.certificate} does not exist",
                    code=400,
                )
        else:
            certificate = injection.identity_certificate(
                namespace=namespace,
                service_account=body["spec"].get("serviceAccountName") or "default",
                dns_names=request.dns_names,
                trust_domain=runtime.config.trust_domain,
            )
            if not dryrun:
                certificate = runtime.ensure_certificate(certificate)
    except ApiError as error:
        raise kopf.AdmissionError(f"certsmith could not prepare the certificate: {error}") from None

    secret_name = certificate["spec"]["secretName"]
    mounted = injection.mounted_pod_spec(
        body["spec"], secret_name=secret_name, mount_path=request.mount_path
    )
    for key, value in mounted.items():
        patch.spec[key] = value


@kopf.on.validate(
    "certsmith.dev",
    "v1alpha1",
    "certificates",
    id=webhook_config.VALIDATE_CERTIFICATE_PATH,
    operations=["CREATE", "UPDATE"],
)
def validate_certificate(
    spec: kopf.Spec, old: kopf.Body | None, namespace: str, memo: kopf.Memo, **_: Any
) -> None:
    """Refuse at apply time what the operator would otherwise report as InvalidSpec.

    Only a new or changed spec is judged: metadata edits (labels, a renewal request) must
    stay possible on a Certificate admitted while the webhook was down.
    """
    if old is not None and dict(old.get("spec") or {}) == dict(spec):
        return
    try:
        parsed = model.parse_certificate_spec(dict(spec))
    except model.InvalidSpec as invalid:
        raise kopf.AdmissionError(str(invalid), code=422) from None
    runtime: Runtime = memo.runtime
    material = runtime.registry.get(parsed.issuer_name)
    if material is None:
        return  # judged again at signing, once the authority is loaded
    violations = isolation.evaluate(
        namespace=namespace,
        namespace_labels=runtime.namespace_labels(namespace),
        spec=parsed,
        grants=material.grants,
        trust_domain=runtime.config.trust_domain,
    )
    if violations:
        raise kopf.AdmissionError("; ".join(str(v) for v in violations), code=403)
