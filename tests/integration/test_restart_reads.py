"""A restart judges every Certificate again from one list of its Secrets' versions, not a
read of each Secret, and re-issues none that is valid; what changed while it was down is
still seen. Counted with the apiserver's own apiserver_request_total."""

from __future__ import annotations

import collections
import concurrent.futures
import re
import time
import uuid
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client

from tests.integration import certs
from tests.support import wait_for

pytestmark = pytest.mark.integration

COUNT = 50
DELETED_DURING_START = 300
DELETERS = 6
DELETE_PAUSE_SECONDS = 0.03
NAMESPACES_DURING_START = 48
NAMESPACE_PAUSE_SECONDS = 0.15
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


def forge_status(api_client: client.ApiClient, namespace: str, name: str, **fields: Any) -> None:
    """Write status fields as a user granted certificates/status can."""
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        "certsmith.dev", "v1alpha1", namespace, "certificates", name, {"status": fields}
    )


def leaf_names(sec: client.V1Secret) -> list[str]:
    san = certs.leaf_of(sec).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return san.value.get_values_for_type(x509.DNSName)


def secret_lists_at_a_restart(api_client: client.ApiClient) -> int:
    """The LISTs of Secrets a restart makes, whatever the number of Certificates: the CA
    Secrets (their watch's first list), the certsmith Secrets' metadata (once: the watch
    goes on from that list), and the leaf Secrets once per authority stepped at the term's
    start (each authority once; a page holds 2,500). Nothing else lists Secrets unless a
    watch falls more than the apiserver's event window behind (410), which a restart of a
    few seconds does not."""
    authorities = client.CustomObjectsApi(api_client).list_cluster_custom_object(
        "certsmith.dev", "v1alpha1", "certificateauthorities"
    )["items"]
    return 2 + len(authorities)


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
    # Status is user-writable, and must not vouch for a Secret. r02's Secret gets r03's
    # certificate and key, and status the Secret's new resourceVersion, as if judged so.
    other = core.read_namespaced_secret("r03-tls", namespace).data
    broken = core.patch_namespaced_secret("r02-tls", namespace, {"data": other})
    forge_status(
        api_client, namespace, "r02", secretResourceVersion=broken.metadata.resource_version
    )
    # r04's Secret untouched, its status promising a renewal a year later than due.
    forge_status(
        api_client,
        namespace,
        "r04",
        renewalTime="2027-06-01T00:00:00Z",
        notAfter="2027-06-02T00:00:00Z",
    )
    counted_from = requests_by_verb(api_client)
    lists_expected = secret_lists_at_a_restart(api_client)
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
    wait_for(
        lambda: leaf_names(certs.secret(api_client, namespace, "r02-tls")) == ["r02.example.com"],
        timeout=30,
        what="the Secret holding another certificate, vouched for by a forged status, issued again",
    )
    wait_for(
        lambda: certs.get(api_client, namespace, "r04")["status"]["renewalTime"]
        == before["r04"]["renewalTime"],
        timeout=30,
        what="the forged renewalTime judged on the Secret and written back",
    )
    time.sleep(3)  # room for any wrongful read or re-issue to show
    made = requests_by_verb(api_client) - counted_from

    # At start: each authority's CA Secrets (root, next root, intermediate) and, at each of
    # its first steps, its CRL signers; the seal key; then the 4 changed Secrets (GET);
    # never one per Certificate (46 others).
    authorities = len(
        client.CustomObjectsApi(api_client).list_cluster_custom_object(
            "certsmith.dev", "v1alpha1", "certificateauthorities"
        )["items"]
    )
    assert made[("GET", "secrets")] <= 4 * authorities + 12, made
    assert made[("LIST", "secrets")] == lists_expected, made
    # One list of the Certificates at the term's start serves the default authority's step
    # and the schedule; kopf's watch lists them once more; another authority's first step
    # lists them for its leaves (and once more when it has revoked serials to re-judge).
    assert made[("LIST", "certificates")] <= 2 * authorities, made
    # A step lists the authorities once (its subordinates, the bundles' claims: three lists
    # before), kopf's watch once; one more for a later look (a step, a bundle repair).
    assert made[("LIST", "certificateauthorities")] <= 2 * authorities + 1, made
    # certsmith's CRDs (labelled) are found by one list at start, none read by name.
    assert made[("GET", "customresourcedefinitions")] == 0, made
    for name in [*names[5:], "r03"]:
        after = certs.get(api_client, namespace, name)["status"]
        assert (after["serialNumber"], after["revision"]) == (
            before[name]["serialNumber"],
            before[name]["revision"],
        ), name
    assert (
        certs.get(api_client, namespace, "r04")["status"]["serialNumber"]
        == before["r04"]["serialNumber"]
    )
    # Status written only for those changed (none for the 46 judged on the list); two for
    # one issued again (Issuing, then Ready).
    assert made[("PATCH", "certificates")] <= 7, made
    # Each records its Secret as written (issued again, repaired), so the next restart
    # finds them unchanged too.
    for name in names[:5]:
        recorded = certs.get(api_client, namespace, name)["status"]["secretResourceVersion"]
        assert (
            recorded == certs.secret(api_client, namespace, f"{name}-tls").metadata.resource_version
        )


