"""Two replicas: exactly one acts (it holds the Lease); the other takes over when it dies."""

from __future__ import annotations

import contextlib
import signal
import ssl
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from kubernetes import client

from certsmith.admission import serving
from certsmith.replicas import lease
from tests.integration import certs
from tests.integration.conftest import OPERATOR_NAMESPACE, OperatorProcess
from tests.support import wait_for

pytestmark = pytest.mark.integration
KILLS = 5
WORKERS = 2


def logged_at(line: str) -> float:
    """When an operator log line was written (its asctime: local time, as this host's)."""
    stamp = " ".join(line.split(" ")[:2])
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


TAKEOVER_LIMIT = 15.0


def holder(api_client) -> str | None:
    try:
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease(
            "certsmith-leader", OPERATOR_NAMESPACE
        )
    except client.ApiException:
        return None
    return lease.spec.holder_identity


@contextlib.contextmanager
def two_replicas(
    api_client: client.ApiClient,
    kubeconfig: str,
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[dict[str, OperatorProcess]]:
    """replica-a and replica-b (settings `env`) started, both serving and one holding the
    Lease; stopped after. The session's operator must be stopped first."""
    replicas = {
        name: OperatorProcess(kubeconfig, tmp_path / f"{name}.log", identity=name, env=env)
        for name in ("replica-a", "replica-b")
    }
    for replica in replicas.values():
        replica.start()
    try:
        for replica in replicas.values():
            replica.wait_ready(timeout=60, what="replica serving")
        wait_for(lambda: holder(api_client) in replicas, timeout=30, what="a leader")
        yield replicas
    finally:
        for replica in replicas.values():
            replica.stop()


def test_one_replica_acts_and_the_other_takes_over(
    api_client, kubeconfig, namespace, running_operator, tmp_path
):
    running_operator.stop()  # the session's single replica steps aside for this test
    with two_replicas(api_client, kubeconfig, tmp_path) as replicas:
        takeovers = []
        for round_ in range(KILLS):
            leader = holder(api_client)
            standby = next(name for name in replicas if name != leader)
            replicas[leader].kill()
            killed_at = time.monotonic()
            certs.create(
                api_client, namespace, certs.certificate(f"r{round_}", dnsNames=["r.example.com"])
            )
            wait_for(lambda s=standby: holder(api_client) == s, timeout=30, what="takeover")
            wait_for(
                lambda n=f"r{round_}": certs.is_ready(api_client, namespace, n),
                timeout=30,
                what="issued by the new leader",
            )
            takeovers.append(time.monotonic() - killed_at)
            replicas[leader].start()  # back as the standby
            replicas[leader].wait_ready(timeout=60, what="standby serving")
        print(
            f"\ntakeovers (kill → new leader issued): {', '.join(f'{t:.1f}s' for t in takeovers)}"
        )
        assert max(takeovers) <= TAKEOVER_LIMIT

        # Never two acting at once: every Certificate was issued exactly once.
        for round_ in range(KILLS):
            body = certs.get(api_client, namespace, f"r{round_}")
            assert body["status"]["revision"] == 1
            issued = [
                e
                for e in certs.events_for(api_client, namespace, f"r{round_}")
                if e.reason == "Issued"
            ]
            assert len(issued) == 1


def test_a_leader_frozen_past_its_claim_stands_down_when_it_wakes(
    api_client, kubeconfig, namespace, running_operator, tmp_path
):
    """A leader stopped (SIGSTOP: a frozen node or VM) in the middle of issuing, longer
    than the Lease lasts, wakes to find another replica leading: it writes no Secret more
    (it once wrote 11 to 26 more in the seconds before its term stopped), ends its term
    without a Lease round it has no time left for (one once logged "no answer within
    -23.6 s"), and every Certificate is issued once."""
    running_operator.stop()
    with two_replicas(
        api_client, kubeconfig, tmp_path, env={"CERTSMITH_WORKERS": str(WORKERS)}
    ) as replicas:
        frozen_name = holder(api_client)
        assert frozen_name is not None
        frozen = replicas[frozen_name]
        standby = next(name for name in replicas if name != frozen_name)
        assert frozen.process is not None
        # A backlog of slow keys (RSA 4096), so the leader is stopped mid-issuance.
        backlog = [f"slow-{index}" for index in range(40)]
        for name in backlog:
            body = certs.certificate(name, dnsNames=[f"{name}.example.com"])
            body["spec"]["privateKey"] = {"algorithm": "RSA", "size": 4096}
            certs.create(api_client, namespace, body)
        wait_for(
            lambda: certs.is_ready(api_client, namespace, backlog[0]),
            timeout=60,
            what="the backlog being issued",
        )
        frozen.process.send_signal(signal.SIGSTOP)
        try:
            wait_for(
                lambda: holder(api_client) == standby, timeout=30, interval=0.1, what="takeover"
            )
        finally:
            # At once: the keys it was making when stopped are still wanted, the new leader
            # having only just begun.
            frozen.process.send_signal(signal.SIGCONT)
            woken_at = time.time()
        certs.create(
            api_client, namespace, certs.certificate("while-frozen", dnsNames=["f.example.com"])
        )
        certs.wait_ready(api_client, namespace, "while-frozen", timeout=60)
        wait_for(
            lambda: "lost the Lease" in frozen.log_path.read_text(errors="replace"),
            timeout=15,
            what="the woken replica standing down",
        )
        certs.create(
            api_client, namespace, certs.certificate("after-waking", dnsNames=["w.example.com"])
        )
        certs.wait_ready(api_client, namespace, "after-waking", timeout=30)
        time.sleep(lease.RENEW_PERIOD.total_seconds() * 2)
        assert holder(api_client) == standby
        for name in ("while-frozen", "after-waking"):
            assert certs.get(api_client, namespace, name)["status"]["revision"] == 1
            issued = [
                e for e in certs.events_for(api_client, namespace, name) if e.reason == "Issued"
            ]
            assert len(issued) == 1
        log = frozen.log_path.read_text(errors="replace")
        assert "within -" not in log
        issued_after = [
            line
            for line in log.splitlines()
            if ": issued serial " in line and logged_at(line) > woken_at
        ]
        # Its workers were making keys (seconds each) when stopped; a write already sent
        # (milliseconds) is the rare exception, hardly ever two at once.
        assert len(issued_after) <= 1, issued_after
        for name in backlog:
            certs.wait_ready(api_client, namespace, name, timeout=120)
            issued = [
                e for e in certs.events_for(api_client, namespace, name) if e.reason == "Issued"
            ]
            assert len(issued) == 1, name


def test_a_standby_never_writes_the_authoritys_material(
    api_client, kubeconfig, running_operator, tmp_path
):
    """Only the Lease holder writes CA Secrets. A replica that does not hold it (here the
    Lease is another's) serves admission from the authority's material as stored, and
    when the intermediate's Secret is deleted it keeps serving and waits for the leader,
    instead of issuing an intermediate of its own: two replicas writing raced each other
    (one reading a rotation's status before the other wrote it replaced the other's
    intermediate). Once it leads, it writes the intermediate back."""
    running_operator.stop()
    core = client.CoreV1Api(api_client)
    leases = client.CoordinationV1Api(api_client)
    with contextlib.suppress(client.ApiException):
        leases.delete_namespaced_lease("certsmith-leader", OPERATOR_NAMESPACE)
    now = datetime.now(UTC)
    leases.create_namespaced_lease(
        OPERATOR_NAMESPACE,
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="certsmith-leader"),
            spec=client.V1LeaseSpec(
                holder_identity="another-replica",
                lease_duration_seconds=3600,
                acquire_time=now,
                renew_time=now,
            ),
        ),
    )
    intermediate = "cluster-root-intermediate"
    standby = OperatorProcess(kubeconfig, tmp_path / "standby.log", identity="standby")
    standby.start()
    try:
        standby.wait_ready(timeout=60, what="the standby serving")
        before = core.read_namespaced_secret(intermediate, OPERATOR_NAMESPACE).metadata.uid
        core.delete_namespaced_secret(intermediate, OPERATOR_NAMESPACE)
        time.sleep(serving.CHECK_PERIOD + 5)
        names = {s.metadata.name for s in core.list_namespaced_secret(OPERATOR_NAMESPACE).items}
        assert intermediate not in names
        assert standby.readyz() == 200
        assert holder(api_client) == "another-replica"

        leases.delete_namespaced_lease("certsmith-leader", OPERATOR_NAMESPACE)
        wait_for(lambda: holder(api_client) == "standby", timeout=30, what="the replica leading")
        rewritten = wait_for(
            lambda: next(
                (
                    s
                    for s in core.list_namespaced_secret(OPERATOR_NAMESPACE).items
                    if s.metadata.name == intermediate
                ),
                None,
            ),
            timeout=30,
            what="the leader writing the intermediate back",
        )
        assert rewritten.metadata.uid != before
    finally:
        standby.stop()


