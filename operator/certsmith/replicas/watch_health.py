"""Whether watch streams still deliver: the Lease as a canary, judged without I/O.

kopf's watch streams say nothing about their health, and a connection that died silently
looks exactly like a quiet cluster. The Lease is never quiet: the leader renews it every
2 s (a write over its own last one) and every other replica's campaign reads it every 2 s
over fresh requests. certsmith also watches it; when a renewal the campaign has written or
read is not delivered by that watch within
`STALL_GRACE_SECONDS`, long-lived connections are dying silently. kopf's streams opened
before then reconnect within their client timeout, so until `RECOVERY_SECONDS` after the
stall was noticed the controller may be missing changes, and readiness says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

STALL_GRACE_SECONDS = 4.0
# kopf's watch client timeout (handlers.configure) plus a re-list.
RECOVERY_SECONDS = 30.0


class _Awaited(NamedTuple):
    renewed: datetime
    """The renewal read by the campaign and not yet delivered by the watch."""
    read_at: float
    """When the campaign read it (the clock's seconds)."""


class WatchHealth:
    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._delivered: datetime | None = None
        # The oldest renewal read but not yet delivered, and when it was read.
        self._awaited: _Awaited | None = None
        self._stalled_at: float | None = None

    def delivered(self, renewed: datetime | None) -> None:
        """The watch delivered a Lease renewed at `renewed`."""
        if renewed is None:
            return
        with self._lock:
            self._judge()  # a delivery after the grace was a stall all the same
            if self._delivered is None or renewed > self._delivered:
                self._delivered = renewed
            if self._awaited is not None and self._awaited.renewed <= self._delivered:
                self._awaited = None

    def read(self, renewed: datetime | None) -> None:
        """The campaign read the Lease renewed at `renewed`; the watch owes us that renewal."""
        with self._lock:
            self._judge()
            if renewed is None or self._delivered is None:
                return  # nothing to owe yet: the watch has not delivered anything so far
            if renewed > self._delivered and self._awaited is None:
                self._awaited = _Awaited(renewed, self._clock())

    def problem(self) -> str | None:
        """What readiness should report, or None while watches deliver."""
        now = self._clock()
        with self._lock:
            self._judge()
            if self._stalled_at is None or now - self._stalled_at > RECOVERY_SECONDS:
                return None
            return (
                f"watch streams stopped delivering {now - self._stalled_at:.0f} s ago "
                "(a connection to the apiserver died silently); catching up"
            )

    def _judge(self) -> None:
        """Called with the lock held, at every read (2 s), delivery and probe."""
        now = self._clock()
        if self._awaited is not None and now - self._awaited.read_at > STALL_GRACE_SECONDS:
            self._stalled_at = now
