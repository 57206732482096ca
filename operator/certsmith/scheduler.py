"""One scheduler for every timed action: renewals, retries with back-off, CA renewal.

A heap of (due time, key) with one entry per key: scheduling a key again replaces its
previous time. One asyncio task sleeps until the earliest due time and hands due keys to
a callback, at most `concurrency` at a time, so a thousand Certificates created in the
same second renew spread over the workers instead of all at once. No per-object timer,
no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime

logger = logging.getLogger(__name__)

Key = tuple[str, str, str]
"""What an action is scheduled for: (kind, namespace, name), e.g. ("Certificate", "shop",
"web"); the namespace is "" for a cluster-scoped object (a CertificateAuthority)."""


COMPACT_SLACK = 64
"""Dead heap entries always tolerated, so a small queue is never rebuilt over and over."""


class DueQueue:
    """A heap of due times (aware datetimes) by key; not thread-safe on its own."""

    def __init__(self) -> None:
        # The sequence number breaks ties in order of scheduling and tells a current entry
        # from a superseded one.
        self._heap: list[tuple[datetime, int, Key]] = []
        self._entries: dict[Key, tuple[datetime, int]] = {}
        self._sequence = itertools.count()

    def __len__(self) -> int:
        """How many keys are scheduled."""
        return len(self._entries)

    def schedule(self, key: Key, when: datetime) -> None:
        """Make `key` due at `when`, replacing the time it had."""
        sequence = next(self._sequence)
        self._entries[key] = (when, sequence)
        heapq.heappush(self._heap, (when, sequence, key))
        self._compact()

    def cancel(self, key: Key) -> None:
        """`key` is no longer due (nothing happens if it was not scheduled)."""
        if self._entries.pop(key, None) is not None:
            self._compact()

    def _compact(self) -> None:
        # A superseded or cancelled entry stays in the heap until its time comes, and a
        # renewal's is weeks away: 10,000 Certificates deleted and created again would
        # leave 10,000 dead entries per round. Rebuilt once they outnumber the live ones,
        # which costs O(1) per call amortised.
        if len(self._heap) > 2 * len(self._entries) + COMPACT_SLACK:
            self._heap = [(when, seq, key) for key, (when, seq) in self._entries.items()]
            heapq.heapify(self._heap)

    def when(self, key: Key) -> datetime | None:
        """When `key` is due, or None if it is not scheduled."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def _drop_stale(self) -> None:
        # Superseded or cancelled entries stay in the heap until they reach the top.
        while self._heap:
            when, sequence, key = self._heap[0]
            if self._entries.get(key) == (when, sequence):
                return
            heapq.heappop(self._heap)

    def next_due(self) -> datetime | None:
        """The earliest due time, or None when nothing is scheduled."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> list[Key]:
        """Unschedule and return every key due at `now` or before, earliest first."""
        due = []
        while (when := self.next_due()) is not None and when <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._entries[key]
            due.append(key)
        return due


class Scheduler:
    """Runs `action(key)` (given to `run`) when a key comes due, at most `concurrency` at
    once, on the event loop that runs `run()`. `schedule`, `expedite`, `cancel` and `when`
    may be called from any thread, before `run` too. An action that raises is logged, not
    retried: it schedules its own retry.

    One action per key at a time: a key that comes due while its action runs runs again
    once it ends. An action run elsewhere (a watch handler) is announced with `running`,
    with the same effect. An action ends by scheduling its own next time (replacing any); what
    `expedite` asked for meanwhile is kept over that, so a change seen during the action
    is never lost to the time it planned before seeing it."""

    def __init__(self, *, clock: Callable[[], datetime], concurrency: int) -> None:
        self._clock = clock
        self._queue = DueQueue()
        self._lock = threading.Lock()
        self._limit = asyncio.Semaphore(concurrency)
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[asyncio.Task[None]] = set()
        # Keys whose action runs now (how many times: the scheduler's own and `running`'s),
        # and the earliest time each was asked to run again.
        self._active: dict[Key, int] = {}
        self._again: dict[Key, datetime] = {}

    def __len__(self) -> int:
        """How many keys are scheduled (not those running now)."""
        with self._lock:
            return len(self._queue)

    def schedule(self, key: Key, when: datetime) -> None:
        """Run `key`'s action at `when` (now if it is past), replacing the time it had."""
        with self._lock:
            earlier = self._queue.next_due()
            self._queue.schedule(key, when)
        if earlier is None or when < earlier:
            self._wake()

    def expedite(self, key: Key, when: datetime) -> None:
        """Run `key`'s action no later than `when`: a time already planned that is earlier
        stays; if the action runs now, it runs again once it ends (at `when` at the latest),
        whatever time it then plans for itself."""
        with self._lock:
            if key in self._active:
                self._again[key] = min(when, self._again.get(key, when))
                return
            planned = self._queue.when(key)
            if planned is not None and planned <= when:
                return
            earlier = self._queue.next_due()
            self._queue.schedule(key, when)
        if earlier is None or when < earlier:
            self._wake()

    def cancel(self, key: Key) -> None:
        """Do not run `key`'s action (one already running carries on, and is not run
        again)."""
        with self._lock:
            self._queue.cancel(key)
            self._again.pop(key, None)

    def when(self, key: Key) -> datetime | None:
        """When `key`'s action is due, or None if it is not scheduled."""
        with self._lock:
            return self._queue.when(key)

    def _wake(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self, action: Callable[[Key], Awaitable[None]]) -> None:
        """Hand due keys to `action` forever (until cancelled), sleeping until the next due
        time."""
        self._loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()
            now = self._clock()
            with self._lock:
                due = []
                for key in self._queue.pop_due(now):
                    if key in self._active:
                        self._again[key] = min(now, self._again.get(key, now))
                    else:
                        self._active[key] = 1
                        due.append(key)
                next_due = self._queue.next_due()
            for key in due:
                await self._limit.acquire()
                task = asyncio.create_task(self._run_one(action, key))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            if due:
                continue
            timeout = None if next_due is None else max(0.0, (next_due - now).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=timeout)

    async def _run_one(self, action: Callable[[Key], Awaitable[None]], key: Key) -> None:
        try:
            await action(key)
        except Exception:
            logger.exception("scheduled action for %s failed", key)
        finally:
            self._limit.release()
            self._ended(key)

    @contextlib.contextmanager
    def running(self, key: Key) -> Iterator[None]:
        """Around an action of `key` run outside the scheduler (a watch handler, which ends
        by scheduling the key's next time): the scheduler does not run `key` meanwhile, and
        what `expedite` asked for meanwhile runs once it ends, as for its own actions."""
        with self._lock:
            self._active[key] = self._active.get(key, 0) + 1
        try:
            yield
        finally:
            self._ended(key)

    def _ended(self, key: Key) -> None:
        with self._lock:
            left = self._active.pop(key, 1) - 1
            if left:
                self._active[key] = left
                return
            again = self._again.pop(key, None)
            if again is None:
                return
            planned = self._queue.when(key)
            if planned is not None and planned <= again:
                return
            self._queue.schedule(key, again)
        self._wake()
