"""Issuance survives SIGKILL at any moment and an apiserver restart, checked by a watcher.

Certificates are created at a steady pace in a few namespaces while the operator process
is SIGKILLed at random moments (during start-up, resume, key generation, between the
Secret write and the status write …) and restarted; half-way through, kube-apiserver is
stopped and started again. A watcher sees every Secret revision and every Ready claim
and holds the operator to what users rely on:

- in the end every Certificate is Ready and its Secret holds the serial its status names;
- no Secret ever holds a key that does not match its certificate, or a chain that does
  not lead to its ca.crt;
- no revision of a Secret is issued twice (one serial per `certsmith.dev/revision`);
- whenever a Certificate is seen Ready=True with serial S, its Secret holds a valid S.

Sizes: CERTSMITH_CHAOS_COUNT (default 1000), CERTSMITH_CHAOS_KILLS (default 20),
CERTSMITH_CHAOS_SEED (default 9; the kill moments and key types derive from it).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import urllib3
from kubernetes import client

from tests import builders
from tests.chaos.cluster import (
    GROUP,
    VERSION,
    ApiStatus,
    Observer,
    RawApi,
    control_plane_pids,
    judge_secret,
    ready_condition,
    restart_apiserver,
)
from tests.integration.conftest import OperatorProcess
from tests.support import wait_for

pytestmark = pytest.mark.chaos

COUNT = int(os.environ.get("CERTSMITH_CHAOS_COUNT", "1000"))
KILLS = int(os.environ.get("CERTSMITH_CHAOS_KILLS", "20"))
SEED = int(os.environ.get("CERTSMITH_CHAOS_SEED", "9"))
NAMESPACES = 4
# Lifetime of each operator process before its SIGKILL, uniform in this range: short ones
# die during start-up or resume, long ones in the middle of issuing new Certificates.
LIFETIME = (0.3, 4.5)
PROBES_AFTER_RESTART = 10
CREATE_TIMEOUT = 120.0


@dataclass
class Creator:
    """Creates Certificates at a steady pace from a few threads, retrying through outages."""

    api: RawApi
    namespaces: list[str]
    count: int
    interval: float
    rng: random.Random
    created: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._next = itertools.count()
        # RSA keys take ~100x longer to generate than ECDSA: a wider window for a kill
        # between key generation and the Secret write.
        self._rsa = {i for i in range(self.count) if self.rng.random() < 0.1}
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(4)]

    def start(self) -> None:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "creators still running"

    def _run(self) -> None:
        while True:
            with self.lock:
                index = next(self._next)
            if index >= self.count:
                return
            delay = self._started + index * self.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing only: creations spread over the kill phase
            namespace = self.namespaces[index % len(self.namespaces)]
            key = {"algorithm": "RSA", "size": 2048} if index in self._rsa else {}
            self.create(namespace, f"chaos-{index:05d}", privateKey=key)

    def create(self, namespace: str, name: str, **spec: object) -> None:
        body = builders.certificate(
            name, dnsNames=[f"{name}.{namespace}.svc"], **{k: v for k, v in spec.items() if v}
        )
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/certificates"

        def posted() -> bool:
            try:
                self.api.call("POST", path, body=body, timeout=20)
            except ApiStatus as error:
                if error.status < 500 and error.status not in (409, 429):
                    raise  # refused: retrying would not change the answer
                # 409: an earlier attempt landed before its answer was lost.
                return error.status == 409
            return True

        try:
            wait_for(
                posted,
                timeout=CREATE_TIMEOUT,
                what=f"{namespace}/{name} created",
                interval=0.2,
                retry_on=(urllib3.exceptions.HTTPError, OSError),  # the apiserver is restarting
            )
        except ApiStatus as error:
            with self.lock:
                self.errors.append(f"{namespace}/{name}: {error}")
            return
        except AssertionError:
            with self.lock:
                self.errors.append(f"{namespace}/{name}: not created in {CREATE_TIMEOUT}s")
            return
        with self.lock:
            self.created.append((namespace, name))

    def snapshot(self) -> set[tuple[str, str]]:
        with self.lock:
            return set(self.created)


def ready_names(api: RawApi, namespaces: list[str]) -> set[tuple[str, str]]:
    """Certificates Ready=True for their current generation, by a LIST per namespace."""
    ready = set()
    for namespace in namespaces:
        listing = api.call("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/certificates")
        for item in listing.get("items") or []:
            condition = ready_condition(item)
            if (
                condition
                and condition["status"] == "True"
                and condition.get("observedGeneration") == item["metadata"]["generation"]
            ):
                ready.add((namespace, item["metadata"]["name"]))
    return ready


def wait_all_ready(
    api: RawApi,
    namespaces: list[str],
    wanted: set[tuple[str, str]],
    *,
    timeout: float,
    interval: float,
) -> float:
    """Seconds until every wanted Certificate is Ready; fails naming a few stragglers."""
    started = time.monotonic()
    missing: set[tuple[str, str]] = set(wanted)

    def all_ready() -> bool:
        nonlocal missing
        missing = wanted - ready_names(api, namespaces)
        return not missing

    try:
        wait_for(
            all_ready,
            timeout=timeout,
            what=f"{len(wanted)} Certificates Ready",
            interval=interval,
            # The apiserver may still be warming up its caches: keep the last answer.
            retry_on=(ApiStatus, urllib3.exceptions.HTTPError, OSError),
        )
    except AssertionError:
        raise AssertionError(
            f"{len(missing)} Certificates not Ready after {timeout}s: {sorted(missing)[:5]}"
        ) from None
    return time.monotonic() - started


@pytest.fixture
def chaos_namespaces(api_client: client.ApiClient) -> Iterator[list[str]]:
    core = client.CoreV1Api(api_client)
    prefix = f"chaos-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(NAMESPACES)]
    for name in names:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield names
    for name in names:
        # Best effort: a failed run may leave the apiserver down; the cluster is disposable.
        with contextlib.suppress(client.ApiException, urllib3.exceptions.HTTPError):
            core.delete_namespace(name)


def test_sigkills_and_an_apiserver_restart_never_break_a_certificate(
    kubeconfig: str,
    api_client: client.ApiClient,
    chaos_namespaces: list[str],
    running_operator: OperatorProcess,
) -> None:
    if "kube-apiserver" not in control_plane_pids():
        pytest.skip("the apiserver restart needs the apiserver profile run by hack/cluster")
    operator = running_operator
    rng = random.Random(SEED)
    api = RawApi(kubeconfig, pool_size=16)
    observer = Observer(RawApi(kubeconfig), set(chaos_namespaces))
    observer.start()
    mean_lifetime = sum(LIFETIME) / 2
    creator = Creator(api, chaos_namespaces, COUNT, interval=KILLS * mean_lifetime / COUNT, rng=rng)
    started = time.monotonic()
    creator.start()

    exited_by_itself: list[str] = []
    kills_in_flight = 0
    restart: dict[str, float] = {}
    for index in range(KILLS):
        if index == KILLS // 2:
            # Only once this process is past start-up: the restart must hit a running
            # operator's watches. (A process starting during the outage fails kopf's
            # startup activity, which kopf retries only after 60 s: a separate finding.)
            operator.wait_serving(api_client)
            restart = restart_apiserver_mid_run(api, creator, observer, chaos_namespaces)
        time.sleep(rng.uniform(*LIFETIME))  # a random moment in this process's life
        assert operator.process is not None
        if operator.process.poll() is not None:
            exited_by_itself.append(operator.log_tail(20))
        with observer.lock:
            ready = set(observer.seen.ready)
        kills_in_flight += bool(creator.snapshot() - ready)
        operator.kill()
        operator.start()

    creator.join(timeout=CREATE_TIMEOUT + 30)
    wanted = creator.snapshot()
    # Generous: the last process resumes every Certificate before it catches up.
    settle = wait_all_ready(
        api, chaos_namespaces, wanted, timeout=60 + len(wanted) * 0.2, interval=1.0
    )
    elapsed = time.monotonic() - started
    observer.wait_quiet(timeout=60)
    observer.stop()

    # The final state, read fresh: each Certificate's Secret holds the serial it reports.
    final_mismatch = []
    for namespace in chaos_namespaces:
        certificates = api.call(
            "GET", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/certificates"
        )
        secrets = api.call(
            "GET",
            f"/api/v1/namespaces/{namespace}/secrets",
            query={"labelSelector": "certsmith.dev/certificate"},
        )
        by_name = {s["metadata"]["name"]: judge_secret(s) for s in secrets.get("items") or []}
        for item in certificates.get("items") or []:
            view = by_name.get(item["spec"]["secretName"])
            serial = (item.get("status") or {}).get("serialNumber")
            if view is None or view.problem or view.serial != serial:
                final_mismatch.append(f"{item['metadata']['name']}: {serial} vs {view}")

    with observer.lock:
        seen = observer.seen
        per_revision = {
            key: max(len(serials) for serials in revisions.values())
            for key, revisions in seen.serials_by_revision.items()
        }
        issued = {key: len(serials) for key, serials in seen.serials.items()}
        twice = sorted(key for key, most in per_revision.items() if most > 1)
        bad_secrets = list(seen.bad_secrets)
        ready_but_invalid = list(seen.ready_but_invalid)
        counters = (seen.secret_events, seen.certificate_events, seen.relists, seen.stream_errors)

    print(
        f"\nchaos: {len(wanted)} Certificates in {len(chaos_namespaces)} namespaces, "
        f"{KILLS} SIGKILLs ({kills_in_flight} with issuance pending), 1 apiserver restart, "
        f"seed {SEED}"
        f"\n  apiserver: exited {restart['exit_s']:.1f}s after SIGTERM, `hack/cluster up` "
        f"took {restart['up_s']:.1f}s, {restart['pending']:.0f} Certificates pending when "
        f"it came back; all Ready {restart['recovery_s']:.1f}s after it was back"
        f"\n  all Ready {settle:.1f}s after the last restart; {elapsed:.1f}s in all: "
        f"created at {1 / creator.interval:.1f}/s, {len(wanted) / elapsed:.1f} Certificates/s "
        f"end to end"
        f"\n  max distinct serials per revision {max(per_revision.values(), default=0)}, "
        f"max issuances per Certificate {max(issued.values(), default=0)} "
        f"(max re-issues {max(issued.values(), default=1) - 1})"
        f"\n  Secrets invalid when seen {len(bad_secrets)}, Ready-but-invalid "
        f"{len(ready_but_invalid)}, final mismatches {len(final_mismatch)}"
        f"\n  watcher: {counters[0]} Secret and {counters[1]} Certificate events, "
        f"{counters[2]} relists, {counters[3]} stream interruptions"
        f"\n  operator exits not caused by the test: {len(exited_by_itself)}"
    )
    assert not creator.errors, creator.errors[:5]
    assert not exited_by_itself, exited_by_itself[0]
    assert not bad_secrets, bad_secrets[:5]
    assert not ready_but_invalid, ready_but_invalid[:5]
    assert not twice, f"re-issued within one revision: {twice[:5]}"
    assert not final_mismatch, final_mismatch[:5]
    assert len(issued) == len(wanted), "the watcher missed Secrets"


def restart_apiserver_mid_run(
    api: RawApi, creator: Creator, observer: Observer, namespaces: list[str]
) -> dict[str, float]:
    """Restart kube-apiserver under load; time from its return to all pending Ready.

    The operator is left alone meanwhile: it has to notice on its own that its watches
    broke, and resume them. Certificates created right after the restart prove that it
    sees new objects again, not only the ones it had queued.
    """
    before = control_plane_pids()
    exit_s, up_s = restart_apiserver()
    back = time.monotonic()
    after = control_plane_pids()
    # hack/cluster up restarts only what is not running: etcd and the controller-manager
    # keep their processes.
    assert before["etcd"] == after["etcd"]
    assert before["kube-controller-manager"] == after["kube-controller-manager"]
    assert before["kube-apiserver"] != after["kube-apiserver"]
    for index in range(PROBES_AFTER_RESTART):
        creator.create(namespaces[index % len(namespaces)], f"after-restart-{index}")
    wanted = creator.snapshot()
    with observer.lock:
        pending = len(wanted - set(observer.seen.ready))
    wait_all_ready(api, namespaces, wanted, timeout=120, interval=0.25)
    return {
        "exit_s": exit_s,
        "up_s": up_s,
        "pending": float(pending),
        "recovery_s": time.monotonic() - back,
    }
