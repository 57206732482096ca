"""Operator settings, read once at start from the environment (and `python -m certsmith` flags)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from certsmith.api import model


class ConfigError(Exception):
    """A setting cannot be used; the message names the variable and why. `python -m
    certsmith` reports it and exits with status 2."""


@dataclass(frozen=True)
class Config:
    namespace: str = "certsmith"
    """Where CA keys live; nothing else is stored there."""
    default_authority: str = "cluster-root"
    """The authority bootstrapped at start; the Certificate CRD defaults issuerRef to it."""
    root_lifetime: timedelta = timedelta(days=3650)
    intermediate_lifetime: timedelta = timedelta(days=365)
    workers: int = 16
    """Threads that build certificates, and the size of the API connection pool."""
    kubeconfig: str | None = None
    component: str = "certsmith"
    trust_domain: str = "cluster.local"
    webhooks: bool = True
    webhook_port: int = 9443
    webhook_service: str = "certsmith-webhook"
    """The Service in front of the webhook, used when no webhook_url is set (in-cluster)."""
    webhook_url: str | None = None
    """Where the apiserver reaches the webhook from outside the cluster (local runs, tests)."""
    webhook_cert_dir: str = "/tmp/certsmith-webhook"
    webhook_client_ca: str | None = None
    """PEM file of the CA that signs the apiserver's client certificate for webhooks; when set,
    the webhook answers only callers presenting a certificate it signed."""
    metrics_port: int = 9402
    """Prometheus metrics; 0 turns them off."""
    health_port: int = 8081
    """`/readyz`: 200 once the default authority is loaded and the webhook serves."""


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not an integer") from None
    if value < 1:
        raise ConfigError(f"{key}={raw!r} must be at least 1")
    return value


def _port(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"{key}={raw!r} is not a port number (0 turns it off)")
    return int(raw)


def _pem_file(env: Mapping[str, str], key: str) -> str | None:
    path = env.get(key) or None
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{key}={path!r} cannot be read: {error}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(f"{key}={path!r} holds no PEM certificate")
    return path


def _trust_domain(env: Mapping[str, str]) -> str:
    value = env.get("CERTSMITH_TRUST_DOMAIN") or Config.trust_domain
    refused = f"CERTSMITH_TRUST_DOMAIN={value!r} is no SPIFFE trust domain"
    # Every SPIFFE ID certsmith signs or judges is spiffe://<trust domain>/...
    try:
        spiffe = model.parse_spiffe_id(f"{model.SPIFFE_PREFIX}{value}/ns")
    except ValueError as error:
        raise ConfigError(f"{refused}: {error}") from None
    if spiffe.trust_domain != value:
        raise ConfigError(f"{refused}: a path is not part of it")
    return value


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """The settings from `env` (default: the process environment), defaults for those unset.
    ConfigError naming the first variable that cannot be used."""
    env = os.environ if env is None else env
    return Config(
        namespace=env.get("CERTSMITH_NAMESPACE") or Config.namespace,
        workers=_int(env, "CERTSMITH_WORKERS", Config.workers),
        kubeconfig=env.get("CERTSMITH_OPERATOR_KUBECONFIG") or None,
        trust_domain=_trust_domain(env),
        webhooks=(env.get("CERTSMITH_WEBHOOKS") or "on").lower() not in ("off", "false", "0"),
        webhook_port=_int(env, "CERTSMITH_WEBHOOK_LISTEN_PORT", Config.webhook_port),
        webhook_service=env.get("CERTSMITH_WEBHOOK_SERVICE") or Config.webhook_service,
        webhook_url=env.get("CERTSMITH_WEBHOOK_URL") or None,
        webhook_cert_dir=env.get("CERTSMITH_WEBHOOK_CERT_DIR") or Config.webhook_cert_dir,
        webhook_client_ca=_pem_file(env, "CERTSMITH_WEBHOOK_CLIENT_CA"),
        metrics_port=_port(env, "CERTSMITH_METRICS_PORT", Config.metrics_port),
        health_port=_port(env, "CERTSMITH_HEALTH_PORT", Config.health_port),
    )


def missing_namespace_message(namespace: str) -> str:
    """What to tell a user whose cluster lacks the operator's namespace."""
    return (
        f"namespace {namespace} (CERTSMITH_NAMESPACE) does not exist: certsmith keeps its CA "
        f"keys and its leader Lease there. Create it with `kubectl create namespace "
        f"{namespace}`, or install everything with `kubectl apply -k manifests/`; or set "
        "CERTSMITH_NAMESPACE to the namespace certsmith runs in"
    )