def served_issuer_key_id(port: int) -> bytes | None:
    """The authority key identifier of the certificate a replica's webhook serves now."""
    try:
        pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=2)
    except OSError:
        return None
    leaf = x509.load_pem_x509_certificate(pem.encode())
    return leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier


def test_every_replicas_webhook_follows_a_new_intermediate_at_once(
    api_client, kubeconfig, running_operator, tmp_path
):
    """The leader replaces a deleted intermediate; every replica's webhook (the standby's
    too) serves a certificate from the new one within seconds, not at its next 15 s check:
    a caBundle that moves with a root switch would otherwise not trust it meanwhile."""
    running_operator.stop()
    core = client.CoreV1Api(api_client)
    with two_replicas(api_client, kubeconfig, tmp_path) as replicas:
        intermediate = "cluster-root-intermediate"
        before = core.read_namespaced_secret(intermediate, OPERATOR_NAMESPACE).metadata.uid
        core.delete_namespaced_secret(intermediate, OPERATOR_NAMESPACE)

        def new_intermediate() -> x509.Certificate | None:
            try:
                secret = core.read_namespaced_secret(intermediate, OPERATOR_NAMESPACE)
            except client.ApiException:
                return None
            if secret.metadata.uid == before:
                return None
            return x509.load_pem_x509_certificate(certs.secret_bytes(secret, "tls.crt"))

        replaced = wait_for(new_intermediate, timeout=20, what="a new intermediate")
        key_id = replaced.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        for name, replica in replicas.items():
            try:
                wait_for(
                    lambda r=replica: served_issuer_key_id(r.webhook_port) == key_id.digest,
                    timeout=serving.CHECK_PERIOD / 2,
                    what=f"{name}'s webhook serving from the new intermediate",
                )
            except AssertionError as error:
                raise AssertionError(
                    f"{error}; Lease holder {holder(api_client)}; {name}'s log tail:\n"
                    f"{replica.log_tail(80)}"
                ) from None
