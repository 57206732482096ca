"""Leader election decisions: renew your own Lease, take over only an expired one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certsmith.replicas import lease
from certsmith.replicas.lease import Holding, Move

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def held_by(holder: str, renewed: datetime) -> Holding:
    return Holding(holder=holder, renewed=renewed, duration=lease.DURATION, transitions=3)


def test_moves():
    assert lease.next_move(None, me="a", now=T0) is Move.CREATE
    assert lease.next_move(held_by("a", T0), me="a", now=T0) is Move.RENEW
    assert lease.next_move(held_by("b", T0), me="a", now=T0 + timedelta(seconds=9)) is Move.WAIT
    assert lease.next_move(held_by("b", T0), me="a", now=T0 + lease.DURATION) is Move.TAKE_OVER


def test_a_holder_gives_up_before_anyone_may_take_over():
    assert lease.GIVE_UP < lease.DURATION
    assert lease.RENEW_PERIOD * 3 <= lease.GIVE_UP


def test_taking_over_counts_a_transition_and_renewing_does_not():
    taken = lease.lease_spec(held_by("b", T0), me="a", now=T0)
    assert taken["holderIdentity"] == "a" and taken["leaseTransitions"] == 4
    assert "acquireTime" in taken
    renewed = lease.lease_spec(held_by("a", T0), me="a", now=T0)
    assert renewed["leaseTransitions"] == 3 and "acquireTime" not in renewed


def test_round_trip_through_the_api_shape():
    spec = lease.lease_spec(None, me="a", now=T0)
    parsed = lease.holding({"spec": spec})
    assert parsed == Holding(holder="a", renewed=T0, duration=lease.DURATION, transitions=0)
