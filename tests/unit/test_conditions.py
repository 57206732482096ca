"""Conditions keep their transition time while their status holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certsmith.api.conditions import READY, Condition, merge_conditions

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_transition_time_moves_only_when_status_changes():
    first = merge_conditions(None, [Condition(READY, True, "Issued", "ok")], generation=1, now=T0)
    later = T0 + timedelta(hours=1)
    same = merge_conditions(
        first, [Condition(READY, True, "Issued", "renewed")], generation=2, now=later
    )
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["message"] == "renewed" and same[0]["observedGeneration"] == 2
    flipped = merge_conditions(
        same, [Condition(READY, False, "InvalidSpec", "bad")], generation=3, now=later
    )
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T01:00:00Z"
    assert flipped[0]["status"] == "False"


def test_other_condition_types_are_kept():
    current = [{"type": "Custom", "status": "True"}]
    merged = merge_conditions(
        current, [Condition(READY, True, "Issued", "ok")], generation=None, now=T0
    )
    assert [c["type"] for c in merged] == ["Custom", "Ready"]
