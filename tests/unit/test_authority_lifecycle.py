"""What certsmith does when authorities, their CA Secrets or its namespace go away or change:
the I/O modules driven against an in-memory apiserver."""

from __future__ import annotations

import asyncio
import base64
import copy
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest

from certsmith import __main__ as entry
from certsmith import authorities, authority, leadership, rotation, webhooks
from certsmith.config import Config
from certsmith.kube import ApiError
from certsmith.pki import ca, inspect
from certsmith.reconcile import Reconciler
from certsmith.runtime import Runtime
from certsmith.scheduler import Scheduler
from tests.unit.test_supplied_roots import make_root

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NS = "certsmith"
CONFIG = Config(namespace=NS)


class FakeKube:
    """The calls these modules make, on dictionaries; resourceVersions count writes."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.authorities: dict[str, dict[str, Any]] = {}
        self.certificates: list[dict[str, Any]] = []
        self.namespaces: dict[str, dict[str, Any]] = {NS: {"metadata": {"name": NS}}}
        self.crds = {"certificates.certsmith.dev", "certificateauthorities.certsmith.dev"}
        self.events: list[tuple[str, str, str]] = []
        self.version = 0

    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        return stored

    def get_secret(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.secrets.get((namespace, name)))

    def create_secret(self, *, body: dict[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.secrets:
            raise ApiError(409, "AlreadyExists", "exists")
        self.secrets[key] = self._stamp(body)
        return copy.deepcopy(self.secrets[key])

    def replace_secret(self, *, body: dict[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        self.secrets[key] = self._stamp(body)
        return copy.deepcopy(self.secrets[key])

    def delete_secret(self, *, namespace: str, name: str) -> None:
        self.secrets.pop((namespace, name), None)

    def list_secrets(self, *, label_selector: str) -> list[dict[str, Any]]:
        return []

    def list_namespaces(self) -> list[dict[str, Any]]:
        return list(self.namespaces.values())

    def get_namespace(self, *, name: str) -> dict[str, Any] | None:
        return self.namespaces.get(name)

    def get_crd(self, *, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name}} if name in self.crds else None

    def list_configmaps(self, *, label_selector: str) -> list[dict[str, Any]]:
        return []

    def put_configmap(self, *, body: dict[str, Any]) -> dict[str, Any]:
        return self._stamp(body)

    def get_authority(self, *, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.authorities.get(name))

    def create_authority(self, *, body: dict[str, Any]) -> dict[str, Any]:
        self.authorities[body["metadata"]["name"]] = self._stamp(body)
        return copy.deepcopy(self.authorities[body["metadata"]["name"]])

    def patch_authority_status(self, *, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.authorities[name].setdefault("status", {}).update(status)
        return copy.deepcopy(self.authorities[name])

    def list_certificates(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.certificates)

    def post_event(self, *, involved: dict[str, Any], event_type: str, reason: str, **kw) -> None:
        self.events.append((involved["metadata"]["name"], event_type, reason))


def add_authority(kube: FakeKube, name: str, **spec: Any) -> dict[str, Any]:
    return kube.create_authority(
        body={
            "apiVersion": "certsmith.dev/v1alpha1",
            "kind": "CertificateAuthority",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def supply_root(kube: FakeKube, secret: str, pair: ca.CAKeyPair) -> None:
    kube.secrets[(NS, secret)] = authority.key_pair_secret(
        authority="user", role="root", name=secret, namespace=NS, pair=pair
    )


def make_runtime(kube: FakeKube) -> Runtime:
    registry = authorities.AuthorityRegistry()

    async def nothing(_: Any) -> None:
        return None

    runtime = Runtime(
        config=CONFIG,
        kube=kube,  # type: ignore[arg-type]
        registry=registry,
        reconciler=Reconciler(
            kube=kube,  # type: ignore[arg-type]
            config=CONFIG,
            authorities=registry,
            clock=lambda: NOW,
            namespace_labels=lambda _: {},
        ),
        scheduler=Scheduler(clock=lambda: NOW, action=nothing, concurrency=1),
        executor=ThreadPoolExecutor(max_workers=1),
        clock=lambda: NOW,
    )
    runtime.leading = True
    return runtime


def ready(status: dict[str, Any] | None) -> tuple[str, str, str]:
    assert status is not None
    (condition,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    return condition["status"], condition["reason"], condition["message"]


def step(runtime: Runtime, kube: FakeKube, name: str) -> dict[str, Any] | None:
    status = runtime.load_authority(kube.authorities[name])
    if status is not None:
        kube.patch_authority_status(name=name, status=status)
    return status


# --- deletion -------------------------------------------------------------------------


def test_a_deleted_authority_stops_signing_and_its_certificates_are_told() -> None:
    kube = FakeKube()
    runtime = make_runtime(kube)
    add_authority(kube, "team")
    assert ready(step(runtime, kube, "team"))[0] == "True"
    assert runtime.registry.get("team") is not None
    kube.certificates = [
        {"metadata": {"namespace": "t1", "name": "web"}, "spec": {"issuerRef": {"name": "team"}}},
        {"metadata": {"namespace": "t1", "name": "other"}, "spec": {}},
    ]

    del kube.authorities["team"]
    runtime.authority_deleted("team")

    assert runtime.registry.get("team") is None
    assert runtime.registry.why_unavailable("team", kube) == (  # type: ignore[arg-type]
        "CertificateAuthority team does not exist"
    )
    assert runtime.scheduler.when(("Certificate", "t1", "web")) == NOW
    outcome = runtime.reconciler.reconcile(
        {
            "metadata": {"namespace": "t1", "name": "web", "generation": 1},
            "spec": {
                "secretName": "web-tls",
                "dnsNames": ["web.t1.svc"],
                "issuerRef": {"name": "team"},
            },
        }
    )
    assert ready(outcome.status) == (
        "False",
        "IssuerNotReady",
        "CertificateAuthority team does not exist",
    )
    assert runtime.scheduler.when(("Certificate", "t1", "other")) is None
    # Its keys stay: created again, it resumes with the same root.
    assert (NS, "team-root") in kube.secrets and (NS, "team-intermediate") in kube.secrets
    add_authority(kube, "team")
    again = step(runtime, kube, "team")
    assert ready(again)[0] == "True"
    assert runtime.registry.get("team") is not None
    assert again is not None and again["trustedRoots"] == [
        inspect.fingerprint_sha256(
            authority.parse_key_pair(kube.secrets[(NS, "team-root")]).certificate
        )
    ]


def test_a_step_racing_a_deletion_never_puts_the_authority_back() -> None:
    kube = FakeKube()
    runtime = make_runtime(kube)
    body = add_authority(kube, "team")
    step(runtime, kube, "team")
    del kube.authorities["team"]
    assert runtime.load_authority(body) is None  # the event's body, read fresh: gone
    assert runtime.registry.get("team") is None


def test_the_default_authority_is_recreated_with_the_same_keys() -> None:
    kube = FakeKube()
    runtime = make_runtime(kube)
    add_authority(kube, "cluster-root")
    before = step(runtime, kube, "cluster-root")
    assert before is not None

    del kube.authorities["cluster-root"]
    runtime.authority_deleted("cluster-root")

    assert "cluster-root" in kube.authorities
    after = kube.authorities["cluster-root"]["status"]
    assert after["trustedRoots"] == before["trustedRoots"]
    assert after["intermediate"]["fingerprint"] == before["intermediate"]["fingerprint"]
    assert runtime.registry.get("cluster-root") is not None


def test_a_name_never_created_does_not_exist_until_it_is() -> None:
    kube = FakeKube()
    registry = authorities.AuthorityRegistry()
    message = "CertificateAuthority nope does not exist"
    assert registry.why_unavailable("nope", kube) == message  # type: ignore[arg-type]
    add_authority(kube, "late")
    assert registry.why_unavailable("late", kube) == (  # type: ignore[arg-type]
        "CertificateAuthority late is not ready"
    )
    registry.remove("late", "CertificateAuthority late is not ready: broken")
    assert registry.names() == ["late"]  # failing ones are re-checked, missing ones are not
    registry.keep_only("cluster-root")
    assert registry.names() == []


def test_a_new_term_forgets_what_an_earlier_term_cached() -> None:
    kube = FakeKube()
    runtime = make_runtime(kube)
    add_authority(kube, "cluster-root")
    add_authority(kube, "team")
    step(runtime, kube, "cluster-root")
    step(runtime, kube, "team")
    runtime.namespaces["t1"] = {"team": "payments"}
    runtime.new_term()
    assert runtime.registry.get("team") is None
    assert runtime.registry.get("cluster-root") is not None
    assert runtime.namespaces == {}


def test_a_deleted_namespace_leaves_nothing_cached() -> None:
    runtime = make_runtime(FakeKube())
    runtime.namespaces.update({"t1": {"a": "b"}, "t2": {}})
    runtime.authorities.own_bundle_versions.update({("t1", "certsmith-ca"): "5", ("t2", "x"): "6"})
    runtime.namespace_deleted("t1")
    assert runtime.namespaces == {"t2": {}}
    assert runtime.authorities.own_bundle_versions == {("t2", "x"): "6"}


# --- CA Secrets that vanish or change ---------------------------------------------------


def test_a_deleted_or_edited_intermediate_is_replaced_under_the_same_root() -> None:
    kube = FakeKube()
    runtime = make_runtime(kube)
    add_authority(kube, "team")
    first = step(runtime, kube, "team")
    assert first is not None
    for damage in ("delete", "garble"):
        if damage == "delete":
            del kube.secrets[(NS, "team-intermediate")]
        else:
            kube.secrets[(NS, "team-intermediate")]["data"]["tls.key"] = base64.b64encode(
                b"junk"
            ).decode()
        status = step(runtime, kube, "team")
        assert ready(status)[0] == "True"
        assert status is not None and status["trustedRoots"] == first["trustedRoots"]
        material = runtime.registry.get("team")
        assert material is not None
        pair = authority.parse_key_pair(kube.secrets[(NS, "team-intermediate")])
        assert material.intermediate.certificate == pair.certificate
        assert inspect.issued_by(pair.certificate, material.root.certificate)


def test_a_vanished_root_stops_the_authority_instead_of_a_new_root_appearing() -> None:
    kube = FakeKube()
    runtime = make_runtime(kube)
    add_authority(kube, "team")
    step(runtime, kube, "team")
    saved = kube.secrets.pop((NS, "team-root"))

    status = step(runtime, kube, "team")

    assert ready(status) == (
        "False",
        "RootMissing",
        "Secret certsmith/team-root holding the root this authority trusts is gone: restore "
        "it from a backup; to start over with a new root, delete and recreate the "
        "CertificateAuthority",
    )
    assert (NS, "team-root") not in kube.secrets  # no new root generated
    assert runtime.registry.get("team") is None
    assert runtime.registry.why_unavailable("team", kube).startswith(  # type: ignore[arg-type]
        "CertificateAuthority team is not ready: Secret certsmith/team-root holding the root"
    )
    assert kube.events == [("team", "Warning", "RootMissing")]
    step(runtime, kube, "team")
    assert len(kube.events) == 1  # said once, not at every retry

    kube.secrets[(NS, "team-root")] = saved
    assert ready(step(runtime, kube, "team"))[0] == "True"


def test_a_root_secret_holding_another_root_is_refused() -> None:
    kube = FakeKube()
    runtime = make_runtime(kube)
    add_authority(kube, "team")
    step(runtime, kube, "team")
    other = ca.build_root(common_name="other", now=NOW, lifetime=timedelta(days=3650))
    kube.secrets[(NS, "team-root")] = authority.key_pair_secret(
        authority="team", role="root", name="team-root", namespace=NS, pair=other
    )
    status, reason, message = ready(step(runtime, kube, "team"))
    assert (status, reason) == ("False", "RootChanged")
    assert message.startswith(
        "Secret certsmith/team-root holds a root this authority does not trust (sha256 "
        f"{inspect.fingerprint_sha256(other.certificate)})"
    )


def test_the_new_root_of_a_rotation_under_way_must_stay() -> None:
    kube = FakeKube()
    runtime = make_runtime(kube)
    add_authority(kube, "team")
    step(runtime, kube, "team")
    kube.authorities["team"]["metadata"]["annotations"] = {rotation.ROTATE_ANNOTATION: "now"}
    status = step(runtime, kube, "team")
    assert status is not None and status["phase"] == "Distributing"
    del kube.secrets[(NS, "team-root-next")]
    assert ready(step(runtime, kube, "team"))[:2] == ("False", "RootMissing")


# --- supplied roots ---------------------------------------------------------------------


def test_a_supplied_root_with_pathlen_0_is_refused_with_an_event() -> None:
    kube = FakeKube()
    runtime = make_runtime(kube)
    supply_root(kube, "my-root", make_root(path_length=0))
    add_authority(kube, "team", rootSecretRef={"name": "my-root"})
    status, reason, message = ready(step(runtime, kube, "team"))
    assert (status, reason) == ("False", "InvalidRoot")
    assert message.startswith(
        "spec.rootSecretRef: Secret certsmith/my-root cannot be a root: basicConstraints "
        "pathlen:0 allows no CA below the root"
    )
    assert kube.events == [("team", "Warning", "InvalidRoot")]
    assert (NS, "team-root") not in kube.secrets and (NS, "team-intermediate") not in kube.secrets


def test_a_supplied_root_is_never_rotated_to_a_generated_one() -> None:
    kube = FakeKube()
    runtime = make_runtime(kube)
    good = make_root()
    supply_root(kube, "my-root", good)
    add_authority(kube, "team", rootSecretRef={"name": "my-root"})
    assert ready(step(runtime, kube, "team"))[0] == "True"
    kube.authorities["team"]["metadata"]["annotations"] = {rotation.ROTATE_ANNOTATION: "r1"}

    status = step(runtime, kube, "team")

    assert status is not None and status["phase"] == "Ready"
    assert status["rotation"]["lastRequest"] == "r1"
    assert status["trustedRoots"] == [inspect.fingerprint_sha256(good.certificate)]
    assert (NS, "team-root-next") not in kube.secrets
    assert kube.events == [("team", "Warning", "RotationRefused")]
    step(runtime, kube, "team")
    assert len(kube.events) == 1  # the same request is answered once


# --- the operator's namespace and CRDs --------------------------------------------------


def test_missing_namespace_and_crds_are_named_with_the_fix() -> None:
    kube = FakeKube()
    assert entry.missing_prerequisites(kube, CONFIG) == []  # type: ignore[arg-type]
    del kube.namespaces[NS]
    kube.crds.discard("certificates.certsmith.dev")
    assert entry.missing_prerequisites(kube, CONFIG) == [  # type: ignore[arg-type]
        "namespace certsmith (CERTSMITH_NAMESPACE) does not exist: certsmith keeps its CA keys "
        "and its leader Lease there. Create it with `kubectl create namespace certsmith`, or "
        "install everything with `kubectl apply -k manifests/`; or set CERTSMITH_NAMESPACE to "
        "the namespace certsmith runs in",
        "CustomResourceDefinition certificates.certsmith.dev not installed: apply them with "
        "`kubectl apply -f crds/`",
    ]


class LeaseKube:
    """A Lease API whose namespace was deleted: no Lease, and creating one answers `error`."""

    def __init__(self, error: ApiError) -> None:
        self.error = error

    def with_timeout(self, timeout: Any) -> LeaseKube:
        return self

    def get_lease(self, **_: Any) -> None:
        return None

    def create_lease(self, **_: Any) -> None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        ApiError(404, "NotFound", 'namespaces "certsmith" not found'),
        ApiError(
            403,
            "Forbidden",
            'leases "certsmith-leader" is forbidden: unable to create new content in namespace '
            "certsmith because it is being terminated",
        ),
    ],
)
def test_the_campaign_ends_when_the_namespace_is_gone(error: ApiError) -> None:
    async def never(_: asyncio.Event) -> None:
        raise AssertionError("must not lead")

    elector = leadership.Elector(
        kube=LeaseKube(error),  # type: ignore[arg-type]
        namespace=NS,
        identity="a",
        clock=lambda: NOW,
        lead=never,
    )
    with pytest.raises(leadership.NamespaceGone, match="namespace certsmith"):
        asyncio.run(asyncio.wait_for(elector.run(), timeout=5))


def test_other_lease_failures_keep_the_campaign_going() -> None:
    elector = leadership.Elector(
        kube=LeaseKube(ApiError(500, "InternalError", "etcd")),  # type: ignore[arg-type]
        namespace=NS,
        identity="a",
        clock=lambda: NOW,
        lead=lambda _: asyncio.sleep(0),
    )
    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(elector.run(), timeout=0.5))


def test_the_webhook_judges_a_namespace_by_its_labels_now_not_cached_ones() -> None:
    """A standby replica sees no namespace events: what it once read may be long gone (the
    namespace relabelled, or deleted and created again without the label of a grant)."""
    kube = FakeKube()
    add_authority(
        kube,
        "cluster-root",
        policy={
            "grants": [
                {
                    "namespaceSelector": {"matchLabels": {"team": "payments"}},
                    "dnsNames": ["*.payments.example.com"],
                }
            ]
        },
    )
    runtime = make_runtime(kube)
    runtime.namespaces["t1"] = {"team": "payments"}  # read while it still had the label
    kube.namespaces["t1"] = {"metadata": {"name": "t1", "labels": {}}}
    spec = {"secretName": "web-tls", "dnsNames": ["web.payments.example.com"]}

    with pytest.raises(kopf.AdmissionError) as refused:
        webhooks.validate_certificate(
            spec=spec, old=None, namespace="t1", memo=kopf.Memo(runtime=runtime)
        )
    assert refused.value.code == 403 and "spec.dnsNames[0]" in str(refused.value)

    kube.namespaces["t1"]["metadata"]["labels"] = {"team": "payments"}
    webhooks.validate_certificate(
        spec=spec, old=None, namespace="t1", memo=kopf.Memo(runtime=runtime)
    )