def test_secrets_deleted_while_the_operator_starts_are_issued_again(
    api_client, namespace, running_operator
):
    """Whenever during a restart a Secret goes (before the operator's list, between it and
    the watch, after), it is noticed. From the operator's first log line (its term starts
    some 100 ms later), Secrets are deleted by several clients at once, a few every 10 ms,
    for about two seconds: some fall between any two steps of the start."""
    core = client.CoreV1Api(api_client)
    names = [f"d{i:03d}" for i in range(DELETED_DURING_START)]
    for name in names:
        certs.create(
            api_client, namespace, certs.certificate(name, dnsNames=[f"{name}.example.com"])
        )
    for name in names:
        certs.wait_ready(api_client, namespace, name)

    running_operator.stop()
    logged = running_operator.log_path.stat().st_size
    running_operator.start()
    wait_for(
        lambda: running_operator.log_path.stat().st_size > logged,
        timeout=30,
        interval=0.005,
        what="the operator's first log line",
    )

    def delete(name: str) -> None:
        core.delete_namespaced_secret(f"{name}-tls", namespace)
        time.sleep(DELETE_PAUSE_SECONDS)

    with concurrent.futures.ThreadPoolExecutor(DELETERS) as deleters:
        list(deleters.map(delete, names))
    running_operator.wait_serving(api_client)

    def all_back() -> bool:
        return all(secret_exists(core, namespace, f"{name}-tls") for name in names)

    wait_for(all_back, timeout=60, what="every Secret deleted during the start issued again")


def secret_exists(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_secret(name, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_namespaces_created_while_the_operator_starts_get_their_trust_bundle(
    api_client, running_operator
):
    """A term's first authority step writes the bundles of every namespace it lists, and the
    namespaces' first list then writes none: one created between the two must still get
    its bundle. Created by several clients at once from the operator's first log line."""
    core = client.CoreV1Api(api_client)
    names = [f"start-{uuid.uuid4().hex[:8]}" for _ in range(NAMESPACES_DURING_START)]
    running_operator.stop()
    logged = running_operator.log_path.stat().st_size
    running_operator.start()
    wait_for(
        lambda: running_operator.log_path.stat().st_size > logged,
        timeout=30,
        interval=0.005,
        what="the operator's first log line",
    )

    def create(name: str) -> None:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        time.sleep(NAMESPACE_PAUSE_SECONDS)

    try:
        with concurrent.futures.ThreadPoolExecutor(DELETERS) as creators:
            list(creators.map(create, names))
        running_operator.wait_serving(api_client)

        def all_bundled() -> bool:
            return all(bundle_exists(core, name) for name in names)

        wait_for(all_bundled, timeout=60, what="a trust bundle in every namespace")
    finally:
        for name in names:
            core.delete_namespace(name)


def bundle_exists(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_config_map("certsmith-ca", namespace)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_a_lie_in_any_status_field_has_the_restart_judge_the_secret(
    api_client, namespace, running_operator
):
    """Every status field certsmith writes from what it judged is under the seal: one of
    them edited while the operator is down, the restart reads that Certificate's Secret
    and writes the truth back, re-issuing nothing."""

    def ready_condition(current: dict[str, Any], **changed: str) -> list[dict[str, Any]]:
        return [{**c, **changed} if c["type"] == "Ready" else c for c in current["conditions"]]

    lies: dict[str, Any] = {
        "serial": lambda status: {"serialNumber": "0badc0de"},
        "not-before": lambda status: {"notBefore": "2020-01-01T00:00:00Z"},
        "not-after": lambda status: {"notAfter": "2099-01-01T00:00:00Z"},
        "renewal": lambda status: {"renewalTime": "2099-01-01T00:00:00Z"},
        "not-ready": lambda status: {
            "conditions": ready_condition(status, status="False", reason="Expired")
        },
        "reason": lambda status: {"conditions": ready_condition(status, reason="Renewed")},
        "message": lambda status: {"conditions": ready_condition(status, message="trust me")},
    }
    for name in lies:
        certs.create(
            api_client, namespace, certs.certificate(name, dnsNames=[f"{name}.example.com"])
        )
    before = {name: certs.wait_ready(api_client, namespace, name)["status"] for name in lies}
    secret_versions = {
        name: certs.secret(api_client, namespace, f"{name}-tls").metadata.resource_version
        for name in lies
    }

    running_operator.stop()
    for name, lie in lies.items():
        forge_status(api_client, namespace, name, **lie(before[name]))
    running_operator.start()
    running_operator.wait_serving(api_client)

    def truth(status: dict[str, Any]) -> tuple[Any, ...]:
        ready = certs.condition({"status": status})
        assert ready is not None
        return (
            ready["status"],
            ready["reason"],
            ready["message"],
            *(status.get(k) for k in ("notBefore", "notAfter", "renewalTime", "serialNumber")),
        )

    for name in lies:
        wait_for(
            lambda name=name: truth(certs.get(api_client, namespace, name)["status"])
            == truth(before[name]),
            timeout=30,
            what=f"{name}: the lie judged on the Secret and written back",
        )
        after = certs.secret(api_client, namespace, f"{name}-tls").metadata.resource_version
        assert after == secret_versions[name], f"{name}: its Secret was written"
