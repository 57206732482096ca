"""Campaign for the Lease and run the controller only while holding it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from certsmith import config
from certsmith.kube import ApiError, FailureStreak, Kube, Timeout
from certsmith.replicas import lease

logger = logging.getLogger(__name__)
LEASE_NAME = "certsmith-leader"
# For the Lease calls: a round must fit in lease.ROUND_TIMEOUT.
CALL_TIMEOUT = Timeout(connect_seconds=2.0, read_seconds=3.0)


class NamespaceGone(Exception):
    """The operator's namespace no longer exists (or is being deleted): nothing can work."""


class Elector:
    def __init__(
        self,
        *,
        kube: Kube,
        namespace: str,
        identity: str,
        clock: Callable[[], datetime],
        lead: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
        on_contact: Callable[[], None] = lambda: None,
        on_read: Callable[[datetime | None], None] = lambda _: None,
        on_claim: Callable[[datetime | None], None] = lambda _: None,
    ) -> None:
        """`on_claim(until)`: after each renewal, until when this replica may act (None
        once it does not lead)."""
        self._on_claim = on_claim
        self._on_contact = on_contact
        self._on_read = on_read
        self._kube = kube.with_timeout(CALL_TIMEOUT)
        self._namespace = namespace
        self._me = identity
        self._clock = clock
        self._lead = lead
        self._term: asyncio.Task[None] | None = None
        self._stop_term = asyncio.Event()
        self._give_up_at: datetime | None = None
        """While leading: when to stop acting unless a renewal succeeds first."""
        self._written: dict[str, Any] | None = None
        """The Lease as this replica last wrote it (the apiserver's answer), None when the
        next round must read it: a holder renews over its own write, and a conflict (someone
        else wrote since) sends it back to reading."""

    def _try(self) -> datetime | None:
        """One round: the renewTime written when this replica holds the Lease, else None.
        The holder's rounds are one write each (a PUT over its last write's
        resourceVersion, which fails on any write by another); others read, then write."""
        found, self._written = self._written, None
        if found is None:
            found = self._kube.get_lease(namespace=self._namespace, name=LEASE_NAME)
        current = lease.holding(found)
        self._on_read(current.renewed if current else None)
        now = self._clock()
        move = lease.next_move(current, me=self._me, now=now)
        if move is lease.Move.WAIT:
            return None
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": self._namespace},
            "spec": lease.lease_spec(current, me=self._me, now=now),
        }
        try:
            if found is None:
                written = self._kube.create_lease(body=body)
            else:
                body["metadata"]["resourceVersion"] = found["metadata"]["resourceVersion"]
                written = self._kube.replace_lease(body=body)
        except ApiError as error:
            if error.conflict:
                return None  # another replica wrote first
            if found is None and error.namespace_closed:
                raise NamespaceGone(config.missing_namespace_message(self._namespace)) from None
            raise
        if move is not lease.Move.RENEW:
            logger.info("%s acquired the Lease (%s)", self._me, move.value)
        self._written = written
        return now

    async def run(self) -> None:
        """Campaign forever (a round every lease.RENEW_PERIOD), running `lead` for each term
        this replica holds the Lease. NamespaceGone when the operator's namespace is gone
        (the term stopped first)."""
        while True:
            renewed_at = await self._round()
            now = self._clock()
            if renewed_at is not None:
                # What the other replicas see is the renewTime written, not when it was
                # acknowledged: the give-up clock starts there.
                self._give_up_at = renewed_at + lease.GIVE_UP
                self._on_claim(self._give_up_at)
                if not self._leading():
                    self._stop_term = asyncio.Event()
                    self._term = asyncio.create_task(self._lead(self._stop_term))
            elif self._give_up_at is not None and now >= self._give_up_at and self._leading():
                logger.warning("%s lost the Lease: the controller stops", self._me)
                await self._end_term()
            if not self._leading():
                self._give_up_at = None
                self._on_claim(None)
            pause = lease.RENEW_PERIOD
            if self._give_up_at is not None:
                # Wake for the give-up deadline even when it falls inside the pause.
                pause = min(pause, max(timedelta(0), self._give_up_at - now))
            await asyncio.sleep(pause.total_seconds())

    async def _round(self) -> datetime | None:
        """One round within its time budget: the renewTime written, or None (not holding the
        Lease, or no answer)."""
        budget = lease.ROUND_TIMEOUT
        if self._give_up_at is not None:
            # A round stuck on a dead connection must not outlast our claim on the Lease.
            budget = min(budget, self._give_up_at - self._clock())
            if budget <= timedelta(0):
                # The claim lapsed while this process was not running (SIGSTOP, a frozen
                # node or VM): another replica may lead by now, so the term ends first.
                return None
        try:
            renewed_at = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(None, self._try),
                budget.total_seconds(),
            )
        except TimeoutError:
            logger.warning("Lease round got no answer within %.1f s", budget.total_seconds())
        except NamespaceGone:
            await self._end_term()
            raise
        except Exception as error:  # apiserver unreachable: keep trying, keep the clock
            logger.warning("Lease round failed: %s", error)
        else:
            self._on_contact()
            return renewed_at
        return None

    def _leading(self) -> bool:
        return self._term is not None and not self._term.done()

    async def _end_term(self) -> None:
        if self._term is not None and not self._term.done():
            self._stop_term.set()
            await self._term
        self._term = None


LEASE_WATCH_RETRY_SECONDS = 1.0
"""The wait before the Lease is watched again; doubled through a streak of failures."""


def follow_lease(
    kube: Kube, *, namespace: str, delivered: Callable[[datetime | None], None]
) -> None:
    """Watch the Lease forever, reporting each renewal delivered (watch_health's canary).

    Runs in a thread of its own. The client's read timeout (15 s) ends a silent stream, but
    only after the campaign has read renewals it did not deliver: that is the stall signal.
    """
    streak = FailureStreak("Lease watch", LEASE_WATCH_RETRY_SECONDS)
    while True:
        try:
            for event in kube.watch_lease(namespace=namespace, name=LEASE_NAME, timeout_seconds=60):
                found = lease.holding(event.get("object"))
                delivered(found.renewed if found else None)
            streak.succeeded()
        except ApiError as error:
            # A quiet Lease (no leader yet) ends the stream by read timeout: not news.
            if error.status == 0 and "timed out" in error.message.lower():
                streak.succeeded()
                time.sleep(LEASE_WATCH_RETRY_SECONDS)
            else:
                time.sleep(streak.failed(error))
