"""Operator settings, read once at start from the environment (and `python -m certsmith` flags)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from certsmith.api import model

MAX_WORKERS = 256
"""Threads and pooled API connections are made up front: a typo like 10**20 must not
exhaust the memory of the node (each pooled slot is allocated at start)."""
_DIGITS = re.compile(r"[0-9]+")
_SHOWN = 40
"""At most this many characters of a refused value are echoed back."""
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SWITCHES = {"on": True, "true": True, "1": True, "yes": True}
_SWITCHES |= {"off": False, "false": False, "0": False, "no": False}


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
    """The Service in front of the webhook: its names are in the webhook's certificate."""
    webhook_cert_dir: str = "/tmp/certsmith-webhook"
    webhook_client_ca: str | None = None
    """PEM file of the CA that signs the apiserver's client certificate for webhooks; when set,
    the webhook answers only callers presenting a certificate it signed."""
    metrics_port: int = 9402
    """Prometheus metrics; 0 turns them off."""
    health_port: int = 8081
    """`/readyz`: 200 once the default authority is loaded and the webhook serves."""

    def webhook_dns_names(self) -> list[str]:
        """The names the apiserver may dial the webhook Service by (and localhost), which
        the webhook's certificate carries with 127.0.0.1."""
        service, namespace = self.webhook_service, self.namespace
        return [
            service,
            f"{service}.{namespace}",
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local",
            "localhost",
        ]


def _shown(raw: str) -> str:
    """`raw` quoted for an error message, cut short if long."""
    return repr(raw if len(raw) <= _SHOWN else raw[:_SHOWN] + "…")


def _whole_number(env: Mapping[str, str], key: str, *, refused: str) -> int | None:
    """None when unset or empty; else ASCII digits only, surrounding blanks ignored (a
    sign, `_`, other scripts' digits or a fraction are refused, saying `refused`: what the
    value means must not depend on Python's int())."""
    digits = env.get(key, "").strip()
    if digits == "":
        return None
    if not _DIGITS.fullmatch(digits):
        raise ConfigError(f"{key}={_shown(env[key])} {refused}")
    # Past nine digits a value is beyond every bound here (and int() refuses 4,301 digits).
    return int(digits) if len(digits) <= 9 else 10**9


def _int(env: Mapping[str, str], key: str, default: int, *, maximum: int) -> int:
    value = _whole_number(env, key, refused="is not a whole number (digits 0-9)")
    if value is None:
        return default
    if not 1 <= value <= maximum:
        bound = "at least 1" if value < 1 else f"at most {maximum}"
        raise ConfigError(f"{key}={_shown(env[key])} must be {bound}")
    return value


def _port(env: Mapping[str, str], key: str, default: int, *, can_be_off: bool = True) -> int:
    lowest = 0 if can_be_off else 1
    off = " (0 turns it off)" if can_be_off else ""
    refused = f"is not a port number from {lowest} to 65535{off}"
    value = _whole_number(env, key, refused=refused)
    if value is None:
        return default
    if not lowest <= value <= 65535:
        raise ConfigError(f"{key}={_shown(env[key])} {refused}")
    return value


def _switch(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = (env.get(key) or "").strip().lower()
    if raw == "":
        return default
    if raw not in _SWITCHES:
        raise ConfigError(f"{key}={env.get(key)!r} is neither on nor off ({', '.join(_SWITCHES)})")
    return _SWITCHES[raw]


def _dns_label(env: Mapping[str, str], key: str, default: str) -> str:
    """A namespace or Service name: an RFC 1123 label (Kubernetes' rule for both)."""
    value = env.get(key) or default
    if not _DNS_LABEL.fullmatch(value):
        raise ConfigError(
            f"{key}={value!r} is not a valid name: at most 63 lower-case letters, digits "
            "and '-', starting and ending with a letter or digit (RFC 1123 label)"
        )
    return value


def _writable_directory(env: Mapping[str, str], key: str, default: str) -> str:
    """A directory certsmith may create and write files in (it writes them at start)."""
    value = env.get(key) or default
    path = Path(value)
    # lexists: a dangling symlink exists as a name but cannot be made a directory.
    existing = next((p for p in (path, *path.parents) if os.path.lexists(p)), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a directory" if os.path.lexists(path) else "cannot be created"
        raise ConfigError(f"{key}={_shown(value)} {what} writable by this process")
    return value


def _pem_file(env: Mapping[str, str], key: str) -> str | None:
    path = env.get(key) or None
    if path is None:
        return None
    # The raw string is what TLS opens: "file/" reads as a file through Path, not there.
    if not os.path.isfile(path):
        raise ConfigError(f"{key}={_shown(path)} cannot be read: not a file")
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
    webhooks = _switch(env, "CERTSMITH_WEBHOOKS", Config.webhooks)
    return Config(
        namespace=_dns_label(env, "CERTSMITH_NAMESPACE", Config.namespace),
        workers=_int(env, "CERTSMITH_WORKERS", Config.workers, maximum=MAX_WORKERS),
        kubeconfig=env.get("CERTSMITH_OPERATOR_KUBECONFIG") or None,
        trust_domain=_trust_domain(env),
        webhooks=webhooks,
        webhook_port=_port(
            env, "CERTSMITH_WEBHOOK_LISTEN_PORT", Config.webhook_port, can_be_off=False
        ),
        webhook_service=_dns_label(env, "CERTSMITH_WEBHOOK_SERVICE", Config.webhook_service),
        webhook_cert_dir=(
            _writable_directory(env, "CERTSMITH_WEBHOOK_CERT_DIR", Config.webhook_cert_dir)
            if webhooks
            else env.get("CERTSMITH_WEBHOOK_CERT_DIR") or Config.webhook_cert_dir
        ),
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
