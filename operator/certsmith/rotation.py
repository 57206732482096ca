"""Root rotation without downtime, as a pure state machine over the CA's status.

    Ready ──(requested or root due)──▶ Distributing ──▶ Reissuing ──▶ Retiring ──▶ Ready

Distributing: the new root joins every trust bundle and every Secret's ca.crt; once all
carry it, wait `propagationDelay` so kubelet has refreshed mounted copies; leaves are still
signed under the old root. Reissuing: a new intermediate under the new root signs fresh
leaves for every Certificate. Retiring: once no leaf chains to the old root, wait
`propagationDelay` again, then the old root leaves the bundles. The phase and its timers
live in the CA's status, so a restarted operator carries on where it was.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

ROTATE_ANNOTATION = "certsmith.dev/rotate-requested-at"


class Phase(enum.Enum):
    READY = "Ready"
    DISTRIBUTING = "Distributing"
    REISSUING = "Reissuing"
    RETIRING = "Retiring"


@dataclass(frozen=True)
class RotationState:
    phase: Phase
    waiting_since: datetime | None = None
    """When the phase's condition was met (Distributing, Retiring); the delay runs from here."""
    old_root: str | None = None
    new_root: str | None = None
    honoured_request: str | None = None
    started_at: datetime | None = None

    @property
    def rotating(self) -> bool:
        return self.phase is not Phase.READY

    @property
    def signs_with_new_root(self) -> bool:
        """Never issue from a root that is not in every bundle yet."""
        return self.phase in (Phase.REISSUING, Phase.RETIRING)


@dataclass(frozen=True)
class Progress:
    """What the operator observed in the cluster for this authority."""

    bundles_behind: int
    """Trust-bundle ConfigMaps and Secrets whose ca.crt is not the desired set yet."""
    leaves_on_old_root: int
    total_leaves: int


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _format(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def from_status(status: Mapping[str, Any] | None) -> RotationState:
    status = status or {}
    rotation = status.get("rotation") or {}
    try:
        phase = Phase(status.get("phase") or "Ready")
    except ValueError:
        phase = Phase.READY
    return RotationState(
        phase=phase,
        waiting_since=_parse_time(rotation.get("waitingSince")),
        old_root=rotation.get("oldRootFingerprint"),
        new_root=rotation.get("newRootFingerprint"),
        honoured_request=rotation.get("lastRequest"),
        started_at=_parse_time(rotation.get("startedAt")),
    )


def to_status(state: RotationState, progress: Progress | None) -> dict[str, Any]:
    rotation: dict[str, Any] = {
        "waitingSince": _format(state.waiting_since),
        "oldRootFingerprint": state.old_root,
        "newRootFingerprint": state.new_root,
        "lastRequest": state.honoured_request,
        "startedAt": _format(state.started_at),
    }
    if progress is not None:
        rotation.update(
            bundlesBehind=progress.bundles_behind,
            leavesOnOldRoot=progress.leaves_on_old_root,
            totalLeaves=progress.total_leaves,
        )
    return {"phase": state.phase.value, "rotation": rotation}


def should_start(
    state: RotationState, *, request: str | None, root_renewal: datetime, now: datetime
) -> bool:
    if state.rotating:
        return False
    requested = request is not None and request != state.honoured_request
    return requested or now >= root_renewal


def start(
    state: RotationState, *, old_root: str, new_root: str, request: str | None, now: datetime
) -> RotationState:
    return RotationState(
        phase=Phase.DISTRIBUTING,
        old_root=old_root,
        new_root=new_root,
        honoured_request=request if request is not None else state.honoured_request,
        started_at=now,
    )


def advance(
    state: RotationState, progress: Progress, *, now: datetime, delay: timedelta
) -> RotationState:
    """The next state given what was observed; unchanged when the phase must wait."""
    if state.phase is Phase.DISTRIBUTING:
        if progress.bundles_behind > 0:
            return replace(state, waiting_since=None)
        if state.waiting_since is None:
            return replace(state, waiting_since=now)
        if now - state.waiting_since >= delay:
            return replace(state, phase=Phase.REISSUING, waiting_since=None)
        return state
    if state.phase is Phase.REISSUING:
        if progress.leaves_on_old_root > 0:
            return state
        return replace(state, phase=Phase.RETIRING, waiting_since=now)
    if state.phase is Phase.RETIRING:
        if state.waiting_since is None:  # status written by an older operator: start waiting
            return replace(state, waiting_since=now)
        if now - state.waiting_since >= delay:
            return replace(state, phase=Phase.READY, waiting_since=None)
        return state
    return state
