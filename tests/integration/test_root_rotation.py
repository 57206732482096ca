"""Root rotation under load, killed once in every phase, with its ordering proven.

Two watches record every Secret and trust-bundle ConfigMap version (etcd's resourceVersion
orders them globally). The rotation is correct when no leaf chained to the new root before
every bundle trusted it, and the old root left no bundle while a leaf still chained to it.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from kubernetes import client, watch

from tests.integration import certs
from tests.integration.conftest import authority_ready
from tests.support import wait_for

pytestmark = pytest.mark.integration

COUNT, NAMESPACES = 200, 5
CA = ("certsmith.dev", "v1alpha1", "certificateauthorities", "cluster-root")


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def bundle_fingerprints(pem: str | bytes) -> frozenset[str]:
    data = pem.encode() if isinstance(pem, str) else pem
    return frozenset(fingerprint(c) for c in x509.load_pem_x509_certificates(data))


@dataclass
class History:
    """First resourceVersion at which each object reached a state."""

    old_root: x509.Certificate
    trusts_new: dict[str, int] = field(default_factory=dict)
    dropped_old: dict[str, int] = field(default_factory=dict)
    leaf_on_new: dict[str, int] = field(default_factory=dict)
    latest: dict[str, tuple[frozenset[str], bool | None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, key: str, rv: int, bundle: frozenset[str], leaf_new: bool | None) -> None:
        old = fingerprint(self.old_root)
        with self.lock:
            self.latest[key] = (bundle, leaf_new)
            if any(fp != old for fp in bundle):
                self.trusts_new.setdefault(key, rv)
            if key in self.trusts_new and old not in bundle:
                self.dropped_old.setdefault(key, rv)
            if leaf_new:
                self.leaf_on_new.setdefault(key, rv)

    def chains_to_new(self, intermediate: x509.Certificate) -> bool:
        try:
            intermediate.verify_directly_issued_by(self.old_root)
            return False
        except (ValueError, TypeError, InvalidSignature):
            return True


def watch_kind(list_fn, selector: str, rv: str, history: History, stop: threading.Event, kind: str):
    while not stop.is_set():
        try:
            for event in watch.Watch().stream(
                list_fn,
                label_selector=selector,
                resource_version=rv,
                timeout_seconds=5,
                allow_watch_bookmarks=False,
            ):
                obj = event["object"]
                rv = obj.metadata.resource_version
                if event["type"] == "DELETED" or obj.data is None:
                    continue
                key = f"{kind}/{obj.metadata.namespace}/{obj.metadata.name}"
                if kind == "secret":
                    chain = x509.load_pem_x509_certificates(base64.b64decode(obj.data["tls.crt"]))
                    bundle = bundle_fingerprints(base64.b64decode(obj.data["ca.crt"]))
                    history.record(key, int(rv), bundle, history.chains_to_new(chain[1]))
                else:
                    history.record(key, int(rv), bundle_fingerprints(obj.data["ca.crt"]), None)
        except client.ApiException as error:
            if error.status == 410:  # too old: the test would miss events, which must not happen
                raise
        except Exception:  # the apiserver closed the stream; resume from the last version
            time.sleep(0.1)


@pytest.fixture
def spread_namespaces(api_client) -> Iterator[list[str]]:
    core = client.CoreV1Api(api_client)
    names = [f"rot-{uuid.uuid4().hex[:6]}-{i}" for i in range(NAMESPACES)]
    for name in names:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield names
    for name in names:
        core.delete_namespace(name)


def test_root_rotation_is_ordered_and_survives_a_kill_in_every_phase(
    api_client, spread_namespaces, running_operator
):
    core = client.CoreV1Api(api_client)
    objects = client.CustomObjectsApi(api_client)
    for i in range(COUNT):
        ns = spread_namespaces[i % NAMESPACES]
        certs.create(api_client, ns, certs.certificate(f"c{i}", dnsNames=[f"c{i}.{ns}.svc"]))
    for i in range(COUNT):
        ns = spread_namespaces[i % NAMESPACES]
        wait_for(lambda n=f"c{i}", s=ns: certs.is_ready(api_client, s, n), timeout=60, what="Ready")

    old_root = x509.load_pem_x509_certificates(
        base64.b64decode(
            core.read_namespaced_secret("cluster-root-root", "certsmith").data["tls.crt"]
        )
    )[0]
    history = History(old_root=old_root)
    stop = threading.Event()
    start_rv = core.list_namespaced_secret("certsmith", limit=1).metadata.resource_version
    watchers = [
        threading.Thread(
            target=watch_kind,
            args=(
                core.list_secret_for_all_namespaces,
                "certsmith.dev/certificate",
                start_rv,
                history,
                stop,
                "secret",
            ),
            daemon=True,
        ),
        threading.Thread(
            target=watch_kind,
            args=(
                core.list_config_map_for_all_namespaces,
                "certsmith.dev/trust-bundle",
                start_rv,
                history,
                stop,
                "configmap",
            ),
            daemon=True,
        ),
    ]
    for thread in watchers:
        thread.start()

    objects.patch_cluster_custom_object(
        *CA,
        {
            "metadata": {
                "annotations": {"certsmith.dev/rotate-requested-at": datetime.now(UTC).isoformat()}
            },
            "spec": {"rotation": {"propagationDelay": "3s", "reissueRate": 100}},
        },
    )
    started = time.monotonic()
    killed_in: list[str] = []

    def phase() -> str:
        return (objects.get_cluster_custom_object(*CA).get("status") or {}).get("phase", "")

    seen_rotating = False

    def ready_after_a_kill_in_every_phase() -> bool:
        nonlocal seen_rotating
        current = phase()
        if current in ("Distributing", "Reissuing", "Retiring") and current not in killed_in:
            seen_rotating = True
            running_operator.kill()
            killed_in.append(current)
            running_operator.start()
        return seen_rotating and current == "Ready"

    with contextlib.suppress(AssertionError):  # the assertions below say what went wrong
        wait_for(
            ready_after_a_kill_in_every_phase,
            timeout=240,
            what="the rotation, killed in every phase",
            interval=0.2,
            retry_on=(),
        )
    duration = time.monotonic() - started
    assert phase() == "Ready", f"rotation stuck; operator log:\n{running_operator.log_tail()}"
    assert killed_in == ["Distributing", "Reissuing", "Retiring"]

    status = objects.get_cluster_custom_object(*CA)["status"]
    new_fp = status["rotation"]["newRootFingerprint"]
    assert status["trustedRoots"] == [new_fp]

    ours = {f"secret/{spread_namespaces[i % NAMESPACES]}/c{i}-tls" for i in range(COUNT)} | {
        f"configmap/{ns}/certsmith-ca" for ns in spread_namespaces
    }

    def converged() -> bool:
        with history.lock:
            return all(
                key in history.latest
                and history.latest[key][0] == frozenset({new_fp})
                and history.latest[key][1] is not False
                for key in ours
            )

    wait_for(converged, timeout=60, what="every leaf and bundle on the new root only")
    stop.set()
    leaves = [k for k in ours if k.startswith("secret/")]
    bundles = list(ours)
    last_bundle_trusting_new = max(history.trusts_new[k] for k in bundles)
    first_leaf_on_new = min(history.leaf_on_new[k] for k in leaves)
    last_leaf_moved = max(history.leaf_on_new[k] for k in leaves)
    first_old_dropped = min(history.dropped_old[k] for k in bundles)
    print(
        f"\nroot rotation of {COUNT} Certificates in {NAMESPACES} namespaces: {duration:.1f} s "
        f"with the operator SIGKILLed in {', '.join(killed_in)}"
    )
    assert last_bundle_trusting_new < first_leaf_on_new, "a leaf chained to the new root early"
    assert last_leaf_moved < first_old_dropped, "the old root left a bundle too early"


# --- an authority of its own: its rate, its bundles, its blockers -------------------------

TEAM_BUNDLE = "team-bundle"
SELECT_LABEL = "certsmith.dev/test-rotation"
AUTHORITIES = ("certsmith.dev", "v1alpha1", "certificateauthorities")


@dataclass
class Team:
    """A CertificateAuthority of the test's own (so that only its Certificates move) with a
    trust bundle in the namespaces labelled SELECT_LABEL=<name>."""

    api_client: client.ApiClient
    name: str
    namespaces: list[str] = field(default_factory=list)

    @property
    def objects(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    def namespace(self, *, selected: bool = True) -> str:
        name = f"{self.name}-{len(self.namespaces)}"
        labels = {SELECT_LABEL: self.name} if selected else {}
        self.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
        )
        self.namespaces.append(name)
        return name

    def select(self, namespace: str) -> None:
        self.core.patch_namespace(namespace, {"metadata": {"labels": {SELECT_LABEL: self.name}}})

    def status(self) -> dict:
        return self.objects.get_cluster_custom_object(*AUTHORITIES, self.name).get("status") or {}

    def condition(self, kind: str) -> dict | None:
        return next((c for c in self.status().get("conditions", []) if c["type"] == kind), None)

    def certificate(self, namespace: str, name: str, **spec) -> None:
        body = certs.certificate(
            name, dnsNames=[f"{name}.{namespace}.svc"], issuerRef={"name": self.name}, **spec
        )
        certs.create(self.api_client, namespace, body)

    def rotate(self, **rotation_spec) -> str:
        """Request a rotation (with these spec.rotation settings); the request's value."""
        request = f"{datetime.now(UTC).isoformat()}-{uuid.uuid4().hex[:4]}"
        self.objects.patch_cluster_custom_object(
            *AUTHORITIES,
            self.name,
            {
                "metadata": {"annotations": {"certsmith.dev/rotate-requested-at": request}},
                "spec": {"rotation": rotation_spec},
            },
        )
        return request

    def rotated(self, request: str) -> dict | None:
        """The status once the rotation asked for by `request` has finished."""
        status = self.status()
        rotation = status.get("rotation") or {}
        done = (
            rotation.get("lastRequest") == request
            and status.get("phase") == "Ready"
            and status.get("trustedRoots") == [rotation.get("newRootFingerprint")]
        )
        return status if done else None

    def bundle(self, namespace: str) -> client.V1ConfigMap | None:
        try:
            return self.core.read_namespaced_config_map(TEAM_BUNDLE, namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def warnings(self, reason: str) -> list[client.CoreV1Event]:
        return [
            event
            for event in self.core.list_event_for_all_namespaces().items
            if event.involved_object.kind == "CertificateAuthority"
            and event.involved_object.name == self.name
            and event.reason == reason
            and event.type == "Warning"
        ]


@pytest.fixture
def team(api_client, running_operator) -> Iterator[Team]:
    name = f"team-{uuid.uuid4().hex[:6]}"
    made = Team(api_client, name)
    certs.create_authority(
        api_client,
        name,
        trustBundle={
            "configMapName": TEAM_BUNDLE,
            "namespaceSelector": {"matchLabels": {SELECT_LABEL: name}},
        },
    )
    wait_for(lambda: authority_ready(api_client, name), timeout=30, what=f"{name} Ready")
    yield made
    for namespace in made.namespaces:
        made.core.delete_namespace(namespace)
    made.objects.delete_cluster_custom_object(*AUTHORITIES, name)


class SerialRecorder:
    """Watches the certsmith Secrets of a namespace; records when each serial first changed."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.core, self.namespace = core, namespace
        listing = core.list_namespaced_secret(namespace, label_selector="certsmith.dev/certificate")
        self.initial = {
            s.metadata.name: s.metadata.annotations["certsmith.dev/serial-number"]
            for s in listing.items
        }
        self.changed: dict[str, float] = {}
        self._rv = listing.metadata.resource_version
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    self.core.list_namespaced_secret,
                    self.namespace,
                    label_selector="certsmith.dev/certificate",
                    resource_version=self._rv,
                    timeout_seconds=5,
                ):
                    seen = time.monotonic()
                    secret = event["object"]
                    self._rv = secret.metadata.resource_version
                    serial = (secret.metadata.annotations or {}).get("certsmith.dev/serial-number")
                    name = secret.metadata.name
                    if name in self.initial and serial != self.initial[name]:
                        self.changed.setdefault(name, seen)
            except Exception:  # the stream ended: resume from the last version
                time.sleep(0.1)

    def stop(self) -> list[float]:
        self._stop.set()
        return sorted(self.changed.values())


# Decision to watch event: one ECDSA key, one PUT and the watch delivery, ≤ 0.1 s when idle;
# 0.5 s leaves room for a 2-core machine running other tests at the same time.
WRITE_JITTER = 0.5


def assert_rate_at_most(times: list[float], rate: float) -> None:
    """The pacer grants at most rate·W + 2 re-issues in any W seconds (unit-tested, a slot
    taken up to one interval late included); the Secret writes land up to WRITE_JITTER after
    the grant. So for the i-th and j-th writes: t_j - t_i ≥ (j - i - 1)/rate - WRITE_JITTER."""
    for i, first in enumerate(times):
        for j in range(i + 1, len(times)):
            assert times[j] - first >= (j - i - 1) / rate - WRITE_JITTER, (
                f"writes {i}..{j} came {times[j] - first:.2f} s apart, faster than {rate}/s: "
                f"{[round(t - times[0], 2) for t in times]}"
            )


def test_reissue_rate_paces_a_rotation_and_a_change_applies_at_once(team):
    for bad in (0, 1001, "fast"):
        with pytest.raises(client.ApiException) as refused:
            team.objects.patch_cluster_custom_object(
                *AUTHORITIES, team.name, {"spec": {"rotation": {"reissueRate": bad}}}
            )
        assert refused.value.status == 422 and "spec.rotation.reissueRate" in refused.value.body
    namespace = team.namespace()
    count = 10
    for i in range(count):
        team.certificate(namespace, f"c{i}")
    for i in range(count):
        wait_for(
            lambda n=f"c{i}": certs.is_ready(team.api_client, namespace, n),
            timeout=60,
            what="Ready",
        )

    # reissueRate 2: ten leaves take at least 4.5 s (20/s, the old fixed rate, takes 0.45 s).
    recorder = SerialRecorder(team.core, namespace)
    request = team.rotate(propagationDelay="2s", reissueRate=2)
    wait_for(lambda: team.rotated(request), timeout=90, what="rotation at 2/s finished")
    times = recorder.stop()
    assert len(times) == count, f"re-issued {len(times)} of {count}"
    span = times[-1] - times[0]
    print(
        f"\nreissueRate 2: {count} leaves re-issued over {span:.2f} s "
        f"({(count - 1) / span:.2f}/s between the first and the last)"
    )
    assert_rate_at_most(times, 2)

    # A change applies at once, mid-rotation: from 1/s to 20/s after two re-issues.
    recorder = SerialRecorder(team.core, namespace)
    request = team.rotate(propagationDelay="2s", reissueRate=1)
    wait_for(lambda: len(recorder.changed) >= 2, timeout=60, what="two re-issues at 1/s")
    team.objects.patch_cluster_custom_object(
        *AUTHORITIES, team.name, {"spec": {"rotation": {"reissueRate": 20}}}
    )
    changed_at = time.monotonic()
    wait_for(lambda: team.rotated(request), timeout=60, what="rotation at 20/s finished")
    times = recorder.stop()
    assert len(times) == count
    assert_rate_at_most(times[:2], 1)
    after = times[-1] - changed_at
    print(f"reissueRate 1 → 20 after two re-issues: the other {count - 2} took {after:.2f} s")
    # At the old 1/s the remaining leaves would take ≥ 7 s; at 20/s 0.4 s plus the update.
    assert after < 4, f"the last re-issue came {after:.2f} s after the change to 20/s"


def test_rotation_ignores_left_behind_secrets_repairs_bundles_and_names_what_blocks_it(team):
    """Issue #13 item 10: Secrets left behind and a hand-edited bundle must not stall a
    rotation; what really blocks it (a bundle ConfigMap certsmith did not create, one it
    cannot write) is named in status, a condition and a Warning event, and the rotation
    finishes once they are gone."""
    core = team.core
    home, frozen, foreign_ns = team.namespace(), team.namespace(), team.namespace(selected=False)
    for i in range(3):
        team.certificate(home, f"keep{i}")
    team.certificate(home, "gone")
    team.certificate(home, "moved", secretName="moved-old")
    for name in ("keep0", "keep1", "keep2", "gone", "moved"):
        wait_for(lambda n=name: certs.is_ready(team.api_client, home, n), timeout=30, what="Ready")
    # Left behind: the Secret of a deleted Certificate, and the old Secret after a rename.
    team.objects.delete_namespaced_custom_object(
        certs.GROUP, certs.VERSION, home, certs.PLURAL, "gone"
    )
    certs.patch_spec(team.api_client, home, "moved", {"secretName": "moved-new"})
    wait_for(
        lambda: certs.secret(team.api_client, home, "moved-new"),
        timeout=30,
        what="moved-new written",
    )
    wait_for(lambda: certs.is_ready(team.api_client, home, "moved"), timeout=30, what="Ready")
    left_behind = {
        name: certs.secret(team.api_client, home, name).metadata.resource_version
        for name in ("gone-tls", "moved-old")
    }

    # The bundle's label removed and its data edited by hand: put back.
    expected = certs.secret_bytes(certs.secret(team.api_client, home, "keep0-tls"), "ca.crt")
    wait_for(lambda: team.bundle(home), timeout=15, what="team bundle written")
    wait_for(lambda: team.bundle(frozen), timeout=15, what="team bundle written")
    for name, authority in ((TEAM_BUNDLE, team.name), ("certsmith-ca", "cluster-root")):
        core.patch_namespaced_config_map(
            name,
            home,
            {
                "metadata": {"labels": {"certsmith.dev/trust-bundle": None}},
                "data": {"ca.crt": "edited by hand"},
            },
        )

        def repaired(name=name, authority=authority):
            found = core.read_namespaced_config_map(name, home)
            return (found.metadata.labels or {}).get(
                "certsmith.dev/trust-bundle"
            ) == authority and found.data["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")

        wait_for(repaired, timeout=15, what=f"{name} repaired")
    assert team.bundle(home).data["ca.crt"] == expected.decode()

    # Real blockers: a bundle certsmith cannot write, and one it did not create.
    core.patch_namespaced_config_map(TEAM_BUNDLE, frozen, {"immutable": True})
    core.create_namespaced_config_map(
        foreign_ns,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=TEAM_BUNDLE), data={"ca.crt": "someone else's"}
        ),
    )
    team.select(foreign_ns)
    conflict = wait_for(
        lambda: (c := team.condition("BundlesSynced")) and c["status"] == "False" and c,
        timeout=20,
        what="BundlesSynced=False",
    )
    assert conflict["reason"] == "BundleConflict"
    assert (
        f"{foreign_ns}/{TEAM_BUNDLE}: ConfigMap was not created by certsmith" in conflict["message"]
    )
    wait_for(lambda: team.warnings("BundleConflict"), timeout=10, what="BundleConflict event")

    request = team.rotate(propagationDelay="3s", reissueRate=50)
    started = time.monotonic()

    def blocked():
        rotation = team.status().get("rotation") or {}
        return rotation.get("lastRequest") == request and rotation.get("blockers")

    blockers = wait_for(blocked, timeout=60, what="status.rotation.blockers")
    print(f"\nblockers named {time.monotonic() - started:.1f} s after the request: {blockers}")
    status = team.status()
    assert status["phase"] == "Distributing"
    assert len(blockers) == 2, blockers  # the Secrets left behind are not among them
    by_name = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in blockers}
    assert by_name[f"{foreign_ns}/{TEAM_BUNDLE}"].startswith("ConfigMap was not created")
    assert by_name[f"{frozen}/{TEAM_BUNDLE}"].startswith("ConfigMap could not be written")
    assert "immutable" in by_name[f"{frozen}/{TEAM_BUNDLE}"]
    assert status["rotation"]["totalLeaves"] == 4  # keep0..2 and moved, not the two left
    condition = team.condition("RotationBlocked")
    assert condition["status"] == "True" and f"{foreign_ns}/{TEAM_BUNDLE}" in condition["message"]
    wait_for(lambda: team.warnings("RotationBlocked"), timeout=10, what="RotationBlocked event")
    foreign = core.read_namespaced_config_map(TEAM_BUNDLE, foreign_ns)
    assert foreign.data == {"ca.crt": "someone else's"} and not foreign.metadata.labels

    # The blockers go: the rotation finishes.
    core.delete_namespaced_config_map(TEAM_BUNDLE, foreign_ns)
    core.delete_namespaced_config_map(TEAM_BUNDLE, frozen)
    unblocked = time.monotonic()
    status = wait_for(lambda: team.rotated(request), timeout=60, what="rotation Ready")
    print(f"rotation Ready {time.monotonic() - unblocked:.1f} s after the blockers went")
    assert status["rotation"].get("blockers") is None
    assert team.condition("RotationBlocked")["status"] == "False"
    assert team.condition("BundlesSynced")["status"] == "True"
    new_root = status["rotation"]["newRootFingerprint"]
    for namespace in (home, frozen, foreign_ns):
        found = wait_for(lambda n=namespace: team.bundle(n), timeout=15, what="bundle")
        assert bundle_fingerprints(found.data["ca.crt"]) == {new_root}
        assert found.metadata.labels["certsmith.dev/trust-bundle"] == team.name
    for name in ("keep0", "keep1", "keep2", "moved"):
        secret = certs.secret(
            team.api_client, home, f"{name}-tls" if name != "moved" else "moved-new"
        )
        assert bundle_fingerprints(certs.secret_bytes(secret, "ca.crt")) == {new_root}
    # Left behind means left alone: certsmith no longer writes those Secrets.
    for name, version in left_behind.items():
        assert certs.secret(team.api_client, home, name).metadata.resource_version == version
