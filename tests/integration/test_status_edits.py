"""A Certificate's status edited by someone else while the operator runs (status is
writable by anyone granted certificates/status) is noticed at its watch event and put back
within seconds, judged on the Secret: nothing valid is re-issued, and certsmith's own
status writes never wake it again (no write loop)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from tests.integration import certs
from tests.integration.test_restart_reads import forge_status
from tests.support import wait_for

pytestmark = pytest.mark.integration

PUT_BACK_SECONDS = 8
"""How soon an edit must be put back: a watch event and one reconcile, not a retry or a
renewal (minutes to months away)."""
IDLE_SECONDS = 8
"""How long an idle Certificate is watched for writes."""


def fields(status: dict[str, Any]) -> dict[str, Any]:
    """What an edit may not change for good: the certificate's fields, Ready's verdict."""
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    return {
        "ready": (ready["status"], ready["reason"], ready["message"]),
        **{
            key: status.get(key)
            for key in (
                "notBefore",
                "notAfter",
                "renewalTime",
                "serialNumber",
                "revision",
                "secretResourceVersion",
            )
        },
    }


def ready_condition(current: dict[str, Any], **changed: str) -> list[dict[str, Any]]:
    """`current`'s conditions with Ready's fields `changed`."""
    return [{**c, **changed} if c["type"] == "Ready" else c for c in current["conditions"]]


def resource_version(api_client: client.ApiClient, namespace: str, name: str) -> str:
    return str(certs.get(api_client, namespace, name)["metadata"]["resourceVersion"])


def test_status_lies_on_a_ready_certificate_are_put_back_without_reissuing(
    api_client, namespace, running_operator
):
    certs.create(api_client, namespace, certs.certificate("honest", dnsNames=["h.example.com"]))
    before = certs.wait_ready(api_client, namespace, "honest")["status"]
    secret_version = certs.secret(api_client, namespace, "honest-tls").metadata.resource_version

    # No write loop: an idle Certificate is not written to (its own writes do not wake it).
    idle_from = resource_version(api_client, namespace, "honest")
    time.sleep(IDLE_SECONDS)
    assert resource_version(api_client, namespace, "honest") == idle_from

    lies: list[dict[str, Any]] = [
        {"notAfter": "2099-01-01T00:00:00Z"},
        {"renewalTime": "2099-01-01T00:00:00Z"},
        {"serialNumber": "0badc0de"},
        {"notBefore": "2020-01-01T00:00:00Z"},
        {"conditions": ready_condition(before, status="False", reason="Expired", message="x")},
        {"conditions": ready_condition(before, message="all fine, trust me")},
        {"secretSeal": "forged"},
        {"secretResourceVersion": "1"},
    ]
    for lie in lies:
        forge_status(api_client, namespace, "honest", **lie)
        wait_for(
            lambda: fields(certs.get(api_client, namespace, "honest")["status"]) == fields(before),
            timeout=PUT_BACK_SECONDS,
            what=f"status put back after {sorted(lie)} was edited",
        )

    # Judged on the Secret, found valid: neither re-issued nor repaired.
    assert (
        certs.secret(api_client, namespace, "honest-tls").metadata.resource_version
        == secret_version
    )
    reasons = [e.reason for e in certs.events_for(api_client, namespace, "honest")]
    assert reasons.count("Issued") == 1 and "Renewed" not in reasons, reasons
    # Put back once each, then quiet again.
    settled = resource_version(api_client, namespace, "honest")
    time.sleep(IDLE_SECONDS)
    assert resource_version(api_client, namespace, "honest") == settled


def test_ready_forged_on_an_expired_certificate_is_put_back_at_once(
    api_client, namespace, running_operator
):
    """`duration: 1m` in an immutable Secret: expired about 65 s after issuance, its
    renewal failing with a back-off of tens of seconds by then. Ready=True written over
    Ready=False Expired is put back by the watch event, long before the next retry."""
    core = client.CoreV1Api(api_client)
    certs.create(
        api_client,
        namespace,
        certs.certificate("stale", dnsNames=["stale.example.com"], duration="1m"),
    )
    certs.wait_ready(api_client, namespace, "stale")
    core.patch_namespaced_secret("stale-tls", namespace, {"immutable": True})

    def expired() -> dict[str, Any] | None:
        status = certs.get(api_client, namespace, "stale")["status"]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        return status if ready["reason"] == "Expired" else None

    status = wait_for(expired, timeout=100, what="the certificate expired")
    # Forge only while the next retry (at the back-off's shortest, jitter 0.9) is further
    # away than the time allowed to put the edit back.
    while True:
        last_failure = datetime.fromisoformat(status["lastFailureTime"])
        backoff = min(2 ** (status["failedIssuanceAttempts"] - 1) * 2, 300) * 0.9
        next_retry = last_failure + timedelta(seconds=backoff)
        if next_retry - datetime.now(UTC) > timedelta(seconds=PUT_BACK_SECONDS + 4):
            break
        time.sleep(max((next_retry - datetime.now(UTC)).total_seconds(), 0) + 2)
        status = certs.get(api_client, namespace, "stale")["status"]

    forge_status(
        api_client,
        namespace,
        "stale",
        conditions=ready_condition(status, status="True", reason="Issued", message="fine"),
    )
    put_back = wait_for(
        lambda: (c := certs.condition(certs.get(api_client, namespace, "stale")))
        and c["status"] == "False"
        and c["reason"] == "Expired"
        and c,
        timeout=PUT_BACK_SECONDS,
        what="Ready=False Expired put back",
    )
    assert datetime.now(UTC) < next_retry, "put back by the retry, not by the edit's event"
    assert "is immutable" in put_back["message"]


def test_lies_on_a_refused_certificate_are_removed_not_sealed(
    api_client, namespace, running_operator
):
    """A Certificate the operator refuses (IssuerNotReady: its authority does not exist)
    has no certificate in status. Certificate fields forged there are removed at the edit's
    event, not sealed along with the refusal, and the status then stays as written."""
    certs.create(
        api_client,
        namespace,
        certs.certificate("refused", dnsNames=["r.example.com"], issuerRef={"name": "nobody"}),
    )

    def refused() -> dict[str, Any] | None:
        body = certs.get(api_client, namespace, "refused")
        ready = certs.condition(body)
        return body["status"] if ready and ready["reason"] == "IssuerNotReady" else None

    before = wait_for(refused, timeout=20, what="refused: IssuerNotReady")
    lies = {
        "notAfter": "2099-01-01T00:00:00Z",
        "renewalTime": "2098-01-01T00:00:00Z",
        "serialNumber": "0badc0de",
        "notBefore": "2020-01-01T00:00:00Z",
    }
    forge_status(api_client, namespace, "refused", **lies)
    after = wait_for(
        lambda: (status := refused()) and all(status.get(key) is None for key in lies) and status,
        timeout=PUT_BACK_SECONDS,
        what="the forged certificate fields removed",
    )
    assert certs.condition({"status": after}) == certs.condition({"status": before})
    # Its own write holds its seal: not judged again, not written again.
    settled = resource_version(api_client, namespace, "refused")
    time.sleep(IDLE_SECONDS)
    assert resource_version(api_client, namespace, "refused") == settled
