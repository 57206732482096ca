"""What a signer last recorded on root Secrets: the bound each root's rotation must wait
for (pod certificates' refresh bound, Kubernetes CSRs' notAfter bound), so that a signature
writes to the Secret only when its bound must grow. Shared by the signers of
pod_certificates.py and certificate_signing_requests.py; runs only in the Lease holder.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from certsmith.authorities.authority import AuthorityMaterial

Record = Callable[[str, str, datetime], datetime | None]
"""`record(authority, root fingerprint, moment)`: raise the bound on the Secret holding that
root of that authority to cover `moment` (store.record_refresh_bound / record_csr_bound);
the bound recorded now, None when no Secret of certsmith's holds the root (a supplied root:
never rotated, nothing waits). ApiError when the apiserver does not answer."""


class RootBounds:
    """The bound known recorded per (authority, root fingerprint) this term; thread-safe,
    one write per authority at a time (two signatures racing would otherwise both read the
    Secret and the lower write could land last)."""

    def __init__(self, record: Record) -> None:
        self._record = record
        self._guard = threading.Lock()
        self._known: dict[tuple[str, str], datetime | None] = {}
        self._locks: dict[str, threading.Lock] = {}

    def cover(self, authority: AuthorityMaterial, root: str, moment: datetime) -> None:
        """Before a certificate signed under `authority`'s root `root` (SHA-256 fingerprint)
        is handed out: the bound on that root's Secret covers `moment`. A subordinate's
        roots are its parent's: the bound goes on the parent's root Secret, whose rotation
        is what must wait. ApiError when the apiserver does not answer: hand nothing out."""
        owner = authority.parent or authority.name
        key = (owner, root)
        with self._guard:
            lock = self._locks.setdefault(owner, threading.Lock())
        with lock:
            with self._guard:
                seen, known = key in self._known, self._known.get(key)
            if seen and (known is None or known >= moment):
                return
            recorded = self._record(owner, root, moment)
            with self._guard:
                self._known[key] = recorded

    def forget(self) -> None:
        """A new leadership term: another replica may have recorded bounds, or an
        authority been deleted and created again, since; read the Secrets again."""
        with self._guard:
            self._known.clear()
