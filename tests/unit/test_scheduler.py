"""The renewal scheduler: one entry per key, earliest first, due keys handed out once."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta

from certsmith.scheduler import DueQueue, Scheduler

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_due_keys_come_out_in_time_order_once():
    queue = DueQueue()
    queue.schedule("b", T0 + timedelta(seconds=2))
    queue.schedule("a", T0 + timedelta(seconds=1))
    queue.schedule("c", T0 + timedelta(seconds=9))
    assert queue.pop_due(T0) == []
    assert queue.pop_due(T0 + timedelta(seconds=5)) == ["a", "b"]
    assert queue.pop_due(T0 + timedelta(seconds=5)) == []
    assert queue.next_due() == T0 + timedelta(seconds=9)


def test_rescheduling_replaces_the_previous_time():
    queue = DueQueue()
    queue.schedule("a", T0 + timedelta(seconds=1))
    queue.schedule("a", T0 + timedelta(hours=1))
    assert len(queue) == 1
    assert queue.pop_due(T0 + timedelta(minutes=1)) == []
    assert queue.when("a") == T0 + timedelta(hours=1)


def test_cancelled_keys_never_come_due():
    queue = DueQueue()
    queue.schedule("a", T0)
    queue.cancel("a")
    assert queue.pop_due(T0 + timedelta(days=1)) == []
    assert queue.next_due() is None


def test_churn_leaves_no_dead_entries_behind():
    """10,000 keys deleted (cancelled) and created again, three times, with renewals weeks
    away: what the queue holds stays in proportion to the live keys, and every live key
    still comes due once, in order."""
    queue = DueQueue()
    for round_ in range(3):
        keys = [f"r{round_}-{i}" for i in range(10_000)]
        for i, key in enumerate(keys):
            queue.schedule(key, T0 + timedelta(days=60, seconds=i))
            queue.schedule(key, T0 + timedelta(days=61, seconds=i))  # superseded at once
        assert len(queue) == 10_000
        # The heap is private: its size is the memory this test is about.
        assert len(queue._heap) <= 2 * 10_000 + 64
        if round_ < 2:
            for key in keys:
                queue.cancel(key)
            assert len(queue._heap) <= 64
    due = queue.pop_due(T0 + timedelta(days=62))
    assert due == [f"r2-{i}" for i in range(10_000)]
    assert queue.next_due() is None


class StillClock:
    """The scheduler's clock, standing still at `now`: nothing comes due by time passing.
    `read` is set whenever the scheduler reads it, i.e. just before it goes to sleep."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.read = asyncio.Event()

    def __call__(self) -> datetime:
        self.read.set()
        return self.now


def test_scheduler_runs_due_actions_and_wakes_for_earlier_ones() -> None:
    ran: list[Hashable] = []

    async def scenario() -> None:
        clock = StillClock(T0)
        done = asyncio.Event()

        async def action(key: Hashable) -> None:
            ran.append(key)
            done.set()

        scheduler = Scheduler(clock=clock, concurrency=2)
        task = asyncio.create_task(scheduler.run(action))
        scheduler.schedule("later", T0 + timedelta(hours=1))
        await clock.read.wait()  # the scheduler found nothing due: it sleeps for an hour
        # An earlier key must not wait behind the hour-long sleep.
        scheduler.schedule("now", T0)
        await asyncio.wait_for(done.wait(), timeout=5)  # a bound for a failure only
        task.cancel()

    asyncio.run(scenario())
    assert ran == ["now"]


