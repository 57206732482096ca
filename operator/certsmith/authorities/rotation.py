"""Root rotation without downtime, as a pure state machine over the CA's status.

    Ready ──(requested or root due)──▶ Distributing ──▶ Reissuing ──▶ Retiring ──▶ Ready

Distributing: the new root joins every trust bundle and every Secret's ca.crt; once all
carry it, wait `propagationDelay` so kubelet has refreshed mounted copies; leaves are still
signed under the old root (pod certificates with the earliest refresh Kubernetes allows).
Reissuing: a new intermediate under the new root signs fresh leaves for every Certificate,
every pod certificate request and every Kubernetes CSR; it ends once no leaf chains to the
old root, every pod certificate signed under it is past its refresh
(`pod_certificates_lagging`) and every certificate signed for a Kubernetes CSR under it has
expired (`signing_requests_lagging`).
Retiring: wait `propagationDelay` again, then the old root leaves the bundles. The phase
and its timers live in the CA's status, so a restarted operator carries on where it was.

A phase waits only for objects certsmith is responsible for (the Secrets of existing
Certificates, the bundle ConfigMaps it manages). When a phase has made no progress for
STALL_AFTER, what it waits for is reported as its blockers, each with the reason.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from certsmith.api import conditions, model, times
from certsmith.authorities import pod_certificates

ROTATION_BLOCKED = "RotationBlocked"
DEFAULT_PROPAGATION_DELAY = timedelta(minutes=5)
DEFAULT_REISSUE_RATE = 20
MAX_REISSUE_RATE = 1000
STALL_AFTER = timedelta(seconds=30)
"""A phase that has not progressed for this long names its blockers (a healthy phase moves
every 1/reissueRate seconds, ≤ 1 s, plus the 2 s step; failed issuance retries 2 s, 4 s …)."""
BLOCKERS_SHOWN = 20


STEP_SHARE = 5
"""While rotating, a step comes again after at least this many times its own duration: a
step reads every leaf Secret, seconds of work at 10,000, and must not take the operator's
whole time (re-issues are scheduled ahead at the rate, not by each step)."""


def step_interval(took: timedelta, *, minimum: timedelta) -> timedelta:
    """The pause before a rotating authority's next step, after one that took `took`:
    `minimum`, or STEP_SHARE times `took` when that is longer (a negative `took`, from the
    clock stepping back, counts as 0)."""
    return max(minimum, STEP_SHARE * max(took, timedelta(0)))


class Phase(enum.Enum):
    """`status.phase` of a CertificateAuthority (the module's state machine)."""

    READY = "Ready"
    DISTRIBUTING = "Distributing"
    REISSUING = "Reissuing"
    RETIRING = "Retiring"


@dataclass(frozen=True)
class RotationState:
    """The rotation as `status.phase` and `status.rotation` record it (`from_status`,
    `to_status`); fingerprints are SHA-256 hex, `honoured_request` the last value of the
    rotate-requested-at annotation acted upon."""

    phase: Phase
    waiting_since: datetime | None = None
    """When the phase's condition was met (Distributing, Retiring); the delay runs from here."""
    old_root: str | None = None
    new_root: str | None = None
    honoured_request: str | None = None
    started_at: datetime | None = None
    awaited: int | None = None
    """How many objects the phase waited for at the last step."""
    progressed_at: datetime | None = None
    """When that number last fell, or the phase began: the stall clock runs from here."""

    @property
    def rotating(self) -> bool:
        return self.phase is not Phase.READY

    @property
    def signs_with_new_root(self) -> bool:
        """Never issue from a root that is not in every bundle yet."""
        return self.phase in (Phase.REISSUING, Phase.RETIRING)


@dataclass(frozen=True)
class Rotation:
    """`spec.rotation` of a CertificateAuthority, validated."""

    propagation_delay: timedelta = DEFAULT_PROPAGATION_DELAY
    reissue_rate: int = DEFAULT_REISSUE_RATE
    """Leaves re-issued per second at most while leaves move to the new root."""


def parse_rotation(spec: Mapping[str, Any]) -> Rotation:
    """`spec.rotation` (absent fields take their defaults); InvalidSpec naming a bad field.

    The CRD schema refuses the same values; this guards objects stored before it did.
    """
    settings = spec.get("rotation")
    if settings is None:
        return Rotation()
    if not isinstance(settings, Mapping):
        raise model.InvalidSpec("spec.rotation", "must be an object")
    delay = DEFAULT_PROPAGATION_DELAY
    text = settings.get("propagationDelay")
    if text is not None:
        if not isinstance(text, str):
            raise model.InvalidSpec(
                "spec.rotation.propagationDelay", f"{text!r} is not a duration like '5m'"
            )
        delay = model.parse_duration(text, "spec.rotation.propagationDelay")
    rate = settings.get("reissueRate", DEFAULT_REISSUE_RATE)
    # bool is an int in Python; a YAML `true` is not a rate.
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise model.InvalidSpec(
            "spec.rotation.reissueRate", f"{rate!r} is not a whole number of leaves per second"
        )
    if not 1 <= rate <= MAX_REISSUE_RATE:
        raise model.InvalidSpec(
            "spec.rotation.reissueRate", f"{rate} is outside 1 to {MAX_REISSUE_RATE} per second"
        )
    return Rotation(propagation_delay=delay, reissue_rate=rate)


@dataclass(frozen=True)
class Lagging:
    """An object a phase waits for, and why it is not there yet."""

    namespace: str
    """Empty for a cluster-scoped object (a ClusterTrustBundle)."""
    name: str
    why: str
    reason: str = ""
    """A CamelCase word for conditions and events, e.g. BundleConflict."""

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{where}: {self.why}"


@dataclass(frozen=True)
class Progress:
    """What the operator observed in the cluster for this authority (only objects it is
    responsible for: Secrets of existing Certificates, bundle ConfigMaps it manages)."""

    behind: tuple[Lagging, ...] = ()
    """Trust-bundle ConfigMaps and Secrets whose ca.crt is not the desired set yet."""
    on_old_root: tuple[Lagging, ...] = ()
    """Secrets whose leaf does not chain to the new root yet."""
    total_leaves: int = 0
    pod_certificates: tuple[Lagging, ...] = ()
    """Certificates handed out under the old root that certsmith cannot re-issue: pod
    certificates kubelets may not have refreshed yet, and Kubernetes CSR certificates not
    expired yet."""

    @property
    def bundles_behind(self) -> int:
        return len(self.behind)

    @property
    def leaves_on_old_root(self) -> int:
        return len(self.on_old_root)

    def awaited(self, phase: Phase) -> tuple[Lagging, ...]:
        """What `phase` waits for before it may move on (Retiring waits only for time)."""
        if phase is Phase.DISTRIBUTING:
            return self.behind
        if phase is Phase.REISSUING:
            return (*self.on_old_root, *self.pod_certificates)
        return ()


def _format(moment: datetime | None) -> str | None:
    return None if moment is None else times.format_time(moment)


def from_status(status: Mapping[str, Any] | None) -> RotationState:
    """The rotation state a CertificateAuthority's status records; Ready when it records
    none or an unknown phase."""
    status = status or {}
    rotation = status.get("rotation") or {}
    try:
        phase = Phase(status.get("phase") or "Ready")
    except ValueError:
        phase = Phase.READY
    # The count a phase waits for is the one status reports for it.
    counted = {Phase.DISTRIBUTING: "bundlesBehind", Phase.REISSUING: "leavesOnOldRoot"}
    awaited = rotation.get(counted[phase]) if phase in counted else None
    return RotationState(
        phase=phase,
        waiting_since=times.parse_time(rotation.get("waitingSince")),
        old_root=rotation.get("oldRootFingerprint"),
        new_root=rotation.get("newRootFingerprint"),
        honoured_request=rotation.get("lastRequest"),
        started_at=times.parse_time(rotation.get("startedAt")),
        awaited=awaited if isinstance(awaited, int) else None,
        progressed_at=times.parse_time(rotation.get("lastProgressTime")),
    )


def to_status(
    state: RotationState, progress: Progress | None, blockers: tuple[Lagging, ...] = ()
) -> dict[str, Any]:
    """`status.phase` and `status.rotation`; `blockers` at most BLOCKERS_SHOWN lines (null
    when none, so a merge patch removes the field)."""
    rotation: dict[str, Any] = {
        "waitingSince": _format(state.waiting_since),
        "oldRootFingerprint": state.old_root,
        "newRootFingerprint": state.new_root,
        "lastRequest": state.honoured_request,
        "startedAt": _format(state.started_at),
        "lastProgressTime": _format(state.progressed_at),
        "blockers": describe_blockers(blockers) or None,
    }
    if progress is not None:
        rotation.update(
            bundlesBehind=progress.bundles_behind,
            leavesOnOldRoot=progress.leaves_on_old_root,
            totalLeaves=progress.total_leaves,
        )
    return {"phase": state.phase.value, "rotation": rotation}


def pod_certificates_lagging(
    bounds: Mapping[str, datetime], state: RotationState, *, now: datetime
) -> tuple[Lagging, ...]:
    """What a rotation waits for of the pod certificates signed under its old root: one
    entry until kubelets have refreshed them all (`pod_certificates.in_use_until` of the
    bound the signer recorded, `bounds` by root fingerprint), none outside a rotation or
    once past it."""
    bound = bounds.get(state.old_root) if state.old_root is not None else None
    if not state.rotating or bound is None:
        return ()
    until = pod_certificates.in_use_until(bounds, state.old_root)
    if until is None or now >= until:
        return ()
    return (
        Lagging(
            "",
            "pod certificates",
            f"signed under the old root with beginRefreshAt up to "
            f"{_format(bound)}; kubelets have refreshed them by "
            f"{_format(until)}",
            reason="PodCertificatesOnOldRoot",
        ),
    )


def signing_requests_lagging(
    bounds: Mapping[str, datetime], state: RotationState, *, now: datetime
) -> tuple[Lagging, ...]:
    """What a rotation waits for of the certificates signed for Kubernetes CSRs under its
    old root: one entry until the latest of them has expired (csr_bounds: the bound the
    signer recorded, `bounds` by root fingerprint; nobody renews them, so their holders
    keep them to the end), none outside a rotation or once past it."""
    bound = bounds.get(state.old_root) if state.old_root is not None else None
    if not state.rotating or bound is None or now >= bound:
        return ()
    return (
        Lagging(
            "",
            "Kubernetes CSR certificates",
            f"signed under the old root, valid up to {_format(bound)}; each is valid until "
            "its notAfter, so the old root stays trusted until then (a new CSR is signed "
            "under the new root)",
            reason="CertificateSigningRequestsOnOldRoot",
        ),
    )


def describe_blockers(blockers: tuple[Lagging, ...]) -> list[str]:
    """`namespace/name: why` lines, sorted, the tail summarised beyond BLOCKERS_SHOWN."""
    lines = sorted(str(blocker) for blocker in blockers)
    if len(lines) > BLOCKERS_SHOWN:
        rest = len(lines) - BLOCKERS_SHOWN
        lines = [*lines[:BLOCKERS_SHOWN], f"… and {rest} more"]
    return lines


def should_start(
    state: RotationState, *, request: str | None, root_renewal: datetime, now: datetime
) -> bool:
    """Whether a rotation starts now: none is under way, and a new rotate request came
    (`request` differs from the one honoured) or the root is due (`root_renewal`)."""
    if state.rotating:
        return False
    requested = request is not None and request != state.honoured_request
    return requested or now >= root_renewal


def start(
    state: RotationState, *, old_root: str, new_root: str, request: str | None, now: datetime
) -> RotationState:
    """Distributing, from the root `old_root` to `new_root` (fingerprints), `request` honoured."""
    return RotationState(
        phase=Phase.DISTRIBUTING,
        old_root=old_root,
        new_root=new_root,
        honoured_request=request if request is not None else state.honoured_request,
        started_at=now,
    )


def _enter(state: RotationState, phase: Phase, waiting_since: datetime | None) -> RotationState:
    # A new phase starts its own stall clock.
    return replace(
        state, phase=phase, waiting_since=waiting_since, awaited=None, progressed_at=None
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
            return _enter(state, Phase.REISSUING, None)
        return state
    if state.phase is Phase.REISSUING:
        if progress.awaited(Phase.REISSUING):
            return state
        return _enter(state, Phase.RETIRING, now)
    if state.phase is Phase.RETIRING:
        if state.waiting_since is None:  # status written by an older operator: start waiting
            return replace(state, waiting_since=now)
        if now - state.waiting_since >= delay:
            return _enter(state, Phase.READY, None)
        return state
    return state


def track(state: RotationState, progress: Progress, *, now: datetime) -> RotationState:
    """Record the count the phase waits for; the stall clock restarts when it falls."""
    if not state.rotating:
        return replace(state, awaited=None, progressed_at=None)
    count = len(progress.awaited(state.phase))
    if state.progressed_at is None or state.awaited is None or count < state.awaited or count == 0:
        return replace(state, awaited=count, progressed_at=now)
    return replace(state, awaited=count)


def blockers(state: RotationState, progress: Progress, *, now: datetime) -> tuple[Lagging, ...]:
    """What holds the phase once it has not progressed for STALL_AFTER; () otherwise.

    `state` is the one `track` returned for this `progress`.
    """
    if not state.rotating or state.progressed_at is None:
        return ()
    waiting = progress.awaited(state.phase)
    if waiting and now - state.progressed_at >= STALL_AFTER:
        return waiting
    return ()


def blocked_condition(state: RotationState, blocking: tuple[Lagging, ...]) -> conditions.Condition:
    """The RotationBlocked condition: True, naming the blockers, while a phase is stuck."""
    if blocking:
        lines = describe_blockers(blocking)
        shown = "; ".join(lines[:3])
        more = (
            f" (and {len(blocking) - 3} more in status.rotation.blockers)"
            if len(blocking) > 3
            else ""
        )
        since = _format(state.progressed_at)
        return conditions.Condition(
            ROTATION_BLOCKED,
            True,
            "Blocked",
            f"{state.phase.value} has made no progress since {since}, waiting for: {shown}{more}",
        )
    if state.rotating:
        return conditions.Condition(
            ROTATION_BLOCKED, False, "Progressing", f"{state.phase.value}: nothing blocks it"
        )
    return conditions.Condition(ROTATION_BLOCKED, False, "NotRotating", "no root rotation")


# --- pacing the re-issues of a rotation ---------------------------------------------------

CertificateKey = tuple[str, str]
"""A Certificate paced by the ReissuePacer: (namespace, name)."""


@dataclass
class _Lane:
    interval: timedelta
    admitted_at: datetime | None = None
    next_free: datetime | None = None
    reserved: dict[CertificateKey, datetime] = field(default_factory=dict)


class ReissuePacer:
    """Spaces each authority's root-rotation re-issues at least 1/reissueRate apart,
    whatever asks for them (the rotation step, a watch event, an authority update).

    A re-issue that may not run now gets a reserved slot, so that N requests at once cost
    N reservations, not N² retries. Thread-safe; pure (the caller passes the time).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}

    def _lane(self, authority: str) -> _Lane:
        lane = self._lanes.get(authority)
        if lane is None:
            lane = self._lanes[authority] = _Lane(timedelta(seconds=1 / DEFAULT_REISSUE_RATE))
        return lane

    def set_rate(
        self, authority: str, rate: int, *, now: datetime
    ) -> dict[CertificateKey, datetime]:
        """Apply a (new) rate; reservations are spaced again. Returns the keys whose slot
        moved and their new slot, so the caller can reschedule them."""
        interval = timedelta(seconds=1 / rate)
        with self._lock:
            lane = self._lane(authority)
            if lane.interval == interval:
                return {}
            lane.interval = interval
            start = now if lane.admitted_at is None else max(now, lane.admitted_at + interval)
            moved: dict[CertificateKey, datetime] = {}
            for index, (key, when) in enumerate(
                sorted(lane.reserved.items(), key=lambda item: item[1])
            ):
                slot = start + index * interval
                if slot != when:
                    moved[key] = lane.reserved[key] = slot
            lane.next_free = start + len(lane.reserved) * interval if lane.reserved else None
            return moved

    def slot(self, authority: str, key: CertificateKey, *, now: datetime) -> datetime:
        """When `key` may re-issue: `now` means now (the slot is taken), a later time means
        come back then (the slot is reserved for `key`)."""
        with self._lock:
            lane = self._lane(authority)
            held = lane.reserved.pop(key, None)
            if held is not None:
                if held > now:
                    lane.reserved[key] = held
                    return held
                if now - held <= lane.interval:  # its turn, give or take the scheduler
                    lane.admitted_at = now
                    return now
                # It missed its turn by more than an interval: queue again, not in a burst.
            when = now if lane.next_free is None else max(now, lane.next_free)
            if lane.admitted_at is not None:
                when = max(when, lane.admitted_at + lane.interval)
            lane.next_free = when + lane.interval
            if when > now:
                lane.reserved[key] = when
            else:
                lane.admitted_at = now
            return when

    def holds(self, authority: str, key: CertificateKey, *, now: datetime) -> bool:
        """Whether `key` waits for a reserved slot still to come."""
        with self._lock:
            lane = self._lanes.get(authority)
            return lane is not None and lane.reserved.get(key, now) > now

    def forget(self, key: CertificateKey) -> None:
        """The Certificate is gone: free its reservations."""
        with self._lock:
            for lane in self._lanes.values():
                lane.reserved.pop(key, None)

    def reset(self, authority: str) -> None:
        """The rotation ended: drop what is left of its reservations."""
        with self._lock:
            lane = self._lanes.get(authority)
            if lane is not None:
                lane.reserved.clear()
                lane.next_free = None
