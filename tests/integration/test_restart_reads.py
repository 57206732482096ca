"""A restart judges every Certificate again from one list of its Secrets' versions, not a
read of each Secret, and re-issues none that is valid; what changed while it was down is
still seen. Counted with the apiserver's own apiserver_request_total."""

from __future__ import annotations

import collections
import re
import time

import pytest
from kubernetes import client

from tests.integration import certs
from tests.support import wait_for

pytestmark = pytest.mark.integration

COUNT = 50
_REQUEST = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def requests_by_verb(api_client: client.ApiClient) -> collections.Counter[tuple[str, str]]:
    """Requests the apiserver has served so far, by (verb, resource)."""
    answer = api_client.call_api(
        "GET", api_client.configuration.host + "/metrics", header_params={}
    )
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in answer.read().decode().splitlines():
        match = _REQUEST.match(line)
        if match is not None:
            labels = dict(_LABEL.findall(match["labels"]))
            counts[(labels.get("verb", ""), labels.get("resource", ""))] += int(
                float(match["value"])
            )
    return counts


def test_a_restart_reads_no_secret_per_certificate_and_reissues_none(
    api_client, namespace, running_operator
):
    core = client.CoreV1Api(api_client)
    names = [f"r{i:02d}" for i in range(COUNT)]
    for name in names:
        certs.create(
            api_client, namespace, certs.certificate(name, dnsNames=[f"{name}.example.com"])
        )
    before = {name: certs.wait_ready(api_client, namespace, name)["status"] for name in names}

    running_operator.stop()
    # While it is down: one Secret deleted, one edited; both must still be noticed.
    core.delete_namespaced_secret("r00-tls", namespace)
    core.patch_namespaced_secret(
        "r01-tls", namespace, {"metadata": {"annotations": {"certsmith.dev/serial-number": None}}}
    )
    counted_from = requests_by_verb(api_client)
    running_operator.start()
    running_operator.wait_serving(api_client)

    wait_for(
        lambda: certs.get(api_client, namespace, "r00")["status"]["serialNumber"]
        != before["r00"]["serialNumber"],
        timeout=30,
        what="the Secret deleted while down issued again",
    )
    wait_for(
        lambda: certs.secret(api_client, namespace, "r01-tls").metadata.annotations.get(
            "certsmith.dev/serial-number"
        )
        == before["r01"]["serialNumber"],
        timeout=30,
        what="the Secret edited while down repaired",
    )
    time.sleep(3)  # room for any wrongful read or re-issue to show
    made = requests_by_verb(api_client) - counted_from

    # The CA Secrets are read (GET) at start, and the two changed Secrets; not the others.
    assert made[("GET", "secrets")] < 15, made
    # Whole collections, however many Certificates: the CA Secrets, the certsmith Secrets'
    # metadata, kopf's watch, an authority step (one page here); a CA Secrets watch that
    # fell behind on a loaded machine lists once more (CI saw 5).
    assert made[("LIST", "secrets")] <= 6, made
    for name in names[2:]:
        after = certs.get(api_client, namespace, name)["status"]
        assert (after["serialNumber"], after["revision"]) == (
            before[name]["serialNumber"],
            before[name]["revision"],
        ), name
    # Status written only for the two that changed (none for the 48 judged on the list).
    assert made[("PATCH", "certificates")] <= 4, made
    # Both record their Secret as written (issued again, repaired), so the next restart
    # finds them unchanged too.
    for name in names[:2]:
        recorded = certs.get(api_client, namespace, name)["status"]["secretResourceVersion"]
        assert (
            recorded == certs.secret(api_client, namespace, f"{name}-tls").metadata.resource_version
        )
