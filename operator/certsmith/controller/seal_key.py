"""The key that seals what a Certificate's status says was judged (certificates.seal).
Runs only in the Lease holder.

Kept in the Secret SECRET_NAME of the operator's namespace, beside the CA keys: namespaced
users, who may write Certificates' status and their Secrets, cannot read it. Created (an
immutable Secret of KEY_BYTES random bytes) by the first term that finds none; one deleted
or unreadable is replaced at the next term, and every seal made before then no longer
holds: each Certificate is judged on its Secret once more, nothing is re-issued for it.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from typing import Any

from certsmith.certificates.seal import KEY_BYTES
from certsmith.kube import ApiError, Kube

logger = logging.getLogger(__name__)

SECRET_NAME = "certsmith-status-seal"
DATA_KEY = "key"


class SealKey:
    def __init__(self, *, kube: Kube, namespace: str) -> None:
        self._kube = kube
        self._namespace = namespace
        self._lock = threading.Lock()
        self._key: bytes | None = None

    def __call__(self) -> bytes | None:
        """The key, None before `load`."""
        with self._lock:
            return self._key

    def load(self) -> None:
        """Read the key at a term's start, creating it if there is none (a replica that
        creates it at the same moment wins: its key is read); an unreadable one is
        replaced. ApiError when the apiserver does not answer."""
        found = self._kube.get_secret(namespace=self._namespace, name=SECRET_NAME)
        key = _key_of(found)
        if key is None:
            if found is not None:
                logger.warning(
                    "Secret %s/%s holds no %d-byte key: replaced (every status is judged "
                    "on its Secret once more)",
                    self._namespace,
                    SECRET_NAME,
                    KEY_BYTES,
                )
                self._kube.delete_secret(
                    namespace=self._namespace,
                    name=SECRET_NAME,
                    resource_version=found["metadata"]["resourceVersion"],
                )
            key = self._create()
        with self._lock:
            self._key = key

    def _create(self) -> bytes:
        key = secrets.token_bytes(KEY_BYTES)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET_NAME, "namespace": self._namespace},
            "type": "Opaque",
            "immutable": True,
            "data": {DATA_KEY: base64.b64encode(key).decode()},
        }
        try:
            self._kube.create_secret(body=body)
        except ApiError as error:
            if not error.conflict:
                raise
            taken = _key_of(self._kube.get_secret(namespace=self._namespace, name=SECRET_NAME))
            if taken is None:
                raise
            return taken
        return key


def _key_of(secret: dict[str, Any] | None) -> bytes | None:
    """The key a Secret holds, None when it holds none of KEY_BYTES bytes."""
    encoded = ((secret or {}).get("data") or {}).get(DATA_KEY)
    try:
        key = base64.b64decode(encoded or "", validate=True)
    except ValueError:
        return None
    return key if len(key) == KEY_BYTES else None
