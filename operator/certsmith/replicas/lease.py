"""Leader election over a coordination.k8s.io Lease: who may act, decided purely.

Exactly one replica runs the controller; every replica serves the webhooks. The holder
renews every `RENEW_PERIOD`; another replica takes over only once the holder has not renewed
for `DURATION`, and a holder that could not renew for `GIVE_UP` (< DURATION) stops acting
first, so two replicas never act at once.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from certsmith.api import times

DURATION = timedelta(seconds=10)
RENEW_PERIOD = timedelta(seconds=2)
GIVE_UP = timedelta(seconds=8)
# One round (read + write) gets this long; a longer one is abandoned as if it had failed.
ROUND_TIMEOUT = timedelta(seconds=4)


class Move(enum.Enum):
    CREATE = "create"
    TAKE_OVER = "take over"
    RENEW = "renew"
    WAIT = "wait"


@dataclass(frozen=True)
class Holding:
    holder: str | None
    renewed: datetime | None
    duration: timedelta
    transitions: int


def holding(lease: Mapping[str, Any] | None) -> Holding | None:
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    return Holding(
        holder=spec.get("holderIdentity"),
        renewed=times.parse_time(spec.get("renewTime")),
        duration=timedelta(seconds=int(spec.get("leaseDurationSeconds") or DURATION.seconds)),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def next_move(current: Holding | None, *, me: str, now: datetime) -> Move:
    if current is None:
        return Move.CREATE
    if current.holder == me:
        return Move.RENEW
    if current.holder is None or current.renewed is None:
        return Move.TAKE_OVER
    if now - current.renewed >= current.duration:
        return Move.TAKE_OVER
    return Move.WAIT


def lease_spec(current: Holding | None, *, me: str, now: datetime) -> dict[str, Any]:
    """The spec to write for CREATE, TAKE_OVER or RENEW."""
    taking = current is None or current.holder != me
    transitions = 0 if current is None else current.transitions + (1 if taking else 0)
    spec: dict[str, Any] = {
        "holderIdentity": me,
        "leaseDurationSeconds": int(DURATION.total_seconds()),
        "renewTime": times.format_micro_time(now),
        "leaseTransitions": transitions,
    }
    if taking:
        spec["acquireTime"] = times.format_micro_time(now)
    return spec