def run_with_gate(scenario_steps):
    """Runs `scenario_steps(scheduler, started, release, ran)` against a Scheduler whose
    action records each key, signals `started`, waits for `release`, then schedules itself
    an hour later (as a renewal plans its next look)."""
    ran: list[Hashable] = []

    async def scenario() -> None:
        clock = StillClock(T0)
        started, release = asyncio.Queue(), asyncio.Event()
        scheduler = Scheduler(clock=clock, concurrency=4)

        async def action(key: Hashable) -> None:
            ran.append(key)
            await started.put(key)
            await release.wait()
            scheduler.schedule(key, T0 + timedelta(hours=1))

        task = asyncio.create_task(scheduler.run(action))
        await scenario_steps(scheduler, started, release)
        task.cancel()

    asyncio.run(scenario())
    return ran


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_key_expedited_while_its_action_runs_runs_again_after_it() -> None:
    async def steps(scheduler, started, release) -> None:
        scheduler.schedule("ca", T0)
        assert await asyncio.wait_for(started.get(), timeout=5) == "ca"
        # A CA Secret deleted while the step runs: the step planned an hour ahead, saw
        # the Secret before the deletion, and must not have the last word.
        scheduler.expedite("ca", T0)
        release.set()
        assert await asyncio.wait_for(started.get(), timeout=5) == "ca"
        await settle()
        assert scheduler.when("ca") == T0 + timedelta(hours=1)

    assert run_with_gate(steps) == ["ca", "ca"]


def test_a_key_due_while_its_action_runs_waits_for_it() -> None:
    async def steps(scheduler, started, release) -> None:
        scheduler.schedule("ca", T0)
        await asyncio.wait_for(started.get(), timeout=5)
        scheduler.schedule("ca", T0)  # due again now: not a second action beside the first
        await settle()
        assert started.empty()
        release.set()
        assert await asyncio.wait_for(started.get(), timeout=5) == "ca"

    assert run_with_gate(steps) == ["ca", "ca"]


def test_a_key_cancelled_while_its_action_runs_is_not_run_again() -> None:
    async def steps(scheduler, started, release) -> None:
        scheduler.schedule("web", T0)
        await asyncio.wait_for(started.get(), timeout=5)
        scheduler.expedite("web", T0)
        scheduler.cancel("web")  # the Certificate was deleted meanwhile
        release.set()
        await settle()
        assert started.empty()

    assert run_with_gate(steps) == ["web"]


def test_expedite_never_postpones_an_earlier_time() -> None:
    scheduler = Scheduler(clock=lambda: T0, concurrency=1)
    scheduler.schedule("ca", T0 + timedelta(seconds=1))
    scheduler.expedite("ca", T0 + timedelta(seconds=5))
    assert scheduler.when("ca") == T0 + timedelta(seconds=1)
    scheduler.expedite("ca", T0)
    assert scheduler.when("ca") == T0


def test_an_action_run_by_a_handler_keeps_what_was_expedited_meanwhile() -> None:
    """A watch handler's step (kopf's create/update/resume) ends by scheduling its next
    time, an hour ahead: a CA Secret edited while it ran must still have a step now."""
    scheduler = Scheduler(clock=lambda: T0, concurrency=1)
    with scheduler.running("ca"):
        scheduler.expedite("ca", T0)
        scheduler.schedule("ca", T0 + timedelta(hours=1))  # the handler's step ends
        assert scheduler.when("ca") == T0 + timedelta(hours=1)
    assert scheduler.when("ca") == T0
    with scheduler.running("ca"):
        scheduler.schedule("ca", T0 + timedelta(hours=2))  # nothing asked meanwhile
    assert scheduler.when("ca") == T0 + timedelta(hours=2)


def test_a_key_due_while_a_handler_runs_it_waits_for_the_handler() -> None:
    async def steps() -> list[Hashable]:
        started: list[Hashable] = []
        scheduler = Scheduler(clock=lambda: T0, concurrency=2)

        async def action(key: Hashable) -> None:
            started.append(key)

        task = asyncio.create_task(scheduler.run(action))
        with scheduler.running("ca"):
            scheduler.schedule("ca", T0)
            await settle()
            assert started == []  # not beside the handler's own step
        await settle()
        task.cancel()
        return started

    assert asyncio.run(steps()) == ["ca"]
