"""The reconciler's outcomes against an in-memory apiserver: what it writes, the status it
reports and when it looks again, for Secrets it must not or cannot write."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certsmith import authorities, conditions, metrics, reconcile, tls_secret
from certsmith.authority import AuthorityMaterial
from certsmith.config import Config
from certsmith.kube import ApiError
from certsmith.pki import ca

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class MemoryApi:
    """The few calls the reconciler makes, with the apiserver's rules that matter here:
    409 on an existing name or a stale resourceVersion, 422 on data of an immutable Secret."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.certificates: set[tuple[str, str]] = set()
        self.writes: list[str] = []
        self.events: list[tuple[str, str]] = []
        self._version = 100

    def _stored(self, body: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        body["metadata"]["resourceVersion"] = str(self._version)
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        self.secrets[key] = body
        return copy.deepcopy(body)

    def get_secret(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.secrets.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def create_secret(self, *, body: dict[str, Any]) -> dict[str, Any]:
        self.writes.append("create")
        if (body["metadata"]["namespace"], body["metadata"]["name"]) in self.secrets:
            raise ApiError(409, "AlreadyExists", "secrets already exists")
        return self._stored(copy.deepcopy(body))

    def patch_secret(self, *, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.writes.append("patch")
        current = self.secrets[(namespace, name)]
        wanted = patch.get("metadata", {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        if current.get("immutable") and "data" in patch:
            raise ApiError(422, "Invalid", "data: Forbidden: field is immutable")
        return self._stored(merge(current, patch))

    def get_certificate(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name}} if (namespace, name) in self.certificates else None

    def list_workloads(self, *, namespace: str, plural: str) -> list[dict[str, Any]]:
        return []

    def post_event(self, *, involved, event_type, reason, message, now, component) -> None:
        self.events.append((reason, message))


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge(result.get(key) or {}, value)
        else:
            result[key] = value
    return result


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(root: ca.CAKeyPair, intermediate: ca.CAKeyPair):
    api = MemoryApi()
    registry = authorities.AuthorityRegistry()
    registry.put(
        AuthorityMaterial(
            name="cluster-root",
            root=root,
            intermediate=intermediate,
            trusted_roots=(root.certificate,),
        )
    )
    clock = Clock()
    reconciler = reconcile.Reconciler(
        kube=api,  # type: ignore[arg-type]
        config=Config(),
        authorities=registry,
        clock=clock,
        namespace_labels=lambda namespace: {},
    )
    return api, reconciler, clock


def certificate(name: str = "web", namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {"secretName": f"{name}-tls", "dnsNames": [f"{name}.{namespace}.svc"], **spec},
        "status": {},
    }


def run(reconciler: reconcile.Reconciler, body: dict[str, Any]) -> reconcile.Outcome:
    """Reconcile and keep the status written, as the handlers do."""
    outcome = reconciler.reconcile(body)
    if outcome.status is not None:
        body["status"] = {**body["status"], **outcome.status}
    return outcome


def ready(body: dict[str, Any]) -> dict[str, Any]:
    found = conditions.find_condition(body["status"]["conditions"], conditions.READY)
    assert found is not None
    return dict(found)


def gauge(namespace: str, name: str) -> float:
    return metrics.READY.labels(namespace, name)._value.get()


def test_renewal_into_an_immutable_secret_keeps_ready_until_expiry_then_says_expired(world):
    api, reconciler, clock = world
    body = certificate(duration="2m")
    first = run(reconciler, body)
    assert ready(body)["status"] == "True"
    key = ("shop", "web-tls")
    api.secrets[key]["immutable"] = True
    not_after = datetime.fromisoformat(body["status"]["notAfter"].replace("Z", "+00:00"))

    # Renewal due: the Secret cannot take it; the old certificate is still valid.
    clock.now = first.next_check
    writes = len(api.writes)
    outcome = run(reconciler, body)
    assert len(api.writes) == writes  # refused before any write: nothing to retry against
    issuing = conditions.find_condition(body["status"]["conditions"], conditions.ISSUING)
    assert issuing["reason"] == "SecretConflict"
    assert "is immutable" in issuing["message"] and "delete it" in issuing["message"]
    assert ready(body)["status"] == "True"
    assert gauge("shop", "web") == 1
    assert outcome.next_check <= not_after + timedelta(seconds=1)

    # Retries back off past the expiry: the expiry is still when it is looked at again.
    body["status"]["failedIssuanceAttempts"] = 12  # back-off at its 5-minute cap
    outcome = run(reconciler, body)
    assert outcome.next_check == not_after + timedelta(seconds=1)

    clock.now = outcome.next_check
    outcome = run(reconciler, body)
    now_ready = ready(body)
    assert (now_ready["status"], now_ready["reason"]) == ("False", "Expired")
    assert conditions.format_time(not_after) in now_ready["message"]
    assert "is immutable" in now_ready["message"]
    assert gauge("shop", "web") == 0
    assert outcome.next_check is not None and outcome.next_check > clock.now

    # The user deletes the Secret: issued at once, Ready again.
    del api.secrets[key]
    run(reconciler, body)
    assert ready(body)["status"] == "True" and gauge("shop", "web") == 1


def test_failed_renewal_of_an_expired_leaf_is_never_ready(world):
    api, reconciler, clock = world
    body = certificate(duration="2m")
    run(reconciler, body)
    api.patch_secret = failing_patch  # e.g. RBAC or a webhook refuses every write
    clock.now = NOW + timedelta(minutes=3)
    run(reconciler, body)
    assert (ready(body)["status"], ready(body)["reason"]) == ("False", "Expired")
    assert "403" in ready(body)["message"]


def failing_patch(**_: Any) -> dict[str, Any]:
    raise ApiError(403, "Forbidden", "secrets is forbidden")


def test_deleted_secret_that_cannot_be_recreated_is_not_ready(world):
    api, reconciler, _ = world
    body = certificate()
    run(reconciler, body)
    del api.secrets[("shop", "web-tls")]
    api.create_secret = failing_patch
    run(reconciler, body)
    assert (ready(body)["status"], ready(body)["reason"]) == ("False", "IssuanceFailed")
    assert "does not exist" in ready(body)["message"]


def test_unlabelled_secret_is_left_alone_and_issued_once_it_is_gone(world):
    api, reconciler, _ = world
    hand_made = {
        "type": "kubernetes.io/tls",
        "metadata": {"name": "web-tls", "namespace": "shop", "resourceVersion": "7"},
        "data": {"tls.crt": "", "tls.key": ""},
    }
    api.secrets[("shop", "web-tls")] = copy.deepcopy(hand_made)
    body = certificate()
    outcome = run(reconciler, body)  # the optimistic create meets it: 409, then judged
    assert api.secrets[("shop", "web-tls")] == hand_made
    assert (ready(body)["status"], ready(body)["reason"]) == ("False", "SecretConflict")
    assert "created by hand" in ready(body)["message"]
    assert outcome.next_check - NOW == reconcile.CONFLICT_RECHECK_MIN
    assert reconciler.waiting_on_secret("shop", "web-tls") == ["web"]

    del api.secrets[("shop", "web-tls")]
    run(reconciler, body)
    assert ready(body)["status"] == "True"
    assert reconciler.waiting_on_secret("shop", "web-tls") == []


def test_left_over_secret_of_a_deleted_certificate_names_it(world):
    api, reconciler, _ = world
    old = certificate("old", secretName="shared")
    run(reconciler, old)
    api.certificates = {("shop", "web")}  # "old" was deleted, its Secret kept
    body = certificate(secretName="shared")
    run(reconciler, body)
    message = ready(body)["message"]
    assert "Certificate old, which no longer exists" in message and "delete the Secret" in message
    api.certificates.add(("shop", "old"))
    body["status"] = {}
    run(reconciler, body)
    assert "belongs to Certificate old" in ready(body)["message"]


def test_a_concurrent_write_is_judged_again_not_overwritten(world):
    api, reconciler, _ = world
    body = certificate()
    run(reconciler, body)
    original = api.patch_secret

    def someone_writes_first(**kwargs: Any) -> dict[str, Any]:
        api.patch_secret = original
        stored = api.secrets[("shop", "web-tls")]
        stored["metadata"]["labels"]["backup"] = "daily"
        api._stored(stored)
        return original(**kwargs)

    api.patch_secret = someone_writes_first
    body["metadata"]["annotations"] = {tls_secret.RENEWAL_REQUEST_ANNOTATION: "now"}
    run(reconciler, body)
    assert body["status"]["revision"] == 2
    assert api.secrets[("shop", "web-tls")]["metadata"]["labels"]["backup"] == "daily"


@pytest.mark.parametrize(
    ("age", "delay"),
    [
        (timedelta(0), timedelta(seconds=2)),
        (timedelta(seconds=100), timedelta(seconds=10)),
        (timedelta(hours=5), timedelta(seconds=30)),
    ],
)
def test_conflicts_are_looked_at_again_sooner_the_fresher_they_are(age, delay):
    assert reconcile.conflict_recheck_delay(age) == delay
