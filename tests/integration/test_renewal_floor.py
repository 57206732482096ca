"""Renewal arithmetic on the real apiserver: aggressive specs renew as often as they say and
no more; specs that would renew sooner than 30 s after issuance are refused at apply."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta

import pytest

from certsmith.certificates import renewal
from tests.integration import certs
from tests.support import wait_for

pytestmark = pytest.mark.integration

WINDOW_SECONDS = 75.0


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_aggressive_specs_renew_no_more_often_than_their_spec(
    api_client, namespace, running_operator
) -> None:
    specs = {
        # 99% of an hour leaves 36 s in use; the leaf starts a minute early (clock skew),
        # which put its renewal before its issuance: re-issued ~10 times a second before.
        "pct99": {"duration": "1h", "renewBeforePercentage": 99},
        # The smallest duration with the most aggressive renewBefore admitted: 30 s in use.
        "floor": {"duration": "1m", "renewBefore": "30s"},
    }
    started = time.monotonic()
    for name, fields in specs.items():
        body = certs.certificate(name, dnsNames=[f"{name}.{namespace}.svc"], **fields)
        certs.create(api_client, namespace, body)
    seen: dict[str, list[tuple[float, int]]] = {name: [] for name in specs}
    not_ready: list[str] = []
    while (now := time.monotonic()) - started < WINDOW_SECONDS:
        for name in specs:
            status = certs.get(api_client, namespace, name).get("status") or {}
            revision = int(status.get("revision") or 0)
            if revision and (not seen[name] or seen[name][-1][1] != revision):
                seen[name].append((now, revision))
                # renewalTime counts from the signing (notBefore + 1 minute), not notBefore.
                in_use = _time(status["renewalTime"]) - _time(status["notBefore"])
                assert in_use >= timedelta(minutes=1) + renewal.MIN_IN_USE, (name, status)
            ready = certs.condition(certs.get(api_client, namespace, name))
            if revision and (ready is None or ready["status"] != "True"):
                not_ready.append(f"{name}: {ready}")
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    allowed = 1 + int(elapsed // renewal.MIN_IN_USE.total_seconds())
    for name, observed in seen.items():
        revisions = [revision for _, revision in observed]
        assert 2 <= revisions[-1] <= allowed, (name, observed)
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(observed)]
        assert min(gaps) >= renewal.MIN_IN_USE.total_seconds() - 2, (name, observed)
    assert not_ready == []


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"duration": "10m", "renewBefore": "9m50s"},
            "spec.renewBefore",
            "renewBefore must leave the certificate in use at least 30s",
        ),
        (
            {"duration": "1m", "renewBefore": "31s"},
            "spec.renewBefore",
            "renewBefore must leave the certificate in use at least 30s",
        ),
        (
            {"duration": "1m", "renewBeforePercentage": 51},
            "spec.renewBeforePercentage",
            "renewBeforePercentage must leave the certificate in use at least 30s",
        ),
        (
            {"duration": "10m", "renewBeforePercentage": 96},
            "spec.renewBeforePercentage",
            "renewBeforePercentage must leave the certificate in use at least 30s",
        ),
    ],
)
def test_renewal_sooner_than_the_floor_is_refused_at_apply(
    kubeconfig, namespace, operator, fields, field, message
) -> None:
    body = certs.certificate("eager", dnsNames=[f"eager.{namespace}.svc"], **fields)
    result = certs.kubectl_apply(kubeconfig, namespace, body)
    assert result.returncode != 0
    assert field in result.stderr and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    "fields",
    [
        {"duration": "1m", "renewBeforePercentage": 50},
        {"duration": "61s", "renewBeforePercentage": 50},
        {"duration": "10m", "renewBefore": "9m30s"},
        {"duration": "10m", "renewBeforePercentage": 95},
    ],
)
def test_renewal_at_the_floor_is_admitted(api_client, namespace, running_operator, fields) -> None:
    # The CRD's CEL rules, the webhook and the operator agree on the boundary.
    body = certs.certificate("edge", dnsNames=[f"edge.{namespace}.svc"], **fields)
    certs.create(api_client, namespace, body)
    wait_for(lambda: certs.is_ready(api_client, namespace, "edge"), timeout=30, what="edge Ready")
