"""Status conditions (Ready, Issuing) as the plain dicts the API stores.

A condition keeps its lastTransitionTime while its status stays the same, so that
`kubectl describe` tells when the state last changed, not when it was last written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certsmith.api import times

READY = "Ready"
ISSUING = "Issuing"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def merge_conditions(
    current: Sequence[Mapping[str, Any]] | None,
    desired: Sequence[Condition],
    *,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The conditions list after applying `desired`; other condition types are kept."""
    by_type = {str(c.get("type")): dict(c) for c in current or ()}
    for condition in desired:
        status = "True" if condition.status else "False"
        previous = by_type.get(condition.type)
        changed = previous is None or previous.get("status") != status
        entry: dict[str, Any] = {
            "type": condition.type,
            "status": status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": times.format_time(now)
            if changed
            else previous.get("lastTransitionTime", times.format_time(now)),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        by_type[condition.type] = entry
    return [by_type[key] for key in sorted(by_type)]


def find_condition(
    conditions: Sequence[Mapping[str, Any]] | None, condition_type: str
) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == condition_type:
            return condition
    return None


def is_true(conditions: Sequence[Mapping[str, Any]] | None, condition_type: str) -> bool:
    found = find_condition(conditions, condition_type)
    return found is not None and found.get("status") == "True"
