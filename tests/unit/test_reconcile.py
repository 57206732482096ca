"""The reconciler driven as the scheduler drives it, on an in-memory API: how often it issues."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from certsmith import conditions, renewal
from certsmith.authorities import AuthorityRegistry
from certsmith.authority import AuthorityMaterial
from certsmith.config import Config
from certsmith.kube import ApiError, Kube
from certsmith.pki import ca
from certsmith.reconcile import Reconciler

START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NAMESPACE, NAME = "shop", "web"


class FakeApi:
    """The calls Reconciler makes, over a dict of Secrets; records when each Secret write came."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[datetime] = []
        self.events: list[str] = []

    def get_secret(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.secrets.get((namespace, name)))

    def create_secret(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        if self._key(body) in self.secrets:
            raise ApiError(409, "AlreadyExists", "the Secret exists")
        return self._store(body)

    def replace_secret(self, *, body: Mapping[str, Any]) -> dict[str, Any]:
        stored = self.secrets[self._key(body)]["metadata"]["resourceVersion"]
        if body["metadata"]["resourceVersion"] != stored:
            raise ApiError(409, "Conflict", "the Secret changed")
        return self._store(body)

    def post_event(self, *, reason: str, **_: Any) -> None:
        self.events.append(reason)

    def list_workloads(self, **_: Any) -> list[dict[str, Any]]:
        return []

    @staticmethod
    def _key(body: Mapping[str, Any]) -> tuple[str, str]:
        return body["metadata"]["namespace"], body["metadata"]["name"]

    def _store(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.writes.append(self.clock.now)
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["resourceVersion"] = str(len(self.writes))
        self.secrets[self._key(body)] = stored
        return copy.deepcopy(stored)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def drive(
    material: AuthorityMaterial, spec: dict[str, Any], run_for: timedelta
) -> tuple[FakeApi, list[dict[str, Any]]]:
    """Reconcile at every next check the reconciler asks for, writing its status back, for
    `run_for` of simulated time (or 2,000 rounds: a loop shows as time standing still)."""
    clock = Clock()
    api = FakeApi(clock)
    registry = AuthorityRegistry()
    registry.put(material)
    reconciler = Reconciler(
        kube=cast(Kube, api),
        config=Config(),
        authorities=registry,
        clock=clock,
        namespace_labels=lambda _: {},
    )
    body: dict[str, Any] = {
        "metadata": {"namespace": NAMESPACE, "name": NAME, "generation": 1},
        "spec": {"secretName": "web-tls", "dnsNames": [f"web.{NAMESPACE}.svc"], **spec},
        "status": {},
    }
    statuses = []
    for _ in range(2000):
        outcome = reconciler.reconcile(body)
        if outcome.status is not None:
            body["status"] = {**body["status"], **outcome.status}
            statuses.append(copy.deepcopy(body["status"]))
        if outcome.next_check is None or outcome.next_check >= START + run_for:
            break
        clock.now = max(clock.now, outcome.next_check)
    return api, statuses


@pytest.fixture(scope="module")
def material() -> AuthorityMaterial:
    root = ca.build_root(common_name="root", now=START, lifetime=timedelta(days=3650))
    intermediate = ca.build_intermediate(
        issuer=root, common_name="intermediate", now=START, lifetime=timedelta(days=365)
    )
    return AuthorityMaterial(
        name="cluster-root",
        root=root,
        intermediate=intermediate,
        trusted_roots=(root.certificate,),
    )


@pytest.mark.parametrize(
    ("spec", "in_use"),
    [
        # Before the floor: a renewal time before the issuance itself, re-issued at once.
        ({"duration": "1h", "renewBeforePercentage": 99}, timedelta(seconds=36)),
        ({"duration": "1m", "renewBefore": "30s"}, timedelta(seconds=30)),
        ({"duration": "1m", "renewBeforePercentage": 50}, timedelta(seconds=30)),
        ({"duration": "1m"}, timedelta(seconds=40)),
    ],
)
def test_aggressive_specs_are_reissued_no_more_often_than_they_say(
    material: AuthorityMaterial, spec: dict[str, Any], in_use: timedelta
) -> None:
    run_for = timedelta(minutes=10)
    api, statuses = drive(material, spec, run_for)
    gaps = [later - earlier for earlier, later in itertools.pairwise(api.writes)]
    assert gaps and min(gaps) >= renewal.MIN_IN_USE
    assert max(gaps) <= in_use + timedelta(seconds=1)  # renewed when due, not later
    assert len(api.writes) <= 1 + math.ceil(run_for / renewal.MIN_IN_USE)
    assert statuses[-1]["revision"] == len(api.writes)
    assert all(
        conditions.find_condition(s["conditions"], "Ready")["status"] == "True" for s in statuses
    )


def test_leaves_under_an_expiring_issuer_are_reissued_at_most_once_per_floor() -> None:
    root = ca.build_root(common_name="root", now=START, lifetime=timedelta(days=3650))
    # 3m20s left: every leaf is capped to its notAfter, a shorter lifetime each time.
    expiring = ca.build_intermediate(
        issuer=root,
        common_name="expiring",
        now=START - timedelta(minutes=6, seconds=40),
        lifetime=timedelta(minutes=10),
    )
    material = AuthorityMaterial(
        name="cluster-root", root=root, intermediate=expiring, trusted_roots=(root.certificate,)
    )
    api, _ = drive(material, {"duration": "1h"}, timedelta(minutes=3))
    gaps = [later - earlier for earlier, later in itertools.pairwise(api.writes)]
    assert gaps and min(gaps) >= renewal.MIN_IN_USE


def test_an_issuance_that_fails_its_own_checks_is_reported_and_backs_off() -> None:
    # An authority whose intermediate does not chain to the roots it trusts: each leaf it
    # signs fails IssuerNotTrusted. It must not be Ready, nor re-issued in a loop.
    root = ca.build_root(common_name="root", now=START, lifetime=timedelta(days=3650))
    stranger = ca.build_root(common_name="stranger", now=START, lifetime=timedelta(days=3650))
    intermediate = ca.build_intermediate(
        issuer=root, common_name="intermediate", now=START, lifetime=timedelta(days=365)
    )
    material = AuthorityMaterial(
        name="cluster-root",
        root=root,
        intermediate=intermediate,
        trusted_roots=(stranger.certificate,),
    )
    api, statuses = drive(material, {}, timedelta(hours=1))
    readiness = [conditions.find_condition(s["conditions"], "Ready") for s in statuses]
    assert all(r is not None and r["status"] == "False" for r in readiness)
    assert readiness[0]["reason"] == "IssuanceFailed"
    assert "IssuerNotTrusted" in readiness[0]["message"]
    # Back-off 2 s, 4 s … 5 min: about 19 tries in an hour, never a burst.
    gaps = [later - earlier for earlier, later in itertools.pairwise(api.writes)]
    assert len(api.writes) <= 20 and min(gaps) >= timedelta(seconds=1.8)
    assert statuses[-1]["failedIssuanceAttempts"] == len(api.writes)
