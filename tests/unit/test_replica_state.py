"""What /readyz reads about a replica: apiserver silence, and watch health only when leading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certsmith.replicas import lease
from certsmith.replicas.state import ReplicaState
from certsmith.replicas.watch_health import STALL_GRACE_SECONDS

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_apiserver_silence_counts_from_the_last_answer() -> None:
    clock = Clock()
    replica = ReplicaState(clock=clock)
    clock.now += 7.5
    assert replica.apiserver_silence_seconds() == 7.5
    replica.apiserver_answered()
    clock.now += 2
    assert replica.apiserver_silence_seconds() == 2


def test_a_stall_is_the_leaders_problem_only_while_it_leads() -> None:
    clock = Clock()
    replica = ReplicaState(clock=clock)
    replica.watch_health.delivered(T0)
    replica.watch_health.read(T0 + timedelta(seconds=2))  # never delivered
    clock.now += STALL_GRACE_SECONDS + 1
    assert replica.leading is False
    assert replica.controller_problem() is None
    with replica.leading_term():
        assert replica.leading is True
        problem = replica.controller_problem()
        assert problem is not None and problem.startswith("watch streams stopped delivering")
    assert replica.leading is False
    assert replica.controller_problem() is None


def test_a_term_that_fails_still_ends_leadership() -> None:
    replica = ReplicaState(clock=Clock())
    with pytest.raises(RuntimeError), replica.leading_term():
        raise RuntimeError("the controller crashed")
    assert replica.leading is False


def test_a_replica_may_write_only_within_its_claim_on_the_lease() -> None:
    """The claim ends at the last renewal plus GIVE_UP, before any other replica may take
    the Lease: a process woken from a long pause must not write as the leader, even
    before its campaign noticed."""
    replica = ReplicaState(clock=Clock())
    assert not replica.holds_claim(T0)  # never held
    replica.claim(T0 + lease.GIVE_UP)
    assert replica.holds_claim(T0 + lease.GIVE_UP - timedelta(milliseconds=1))
    assert not replica.holds_claim(T0 + lease.GIVE_UP)
    assert lease.GIVE_UP < lease.DURATION
    replica.claim(None)  # the term ended
    assert not replica.holds_claim(T0)
