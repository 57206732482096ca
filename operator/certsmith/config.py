"""Operator settings, read once at start from the environment (and `python -m certsmith` flags)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Config:
    namespace: str = "certsmith"
    """Where CA keys live; nothing else is stored there."""
    default_authority: str = "cluster-root"
    root_lifetime: timedelta = timedelta(days=3650)
    intermediate_lifetime: timedelta = timedelta(days=365)
    workers: int = 16
    """Threads that build certificates, and the size of the API connection pool."""
    kubeconfig: str | None = None
    component: str = "certsmith"


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{key}={raw!r} is not an integer") from None
    if value < 1:
        raise SystemExit(f"{key}={raw!r} must be at least 1")
    return value


def from_env(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    return Config(
        namespace=env.get("CERTSMITH_NAMESPACE") or Config.namespace,
        default_authority=env.get("CERTSMITH_DEFAULT_AUTHORITY") or Config.default_authority,
        workers=_int(env, "CERTSMITH_WORKERS", Config.workers),
        kubeconfig=env.get("CERTSMITH_OPERATOR_KUBECONFIG") or None,
    )
