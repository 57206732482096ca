"""What one replica knows about itself, for `/readyz`: when the apiserver last answered,
whether its watch streams deliver, and whether it leads. Runs in every replica."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from certsmith.replicas.watch_health import WatchHealth


class ReplicaState:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        """`clock`: monotonic seconds."""
        self._clock = clock
        self._lock = threading.Lock()
        self._last_answer = clock()
        self._leading = False
        self._claim_until: datetime | None = None
        self.watch_health = WatchHealth(clock=clock)
        """Fed by the Lease campaign (`read`) and the Lease watch (`delivered`)."""

    def apiserver_answered(self) -> None:
        """Called by the Lease campaign after every round the apiserver answered."""
        with self._lock:
            self._last_answer = self._clock()

    def apiserver_silence_seconds(self) -> float:
        """Seconds since the apiserver last answered (or since start)."""
        with self._lock:
            return self._clock() - self._last_answer

    @property
    def leading(self) -> bool:
        """True while this replica runs the controller (holds the Lease)."""
        return self._leading

    def claim(self, until: datetime | None) -> None:
        """Called by the Lease campaign: until when this replica may act (its last renewal
        plus lease.GIVE_UP, before any other replica may take the Lease), None when not
        holding it."""
        self._claim_until = until

    def holds_claim(self, now: datetime) -> bool:
        """Whether this replica may still write as the leader at `now` (aware UTC): False
        once its claim lapsed, even before the campaign's loop noticed (a process woken
        from SIGSTOP runs its worker threads first)."""
        until = self._claim_until
        return until is not None and now < until

    @contextlib.contextmanager
    def leading_term(self) -> Iterator[None]:
        """The controller runs in this replica for the duration of the block."""
        self._leading = True
        try:
            yield
        finally:
            self._leading = False

    def controller_problem(self) -> str | None:
        """Only the leader's watches feed the controller; a standby's readiness is its webhook."""
        return self.watch_health.problem() if self._leading else None
