"""CA Secrets certsmith cannot write: the authority is refused with the apiserver's answer,
an immutable intermediate is replaced by delete and create, and a supplied root may not be
another authority's Secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certsmith import authorities, authority, rotation
from certsmith.config import Config
from certsmith.kube import ApiError
from certsmith.pki import ca

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
IMMUTABLE = ApiError(422, "Invalid", "Secret team-intermediate is invalid: immutable: Forbidden")


class Secrets:
    """The Secret calls authorities.py makes, on a dict; `refuse` answers writes with an error."""

    def __init__(self, refuse: ApiError | None = None) -> None:
        self.store: dict[str, dict[str, Any]] = {}
        self.refuse = refuse
        self.calls: list[str] = []

    def get_secret(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get(name)

    def create_secret(self, *, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"create {body['metadata']['name']}")
        if self.refuse is not None:
            raise self.refuse
        stored = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
        self.store[body["metadata"]["name"]] = stored
        return stored

    def replace_secret(self, *, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"replace {body['metadata']['name']}")
        if self.store[body["metadata"]["name"]].get("immutable"):
            raise IMMUTABLE
        if self.refuse is not None:
            raise self.refuse
        self.store[body["metadata"]["name"]] = body
        return body

    def delete_secret(self, *, namespace: str, name: str) -> None:
        self.calls.append(f"delete {name}")
        self.store.pop(name, None)


def stored_pair(kube: Secrets, role: str, name: str, pair: ca.CAKeyPair) -> None:
    body = authority.key_pair_secret(
        authority="team", role=role, name=name, namespace="certsmith", pair=pair
    )
    body["metadata"]["resourceVersion"] = "1"
    kube.store[name] = body


def load(kube: Secrets, spec: dict[str, Any] | None = None) -> authority.AuthorityMaterial:
    body = {"metadata": {"name": "team"}, "spec": spec or {}, "status": {}}
    state = rotation.RotationState(rotation.Phase.READY)
    return authorities.ensure_material(kube, Config(), body, NOW, state)  # type: ignore[arg-type]


@pytest.fixture
def team_root() -> ca.CAKeyPair:
    return ca.build_root(
        common_name="team", now=NOW - timedelta(days=1), lifetime=timedelta(days=9)
    )


def test_an_immutable_intermediate_due_is_deleted_and_created_again(team_root) -> None:
    kube = Secrets()
    stored_pair(kube, "root", "team-root", team_root)
    old = ca.build_intermediate(
        issuer=team_root,
        common_name="old",
        now=NOW - timedelta(hours=23),
        lifetime=timedelta(hours=24),
    )
    stored_pair(kube, "intermediate", "team-intermediate", old)
    kube.store["team-intermediate"]["immutable"] = True

    material = load(kube)

    assert material.intermediate.certificate != old.certificate
    assert kube.calls == ["delete team-intermediate", "create team-intermediate"]


def test_a_ca_secret_the_apiserver_refuses_stops_the_authority_with_its_answer(team_root) -> None:
    kube = Secrets(refuse=ApiError(403, "Forbidden", "secrets is forbidden: quota exceeded"))
    stored_pair(kube, "root", "team-root", team_root)
    with pytest.raises(authorities.AuthorityNotReady) as refused:
        load(kube)
    assert refused.value.reason == "CASecretWriteFailed"
    assert str(refused.value) == (
        "Secret certsmith/team-intermediate could not be written: "
        "403 Forbidden: secrets is forbidden: quota exceeded"
    )


def test_an_unavailable_apiserver_is_retried_not_reported(team_root) -> None:
    kube = Secrets(refuse=ApiError(503, "ServiceUnavailable", "etcd leader changed"))
    stored_pair(kube, "root", "team-root", team_root)
    with pytest.raises(ApiError):
        load(kube)


def test_a_supplied_root_may_not_be_a_certsmith_ca_secret(team_root) -> None:
    kube = Secrets()
    stored_pair(kube, "root", "team-root", team_root)
    kube.store["team-root"]["metadata"]["labels"] = {}  # annotations alone still mark it
    with pytest.raises(authorities.AuthorityNotReady) as refused:
        load(kube, {"rootSecretRef": {"name": "team-root"}})
    assert refused.value.reason == "CASecretConflict"
    assert str(refused.value).startswith(
        "spec.rootSecretRef: Secret certsmith/team-root is the root of CertificateAuthority "
        "team, created by certsmith"
    )
