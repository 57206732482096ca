"""`kubectl certsmith status`: which Certificates count as not Ready, and what is shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from certsmith.cli import output, status
from certsmith.podcerts.apis import PodCertificateApis
from tests import builders

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def certificate(
    name: str,
    *,
    namespace: str = "shop",
    ready: str | None = "True",
    reason: str = "Issued",
    message: str = "the certificate is valid and up to date",
    not_after: datetime | None = NOW + timedelta(days=60),
    generation: int = 1,
    observed: int = 1,
) -> dict[str, Any]:
    reported: dict[str, Any] = {}
    if ready is not None:
        reported["conditions"] = [
            builders.condition(ready, reason=reason, message=message, observed_generation=observed)
        ]
    if not_after is not None:
        reported["notAfter"] = output.format_time(not_after)
        reported["renewalTime"] = output.format_time(not_after - timedelta(days=30))
        reported["serialNumber"] = "abc"
    return builders.certificate(name, namespace=namespace, generation=generation, status=reported)


def test_a_broken_certificate_is_listed_with_its_reason_and_fails_the_exit_code():
    summary = status.summarize(
        [
            certificate("web"),
            certificate(
                "broken",
                ready="False",
                reason="InvalidSpec",
                message="spec.dnsNames[0]: 'bad..name' is not a valid DNS name",
                not_after=None,
            ),
        ],
        NOW,
        limit=10,
    )
    assert [s.name for s in summary.not_ready] == ["broken"]
    assert status.exit_code(summary) == 1
    text = status.render(summary, NOW, where="namespace shop")
    lines = text.splitlines()
    assert lines[0] == "1 of 2 Certificates in namespace shop are not Ready:"
    assert lines[1].split() == ["NAME", "NAMESPACE", "READY", "REASON", "MESSAGE"]
    assert lines[2].split()[:4] == ["broken", "shop", "False", "InvalidSpec"]
    assert "'bad..name' is not a valid DNS name" in lines[2]


def test_all_ready_exits_zero_and_lists_the_soonest_expiry_first():
    summary = status.summarize(
        [
            certificate("later", not_after=NOW + timedelta(days=80)),
            certificate("soon", not_after=NOW + timedelta(hours=5)),
            certificate("middle", not_after=NOW + timedelta(days=10)),
        ],
        NOW,
        limit=2,
    )
    assert status.exit_code(summary) == 0
    text = status.render(summary, NOW, where="all namespaces")
    assert text.startswith("All 3 Certificates in all namespaces are Ready.")
    rows = text.split("Expiring soonest:\n")[1].splitlines()
    assert rows[0].split() == ["NAME", "NAMESPACE", "EXPIRES", "RENEWAL", "EXPIRES", "IN"]
    assert [row.split()[0] for row in rows[1:]] == ["soon", "middle"]
    assert rows[1].split()[-1] == "5h"


def test_ready_for_an_older_generation_is_not_taken_at_its_word():
    state = status.certificate_state(certificate("web", generation=3, observed=2), NOW)
    assert (state.ready, state.reason) == ("Unknown", "Reconciling")
    assert "generation 3" in state.message


def test_an_expired_certificate_still_marked_ready_is_reported():
    state = status.certificate_state(certificate("web", not_after=NOW - timedelta(hours=1)), NOW)
    assert (state.ready, state.reason) == ("False", "Expired")


def test_a_certificate_the_operator_has_not_seen_is_pending():
    state = status.certificate_state(certificate("new", ready=None, not_after=None), NOW)
    assert (state.ready, state.reason) == ("Unknown", "Pending")


def test_json_carries_the_verdict_and_both_lists():
    summary = status.summarize(
        [certificate("web"), certificate("bad", ready="False", reason="InvalidSpec")],
        NOW,
        limit=10,
    )
    document = status.to_json(
        summary, NOW, PodCertificateApis(requests="v1", bundles="v1"), status.requests_summary([])
    )
    assert document["allReady"] is False
    assert [c["name"] for c in document["notReady"]] == ["bad"]
    assert document["expiringSoonest"][0]["expiresInSeconds"] == 60 * 86400
    assert document["podCertificateApis"] == {
        "podCertificateRequests": "v1",
        "clusterTrustBundles": "v1",
        "notServed": [],
    }


def test_the_pod_certificate_apis_served_are_shown_with_their_version():
    assert status.render_apis(PodCertificateApis(requests="v1beta1", bundles="v1")) == (
        "Pod-certificate APIs:\n"
        "  podcertificaterequests.certificates.k8s.io: served in v1beta1\n"
        "  clustertrustbundles.certificates.k8s.io: served in v1"
    )


def test_an_api_not_served_is_shown_with_how_to_turn_it_on():
    apis = PodCertificateApis(requests="v1", bundles=None)
    lines = status.render_apis(apis).splitlines()
    assert lines[1] == "  podcertificaterequests.certificates.k8s.io: served in v1"
    assert lines[2] == f"  {apis.unserved()[0]}"
    assert lines[2].startswith("  clustertrustbundles.certificates.k8s.io is not served")
    assert "ClusterTrustBundleProjection feature gates" in lines[2]
    assert len(lines) == 3
    unserved = status.to_json(
        status.summarize([], NOW, limit=1), NOW, apis, status.requests_summary([])
    )["podCertificateApis"]
    assert unserved["clusterTrustBundles"] is None
    assert unserved["notServed"] == apis.unserved()


def test_nothing_found_says_where_it_looked():
    summary = status.summarize([], NOW, limit=10)
    assert status.render(summary, NOW, where="namespace x") == (
        "No Certificates found in namespace x."
    )
    assert status.exit_code(summary) == 0


def _request(name: str, namespace: str, ready: tuple[str, str, str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"issuerRef": {"name": "cluster-root"}},
    }
    if ready is not None:
        status, reason, message = ready
        body["status"] = {
            "conditions": [
                {"type": "Ready", "status": status, "reason": reason, "message": message}
            ]
        }
    return body


def test_certificate_requests_waiting_or_not_ready_are_listed() -> None:
    requests = status.requests_summary(
        [
            _request("ok", "a", ("True", "Issued", "signed")),
            _request("wait", "b", ("False", "Pending", "waiting for approval: ...")),
            _request("new", "a", None),
            _request("no", "a", ("False", "Denied", "denied: gone")),
        ]
    )
    assert [(r["namespace"], r["name"]) for r in requests.pending] == [("a", "new"), ("b", "wait")]
    assert requests.not_ready == (
        {
            "namespace": "a",
            "name": "no",
            "issuer": "cluster-root",
            "reason": "Denied",
            "message": "denied: gone",
        },
    )
    text = status.render_requests(requests, where="all namespaces")
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == (
        "2 CertificateRequests in all namespaces wait for a decision "
        "(kubectl certsmith approve|deny NAME -n NAMESPACE):"
    )
    assert lines[2].split()[:3] == ["new", "a", "cluster-root"]
    assert "1 CertificateRequests in all namespaces are not Ready:" in lines
    assert lines[-1].split()[:3] == ["no", "a", "Denied"]
    assert status.render_requests(status.requests_summary([]), where="x") is None
