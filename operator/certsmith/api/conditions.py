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
    """A condition to set: `status` True or False is written "True" or "False"; `reason` is
    one CamelCase word, `message` a sentence for people (metav1.Condition)."""

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
    """The conditions list after applying `desired`, sorted by type; other condition types
    are kept. `lastTransitionTime` is `now` when a condition's status changed (or it is new),
    else the one it had; `observedGeneration` is set when `generation` is given."""
    by_type = {str(c.get("type")): dict(c) for c in current or ()}
    for condition in desired:
        status = "True" if condition.status else "False"
        previous = by_type.get(condition.type)
        transition = times.format_time(now)
        if previous is not None and previous.get("status") == status:
            transition = previous.get("lastTransitionTime", transition)
        entry: dict[str, Any] = {
            "type": condition.type,
            "status": status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": transition,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        by_type[condition.type] = entry
    return [by_type[key] for key in sorted(by_type)]


def find_condition(
    conditions: Sequence[Mapping[str, Any]] | None, condition_type: str
) -> Mapping[str, Any] | None:
    """The first condition of `condition_type` in a status's list, or None."""
    for condition in conditions or ():
        if condition.get("type") == condition_type:
            return condition
    return None


def is_true(conditions: Sequence[Mapping[str, Any]] | None, condition_type: str) -> bool:
    """Whether a condition of `condition_type` is there with status "True"."""
    found = find_condition(conditions, condition_type)
    return found is not None and found.get("status") == "True"
