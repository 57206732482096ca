"""The root-rotation state machine: phases advance only when the cluster is ready for them;
a stuck phase names its blockers; re-issues are paced at the authority's rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certsmith.api import model
from certsmith.authorities import rotation
from certsmith.authorities.rotation import Lagging, Phase, Progress, ReissuePacer, RotationState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DELAY = timedelta(seconds=60)
DONE = Progress(total_leaves=5)


def lagging(count: int, why: str = "behind") -> tuple[Lagging, ...]:
    return tuple(Lagging("t1", f"s{i}", why) for i in range(count))


def started() -> RotationState:
    return rotation.start(
        RotationState(Phase.READY), old_root="old", new_root="new", request="r1", now=T0
    )


def test_rotation_starts_on_request_or_when_the_root_is_due():
    ready = RotationState(Phase.READY)
    far = T0 + timedelta(days=365)
    assert rotation.should_start(ready, request="r1", root_renewal=far, now=T0)
    assert not rotation.should_start(ready, request=None, root_renewal=far, now=T0)
    assert rotation.should_start(ready, request=None, root_renewal=T0, now=T0)
    honoured = RotationState(Phase.READY, honoured_request="r1")
    assert not rotation.should_start(honoured, request="r1", root_renewal=far, now=T0)
    assert not rotation.should_start(started(), request="r2", root_renewal=T0, now=T0)


def test_new_root_signs_only_after_distribution_and_the_delay():
    state = started()
    assert not state.signs_with_new_root
    behind = Progress(behind=lagging(3), on_old_root=lagging(5), total_leaves=5)
    state = rotation.advance(state, behind, now=T0, delay=DELAY)
    assert state.phase is Phase.DISTRIBUTING and state.waiting_since is None
    state = rotation.advance(state, DONE, now=T0 + timedelta(seconds=1), delay=DELAY)
    assert state.phase is Phase.DISTRIBUTING
    state = rotation.advance(state, DONE, now=T0 + timedelta(seconds=30), delay=DELAY)
    assert state.phase is Phase.DISTRIBUTING
    state = rotation.advance(state, DONE, now=T0 + timedelta(seconds=62), delay=DELAY)
    assert state.phase is Phase.REISSUING and state.signs_with_new_root


def test_old_root_retires_only_after_every_leaf_moved_and_the_delay():
    state = RotationState(Phase.REISSUING, old_root="old", new_root="new")
    pending = Progress(on_old_root=lagging(2), total_leaves=5)
    assert rotation.advance(state, pending, now=T0, delay=DELAY).phase is Phase.REISSUING
    state = rotation.advance(state, DONE, now=T0, delay=DELAY)
    assert state.phase is Phase.RETIRING
    assert rotation.advance(state, DONE, now=T0 + timedelta(seconds=59), delay=DELAY).phase is (
        Phase.RETIRING
    )
    assert rotation.advance(state, DONE, now=T0 + DELAY, delay=DELAY).phase is Phase.READY


def test_state_survives_the_status_round_trip():
    state = rotation.advance(started(), DONE, now=T0 + timedelta(seconds=5), delay=DELAY)
    state = rotation.track(state, DONE, now=T0 + timedelta(seconds=5))
    restored = rotation.from_status(rotation.to_status(state, DONE))
    assert restored == state
    stuck = Progress(behind=lagging(2))
    state = rotation.track(started(), stuck, now=T0)
    assert rotation.from_status(rotation.to_status(state, stuck)) == state


# --- settings ------------------------------------------------------------------------------


def test_rotation_settings_default_and_are_read():
    assert rotation.parse_rotation({}) == rotation.Rotation(timedelta(minutes=5), 20)
    assert rotation.parse_rotation(
        {"rotation": {"propagationDelay": "30s", "reissueRate": 2}}
    ) == rotation.Rotation(timedelta(seconds=30), 2)
    assert rotation.parse_rotation({"rotation": {"reissueRate": 1000}}).reissue_rate == 1000


@pytest.mark.parametrize(
    ("rotation_spec", "field", "words"),
    [
        ({"reissueRate": 0}, "spec.rotation.reissueRate", "outside 1 to 1000"),
        ({"reissueRate": -5}, "spec.rotation.reissueRate", "outside 1 to 1000"),
        ({"reissueRate": 1001}, "spec.rotation.reissueRate", "outside 1 to 1000"),
        ({"reissueRate": "20"}, "spec.rotation.reissueRate", "not a whole number"),
        ({"reissueRate": 2.5}, "spec.rotation.reissueRate", "not a whole number"),
        ({"reissueRate": True}, "spec.rotation.reissueRate", "not a whole number"),
        ({"reissueRate": None}, "spec.rotation.reissueRate", "not a whole number"),
        ({"propagationDelay": "soon"}, "spec.rotation.propagationDelay", "not a duration"),
        ({"propagationDelay": 30}, "spec.rotation.propagationDelay", "not a duration"),
    ],
)
def test_bad_rotation_settings_name_the_field(rotation_spec, field, words):
    with pytest.raises(model.InvalidSpec) as raised:
        rotation.parse_rotation({"rotation": rotation_spec})
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ") and words in str(raised.value)


def test_a_rotation_that_is_not_an_object_is_refused():
    with pytest.raises(model.InvalidSpec, match=r"^spec\.rotation: must be an object"):
        rotation.parse_rotation({"rotation": "fast"})


# --- blockers ------------------------------------------------------------------------------


def test_a_phase_names_its_blockers_only_once_it_stalls():
    state = rotation.track(started(), Progress(behind=lagging(5)), now=T0)
    # Progress every few seconds: never blocked, however long the phase takes.
    for step in range(1, 5):
        now = T0 + timedelta(seconds=20 * step)
        state = rotation.track(state, Progress(behind=lagging(5 - step)), now=now)
        assert rotation.blockers(state, Progress(behind=lagging(5 - step)), now=now) == ()
    stuck = Progress(behind=(Lagging("t1", "certsmith-ca", "foreign ConfigMap"),))
    at = T0 + timedelta(seconds=80)
    assert state.progressed_at == at
    state = rotation.track(state, stuck, now=at + timedelta(seconds=29))
    assert rotation.blockers(state, stuck, now=at + timedelta(seconds=29)) == ()
    state = rotation.track(state, stuck, now=at + rotation.STALL_AFTER)
    assert rotation.blockers(state, stuck, now=at + rotation.STALL_AFTER) == stuck.behind
    condition = rotation.blocked_condition(state, stuck.behind)
    assert condition.status and condition.type == "RotationBlocked"
    assert "t1/certsmith-ca: foreign ConfigMap" in condition.message
    assert "Distributing" in condition.message
    # More to wait for (a new Certificate) does not reset the clock; the blocker leaving does.
    grown = Progress(behind=(*stuck.behind, Lagging("t2", "x-tls", "new")))
    state = rotation.track(state, grown, now=at + timedelta(seconds=40))
    assert rotation.blockers(state, grown, now=at + timedelta(seconds=40)) == grown.behind
    state = rotation.track(state, DONE, now=at + timedelta(seconds=41))
    assert rotation.blockers(state, DONE, now=at + timedelta(seconds=41)) == ()
    assert not rotation.blocked_condition(state, ()).status


def test_each_phase_waits_for_its_own_objects_and_restarts_the_clock():
    progress = Progress(behind=lagging(1, "bundle"), on_old_root=lagging(2, "leaf"))
    assert progress.awaited(Phase.DISTRIBUTING) == progress.behind
    assert progress.awaited(Phase.REISSUING) == progress.on_old_root
    assert progress.awaited(Phase.RETIRING) == ()
    distributing = rotation.track(started(), DONE, now=T0)
    distributing = rotation.advance(distributing, DONE, now=T0, delay=timedelta(0))
    reissuing = rotation.advance(distributing, DONE, now=T0 + timedelta(minutes=5), delay=DELAY)
    assert reissuing.phase is Phase.REISSUING and reissuing.progressed_at is None
    later = T0 + timedelta(minutes=5)
    reissuing = rotation.track(reissuing, progress, now=later)
    assert reissuing.progressed_at == later and reissuing.awaited == 2
    blocked = rotation.blockers(reissuing, progress, now=later + timedelta(minutes=1))
    assert blocked == progress.on_old_root


def test_blockers_in_status_are_sorted_and_capped():
    many = tuple(Lagging("ns", f"s{i:02}", "why") for i in range(25))
    lines = rotation.describe_blockers(many)
    assert len(lines) == rotation.BLOCKERS_SHOWN + 1
    assert lines[0] == "ns/s00: why" and lines[-1] == "… and 5 more"
    status = rotation.to_status(started(), Progress(behind=many), many)
    assert status["rotation"]["blockers"] == lines
    assert rotation.to_status(started(), DONE)["rotation"]["blockers"] is None


# --- pacing --------------------------------------------------------------------------------


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def test_requests_at_once_get_slots_one_interval_apart():
    pacer = ReissuePacer()
    pacer.set_rate("ca", 2, now=T0)
    slots = [pacer.slot("ca", ("t1", f"c{i}"), now=T0) for i in range(10)]
    assert slots == [T0 + seconds(0.5 * i) for i in range(10)]
    assert not pacer.holds("ca", ("t1", "c0"), now=T0)
    assert pacer.holds("ca", ("t1", "c9"), now=T0)
    # Asking again before the slot changes nothing; at the slot it is granted.
    assert pacer.slot("ca", ("t1", "c3"), now=T0 + seconds(1)) == T0 + seconds(1.5)
    assert pacer.slot("ca", ("t1", "c1"), now=T0 + seconds(0.5)) == T0 + seconds(0.5)
    assert not pacer.holds("ca", ("t1", "c1"), now=T0 + seconds(0.5))
    # A newcomer queues behind every reservation.
    assert pacer.slot("ca", ("t1", "late"), now=T0 + seconds(0.6)) == T0 + seconds(5)
    # Authorities are paced independently.
    assert pacer.slot("other", ("t1", "c0"), now=T0) == T0


def test_an_idle_lane_grants_at_once_but_never_closer_than_the_interval():
    pacer = ReissuePacer()
    pacer.set_rate("ca", 4, now=T0)
    assert pacer.slot("ca", "a", now=T0) == T0
    assert pacer.slot("ca", "b", now=T0 + seconds(0.1)) == T0 + seconds(0.25)
    assert pacer.slot("ca", "c", now=T0 + seconds(10)) == T0 + seconds(10)


def test_a_rate_change_respaces_reservations_and_reports_the_moves():
    pacer = ReissuePacer()
    pacer.set_rate("ca", 1, now=T0)
    for i in range(5):
        pacer.slot("ca", f"c{i}", now=T0)  # c0 now, c1..c4 at 1 s … 4 s
    moved = pacer.set_rate("ca", 10, now=T0 + seconds(0.5))
    assert moved == {f"c{i}": T0 + seconds(0.5 + 0.1 * (i - 1)) for i in range(1, 5)}
    assert pacer.slot("ca", "c1", now=T0 + seconds(0.5)) == T0 + seconds(0.5)
    slowed = pacer.set_rate("ca", 1, now=T0 + seconds(0.5))
    assert slowed == {"c3": T0 + seconds(2.5), "c4": T0 + seconds(3.5), "c2": T0 + seconds(1.5)}
    assert pacer.set_rate("ca", 1, now=T0 + seconds(0.6)) == {}


def test_a_key_that_missed_its_turn_queues_again_and_reset_forgets_everything():
    pacer = ReissuePacer()
    pacer.set_rate("ca", 2, now=T0)
    pacer.slot("ca", "a", now=T0)
    assert pacer.slot("ca", "b", now=T0) == T0 + seconds(0.5)
    assert pacer.slot("ca", "c", now=T0) == T0 + seconds(1)
    pacer.forget("c")
    assert not pacer.holds("ca", "c", now=T0)
    # b comes back 2 s late: not granted in a burst with whoever is due now.
    assert pacer.slot("ca", "b", now=T0 + seconds(2.5)) == T0 + seconds(2.5)
    assert pacer.slot("ca", "d", now=T0 + seconds(2.5)) == T0 + seconds(3)
    pacer.reset("ca")
    assert not pacer.holds("ca", "d", now=T0 + seconds(2.5))


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(min_value=1, max_value=50),
    arrivals_ms=st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=60),
    lateness=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=60),
)
def test_granted_reissues_never_exceed_the_rate(rate, arrivals_ms, lateness):
    """Keys ask at arbitrary times and come back at their slot, up to one interval late (the
    scheduler, a busy worker): in any window of W seconds at most rate·W + 2 are granted,
    and every key is granted exactly once."""
    pacer = ReissuePacer()
    pacer.set_rate("ca", rate, now=T0)
    interval = timedelta(seconds=1 / rate)
    queue = sorted((T0 + timedelta(milliseconds=at), f"k{i}") for i, at in enumerate(arrivals_ms))
    granted: list[datetime] = []
    for turn in range(100 * len(arrivals_ms)):
        if not queue:
            break
        now, key = queue.pop(0)
        slot = pacer.slot("ca", key, now=now)
        if slot <= now:
            granted.append(now)
            continue
        queue.append((slot + interval * lateness[turn % len(lateness)], key))
        queue.sort()
    assert not queue and len(granted) == len(arrivals_ms)
    # Slots are whole microseconds (1/3 s is 333333 µs): each interval may fall short by 1 µs.
    slack = timedelta(microseconds=len(granted)).total_seconds()
    for i, start in enumerate(granted):
        for j in range(i, len(granted)):
            window = (granted[j] - start).total_seconds()
            assert j - i + 1 <= rate * (window + slack) + 2


@pytest.mark.parametrize(
    ("took", "interval"),
    [
        (timedelta(0), timedelta(seconds=2)),  # a quick step: the minimum
        (timedelta(milliseconds=400), timedelta(seconds=2)),  # 5 x 0.4 s is the minimum
        (timedelta(seconds=1), timedelta(seconds=5)),  # past it: 5 x the step
        (timedelta(seconds=3), timedelta(seconds=15)),  # 10,000 leaves: 20 % of the time
        (timedelta(seconds=-4), timedelta(seconds=2)),  # the clock stepped back
    ],
)
def test_a_rotating_step_comes_again_after_five_times_its_duration(
    took: timedelta, interval: timedelta
) -> None:
    assert rotation.step_interval(took, minimum=timedelta(seconds=2)) == interval
