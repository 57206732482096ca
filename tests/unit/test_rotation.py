"""The root-rotation state machine: phases advance only when the cluster is ready for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certsmith import rotation
from certsmith.rotation import Phase, Progress, RotationState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DELAY = timedelta(seconds=60)
DONE = Progress(bundles_behind=0, leaves_on_old_root=0, total_leaves=5)


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
    behind = Progress(bundles_behind=3, leaves_on_old_root=5, total_leaves=5)
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
    pending = Progress(bundles_behind=0, leaves_on_old_root=2, total_leaves=5)
    assert rotation.advance(state, pending, now=T0, delay=DELAY).phase is Phase.REISSUING
    state = rotation.advance(state, DONE, now=T0, delay=DELAY)
    assert state.phase is Phase.RETIRING
    assert rotation.advance(state, DONE, now=T0 + timedelta(seconds=59), delay=DELAY).phase is (
        Phase.RETIRING
    )
    assert rotation.advance(state, DONE, now=T0 + DELAY, delay=DELAY).phase is Phase.READY


def test_state_survives_the_status_round_trip():
    state = rotation.advance(started(), DONE, now=T0 + timedelta(seconds=5), delay=DELAY)
    restored = rotation.from_status(rotation.to_status(state, DONE))
    assert restored == state
