"""What an operator of certsmith sees: events, metrics and health after real decisions."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import certs
from tests.support import REPO_ROOT, wait_for

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def reasons(api_client, namespace: str, name: str) -> list[str]:
    return [e.reason for e in certs.events_for(api_client, namespace, name)]


def test_issuance_and_renewal_show_in_events_and_metrics(api_client, namespace, running_operator):
    port = running_operator.metrics_port
    before = scrape(port)
    certs.create(api_client, namespace, certs.certificate("web", dnsNames=["web.example.com"]))
    status = wait_for(
        lambda: certs.is_ready(api_client, namespace, "web"), timeout=15, what="Ready"
    )["status"]
    not_after = datetime.fromisoformat(status["notAfter"].replace("Z", "+00:00")).timestamp()
    renewal = datetime.fromisoformat(status["renewalTime"].replace("Z", "+00:00")).timestamp()

    samples = wait_for(
        lambda: (s := scrape(port))
        and value(s, "certsmith_certificate_ready", namespace=namespace, name="web") == 1
        and s,
        timeout=10,
        what="ready metric",
    )
    assert (
        value(
            samples,
            "certsmith_certificate_expiration_timestamp_seconds",
            namespace=namespace,
            name="web",
        )
        == not_after
    )
    assert (
        value(
            samples,
            "certsmith_certificate_renewal_timestamp_seconds",
            namespace=namespace,
            name="web",
        )
        == renewal
    )
    assert (
        value(samples, "certsmith_issuances_total", reason="SecretMissing")
        == value(before, "certsmith_issuances_total", reason="SecretMissing") + 1
    )
    assert "Issued" in reasons(api_client, namespace, "web")

    client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        "certsmith.dev",
        "v1alpha1",
        namespace,
        "certificates",
        "web",
        {
            "metadata": {
                "annotations": {"certsmith.dev/renew-requested-at": datetime.now(UTC).isoformat()}
            }
        },
    )
    wait_for(
        lambda: "Renewed" in reasons(api_client, namespace, "web"), timeout=15, what="Renewed event"
    )
    after = scrape(port)
    assert (
        value(after, "certsmith_issuances_total", reason="RenewalRequested")
        == value(before, "certsmith_issuances_total", reason="RenewalRequested") + 1
    )
    # The latency histogram counts every issuance, whatever its reason.
    issued = sum(v for (n, _), v in after.items() if n == "certsmith_issuances_total") - sum(
        v for (n, _), v in before.items() if n == "certsmith_issuances_total"
    )
    latency_count = value(after, "certsmith_issuance_latency_seconds_count") - value(
        before, "certsmith_issuance_latency_seconds_count"
    )
    assert latency_count == issued >= 2
    assert (
        value(after, "certsmith_authority_rotation_phase", authority="cluster-root", phase="Ready")
        == 1
    )
    assert (
        value(
            after,
            "certsmith_authority_expiration_timestamp_seconds",
            authority="cluster-root",
            role="root",
        )
        > datetime.now(UTC).timestamp()
    )


def test_invalid_spec_and_failed_issuance_are_reported(
    api_client, namespace, running_operator, validating_webhook_down
):
    port = running_operator.metrics_port
    before = scrape(port)
    certs.create(api_client, namespace, certs.certificate("bad", dnsNames=["bad..name"]))
    wait_for(
        lambda: "InvalidSpec" in reasons(api_client, namespace, "bad"),
        timeout=15,
        what="InvalidSpec event",
    )

    # No Secret may be created in this namespace: issuance fails and says why.
    client.CoreV1Api(api_client).create_namespaced_resource_quota(
        namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="no-secrets"),
            spec=client.V1ResourceQuotaSpec(hard={"count/secrets": "0"}),
        ),
    )
    wait_for(
        lambda: client.CoreV1Api(api_client)
        .read_namespaced_resource_quota("no-secrets", namespace)
        .status.hard,
        timeout=15,
        what="quota in force",
    )
    certs.create(api_client, namespace, certs.certificate("blocked", dnsNames=["b.example.com"]))
    body = wait_for(
        lambda: (b := certs.get(api_client, namespace, "blocked"))
        and (b.get("status") or {}).get("failedIssuanceAttempts", 0) >= 1
        and b,
        timeout=20,
        what="a failed issuance recorded",
    )
    assert body["status"]["lastFailureTime"]
    issuing = certs.condition(body, "Issuing")
    assert issuing["reason"] == "IssuanceFailed" and "quota" in issuing["message"].lower()
    assert "IssuanceFailed" in reasons(api_client, namespace, "blocked")

    after = scrape(port)
    assert value(after, "certsmith_certificate_ready", namespace=namespace, name="bad") == 0
    assert value(after, "certsmith_issuance_failures_total", reason="InvalidSpec") > value(
        before, "certsmith_issuance_failures_total", reason="InvalidSpec"
    )
    assert value(after, "certsmith_issuance_failures_total", reason="IssuanceFailed") > value(
        before, "certsmith_issuance_failures_total", reason="IssuanceFailed"
    )


def test_readiness_means_the_operator_can_work(running_operator):
    answer = urllib.request.urlopen(
        f"http://127.0.0.1:{running_operator.health_port}/readyz", timeout=5
    )
    assert answer.status == 200 and answer.read() == b"ok\n"


def test_readiness_reports_an_unreachable_apiserver_and_recovers(running_operator):
    """While the apiserver is down the replica says it is not ready; then it is again."""
    cache = Path(os.environ.get("CERTSMITH_CACHE", Path.home() / ".cache" / "certsmith"))
    state = Path(os.environ.get("CERTSMITH_STATE", cache / "state")) / "apiserver"
    pid = int((state / "kube-apiserver.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: running_operator.readyz() == 503, timeout=30, what="readiness to report the outage"
    )
    subprocess.run([str(REPO_ROOT / "hack" / "cluster"), "up"], check=True, capture_output=True)
    running_operator.wait_ready(timeout=30, what="readiness back")


def test_a_certificate_being_deleted_is_never_issued_again(api_client, namespace, running_operator):
    """A Certificate deleted but held by a finalizer (another tool's, or foreground
    deletion's) whose Secret then goes is not issued again: that Secret would outlive it,
    as certsmith keeps the Secrets of deleted Certificates. Its status says why."""
    core = client.CoreV1Api(api_client)
    objects = client.CustomObjectsApi(api_client)
    hold = "example.com/hold"
    body = certs.certificate("leaving", dnsNames=["leaving.example.com"])
    body["metadata"]["finalizers"] = [hold]
    certs.create(api_client, namespace, body)
    certs.wait_ready(api_client, namespace, "leaving", timeout=30)
    secret_name = body["spec"]["secretName"]

    objects.delete_namespaced_custom_object(
        certs.GROUP, certs.VERSION, namespace, certs.PLURAL, "leaving"
    )
    core.delete_namespaced_secret(secret_name, namespace)

    def reason() -> str | None:
        ready = certs.condition(certs.get(api_client, namespace, "leaving"))
        return None if ready is None else ready["reason"]

    wait_for(lambda: reason() == "Deleting", timeout=30, what="Ready=False, reason Deleting")
    assert secret_name not in {
        s.metadata.name for s in core.list_namespaced_secret(namespace).items
    }
    # No certificate is held any more: EXPIRES and SERIAL are empty.
    held = certs.get(api_client, namespace, "leaving")["status"]
    assert "notAfter" not in held and "serialNumber" not in held
    objects.patch_namespaced_custom_object(
        certs.GROUP,
        certs.VERSION,
        namespace,
        certs.PLURAL,
        "leaving",
        {"metadata": {"finalizers": []}},
    )
    wait_for(
        lambda: "leaving"
        not in {
            c["metadata"]["name"]
            for c in objects.list_namespaced_custom_object(
                certs.GROUP, certs.VERSION, namespace, certs.PLURAL
            )["items"]
        },
        timeout=30,
        what="the Certificate gone",
    )
    time.sleep(3)
    assert secret_name not in {
        s.metadata.name for s in core.list_namespaced_secret(namespace).items
    }


def test_a_certificate_deleted_while_no_operator_runs_is_judged_at_start(
    api_client, namespace, running_operator
):
    """Deleted (held by a finalizer) and its Secret deleted while the operator was down:
    the next start judges it too (Deleting), rather than leaving it Ready with no Secret."""
    core = client.CoreV1Api(api_client)
    objects = client.CustomObjectsApi(api_client)
    body = certs.certificate("gone-offline", dnsNames=["gone.example.com"])
    body["metadata"]["finalizers"] = ["example.com/hold"]
    certs.create(api_client, namespace, body)
    certs.wait_ready(api_client, namespace, "gone-offline", timeout=30)
    running_operator.stop()
    objects.delete_namespaced_custom_object(
        certs.GROUP, certs.VERSION, namespace, certs.PLURAL, "gone-offline"
    )
    core.delete_namespaced_secret(body["spec"]["secretName"], namespace)
    running_operator.start()
    running_operator.wait_serving(api_client)

    def reason() -> str | None:
        ready = certs.condition(certs.get(api_client, namespace, "gone-offline"))
        return None if ready is None else ready["reason"]

    try:
        wait_for(lambda: reason() == "Deleting", timeout=30, what="Ready=False, reason Deleting")
        secrets = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
        assert body["spec"]["secretName"] not in secrets
    finally:
        objects.patch_namespaced_custom_object(
            certs.GROUP,
            certs.VERSION,
            namespace,
            certs.PLURAL,
            "gone-offline",
            {"metadata": {"finalizers": []}},
        )


def test_a_namespace_deleted_with_its_certificates_fails_no_issuance(api_client, running_operator):
    """Deleting a namespace can delete its Secrets before its Certificates (here held by
    another tool's finalizer): each Certificate then finds its Secret gone and is signed
    again, and nothing can be created in a namespace being deleted (403,
    NamespaceTerminating). That is no failure to report, retry or warn about: 10,000
    Certificates in a deleted namespace made ~20,000 failed issuances. Their status says why
    (NamespaceDeleting), also for Certificates still queued, never issued, when the
    namespace went: a status left unsealed was once taken for one emptied by someone else
    and tried again."""
    core = client.CoreV1Api(api_client)
    objects = client.CustomObjectsApi(api_client)
    doomed = f"doomed-{uuid.uuid4().hex[:6]}"
    hold = "example.com/hold"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=doomed)))
    names = [f"c{index}" for index in range(5)]
    for name in names:
        body = certs.certificate(name, dnsNames=[f"{name}.{doomed}.svc"])
        body["metadata"]["finalizers"] = [hold]
        certs.create(api_client, doomed, body)
    for name in names:
        certs.wait_ready(api_client, doomed, name, timeout=30)
    port = running_operator.metrics_port
    failures = "certsmith_issuance_failures_total"
    failed_before = value(scrape(port), failures, reason="IssuanceFailed")
    queued = [f"q{index}" for index in range(20)]
    for name in queued:
        body = certs.certificate(name, dnsNames=[f"{name}.{doomed}.svc"])
        body["metadata"]["finalizers"] = [hold]
        certs.create(api_client, doomed, body)
    names += queued

    core.delete_namespace(doomed)
    wait_for(
        lambda: not core.list_namespaced_secret(doomed).items,
        timeout=60,
        what=f"the Secrets of {doomed} deleted",
    )
    # Each Certificate's Secret is gone: what the operator does about it, it does now.
    time.sleep(5)
    assert value(scrape(port), failures, reason="IssuanceFailed") == failed_before
    log = running_operator.log_path.read_text(errors="replace")
    failed_lines = [line for line in log.splitlines() if "issuance failed" in line]
    assert not [line for line in failed_lines if f"{doomed}/" in line]

    def reason(name: str) -> str | None:
        ready = certs.condition(certs.get(api_client, doomed, name))
        return None if ready is None else ready["reason"]

    def reasons() -> dict[str, str | None]:
        return {name: reason(name) for name in names}

    # Deleting once the namespace's deletion reached the Certificate itself.
    closed = {"NamespaceDeleting", "Deleting"}
    with contextlib.suppress(AssertionError):
        wait_for(lambda: set(reasons().values()) <= closed, timeout=30, what="")
    assert {name: reason for name, reason in reasons().items() if reason not in closed} == {}
    log = running_operator.log_path.read_text(errors="replace")
    edited = [line for line in log.splitlines() if f"{doomed}/" in line and "status edited" in line]
    assert not edited
    # Nor its trust bundle, deleted with the namespace: nothing to repair or warn about.
    assert not [line for line in log.splitlines() if doomed in line and " WARNING " in line]
    for name in names:
        objects.patch_namespaced_custom_object(
            certs.GROUP, certs.VERSION, doomed, certs.PLURAL, name, {"metadata": {"finalizers": []}}
        )
