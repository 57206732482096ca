"""Root rotation under load, killed once in every phase, with its ordering proven.

Two watches record every Secret and trust-bundle ConfigMap version (etcd's resourceVersion
orders them globally). The rotation is correct when no leaf chained to the new root before
every bundle trusted it, and the old root left no bundle while a leaf still chained to it.
"""

from __future__ import annotations

import base64
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

    deadline = time.monotonic() + 240
    seen_rotating = False
    while time.monotonic() < deadline:
        current = phase()
        if current in ("Distributing", "Reissuing", "Retiring") and current not in killed_in:
            seen_rotating = True
            running_operator.kill()
            killed_in.append(current)
            running_operator.start()
        if seen_rotating and current == "Ready":
            break
        time.sleep(0.2)
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
