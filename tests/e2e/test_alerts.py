"""A real Prometheus evaluates certsmith's alert rules against the operator on kind.

Debian's `prometheus` (hack/install-deps) runs on this host, started by the test: it scrapes
every certsmith replica through `kubectl port-forward` as the job `certsmith-metrics` with
`honor_labels: true` (what monitoring/alerts.yaml assumes, docs/runbook.md "Scraping") and
evaluates monitoring/alerts.yaml, the one file the chart's PrometheusRule and
manifests/monitoring are rendered from, unchanged. Scrape and evaluation every 2 s instead
of a minute; the rules' `for:` durations stay as shipped, so an alert that starts to hold is
seen `pending` (CertsmithCertificateNotReady fires after 15 min of it). Beside them, a copy
of the same rules whose `for:` is SHORT_FOR, each alert labelled `rule_copy`, is seen
`firing` on the same series: the expressions, labels and annotations are the shipped ones,
only the wait differs (promtool's tests in make lint check the `for:` durations).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests import builders
from tests.builders import GROUP, VERSION
from tests.support import REPO_ROOT, free_port, kubectl_path, wait_for

pytestmark = pytest.mark.e2e

OPERATOR_NAMESPACE = "certsmith"
JOB = "certsmith-metrics"
RULES = REPO_ROOT / "monitoring" / "alerts.yaml"
RULE_GROUP = "certsmith"
INTERVAL = "2s"
SHORT_FOR = "10s"
COPY_LABEL = "rule_copy"


@dataclass(frozen=True)
class Prometheus:
    """A Prometheus serving its HTTP API at `url`."""

    url: str

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful answer of /api/v1/`path`."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self, name: str, *, copy: bool = False) -> list[dict[str, Any]]:
        """The alerts named `name` that are pending or firing now: of the shipped rules, or
        with `copy` of their copy with a short `for:` (short_for_copy)."""
        return [
            a
            for a in self.api("alerts")["alerts"]
            if a["labels"]["alertname"] == name and (COPY_LABEL in a["labels"]) == copy
        ]

    def rule_group(self) -> dict[str, Any]:
        (group,) = [g for g in self.api("rules")["groups"] if g["name"] == RULE_GROUP]
        return group


def started(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tails(directory: Path) -> str:
    """The last lines of every log in `directory`, for a setup that failed."""
    return "".join(
        f"\n--- {log.name}:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        for log in sorted(directory.glob("*.log"))
    )


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def operator_pods(api: client.ApiClient) -> list[str]:
    pods = client.CoreV1Api(api).list_namespaced_pod(
        OPERATOR_NAMESPACE, label_selector="app.kubernetes.io/name=certsmith"
    )
    return sorted(
        p.metadata.name
        for p in pods.items
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    )


def short_for_copy(rules: dict[str, Any]) -> dict[str, Any]:
    """The rule file `rules` with every group renamed `<name>-short-for`, every alert's
    `for:` set to SHORT_FOR and labelled COPY_LABEL; expressions and annotations kept."""
    groups = []
    for group in rules["groups"]:
        alerts = []
        for rule in group["rules"]:
            if "alert" in rule:
                labels = {**rule.get("labels", {}), COPY_LABEL: "short-for"}
                rule = {**rule, "for": SHORT_FOR, "labels": labels}
            alerts.append(rule)
        groups.append({**group, "name": f"{group['name']}-short-for", "rules": alerts})
    return {"groups": groups}


def prometheus_config(targets: dict[str, str], copy: Path) -> dict[str, Any]:
    """Scrape each pod (name → host:port of its port-forward) as a PodMonitor would: target
    labels namespace and pod, the metrics' own labels kept (honor_labels); evaluate the
    shipped rules and their short-`for:` `copy`."""
    return {
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": [str(RULES), str(copy)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "honor_labels": True,
                "static_configs": [
                    {"targets": [address], "labels": {"namespace": OPERATOR_NAMESPACE, "pod": pod}}
                    for pod, address in targets.items()
                ],
            }
        ],
    }


def port_forwards(
    kubeconfig: str, pods: list[str], home: Path, processes: list[subprocess.Popen[bytes]]
) -> dict[str, str]:
    """A `kubectl port-forward` to each pod's metrics port, added to `processes`, once each
    serves /metrics: pod name → host:port."""
    targets = {}
    for pod in pods:
        port = free_port()
        command = [kubectl_path(), "--kubeconfig", kubeconfig, "port-forward"]
        command += ["--address", "127.0.0.1", "-n", OPERATOR_NAMESPACE]
        command += [f"pod/{pod}", f"{port}:metrics"]
        processes.append(started(command, home / f"port-forward-{pod}.log"))
        targets[pod] = f"127.0.0.1:{port}"
    wait_for(
        lambda: all(answers(f"http://{a}/metrics") for a in targets.values()),
        timeout=60,
        what=f"the metrics of {', '.join(targets)} through kubectl port-forward",
        interval=0.5,
    )
    return targets


def start_prometheus(
    targets: dict[str, str], home: Path, processes: list[subprocess.Popen[bytes]]
) -> Prometheus:
    """Prometheus (data and log in `home`, added to `processes`) on a free port, once it has
    scraped every target."""
    copy = home / "alerts-short-for.yaml"
    copy.write_text(yaml.safe_dump(short_for_copy(yaml.safe_load(RULES.read_text()))))
    (home / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(targets, copy)))
    port = free_port()
    command = ["prometheus", f"--config.file={home / 'prometheus.yml'}"]
    command += [f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}"]
    processes.append(started(command, home / "prometheus.log"))
    server = Prometheus(url=f"http://127.0.0.1:{port}")
    wait_for(
        lambda: answers(f"{server.url}/-/ready"), timeout=60, what="Prometheus ready", interval=0.5
    )
    wait_for(
        lambda: [t["health"] for t in server.api("targets")["activeTargets"]]
        == ["up"] * len(targets),
        timeout=60,
        what="every certsmith replica scraped",
        interval=0.5,
    )
    return server


@pytest.fixture
def prometheus(certsmith_installed: str, e2e_client: client.ApiClient) -> Iterator[Prometheus]:
    """Prometheus scraping every Ready certsmith replica (each through its own port-forward:
    only the replica holding the Lease exports the Certificate series), all targets up.
    Stopped, with its port-forwards, and its directory removed at the end."""
    pods = wait_for(lambda: operator_pods(e2e_client), timeout=180, what="certsmith pods Ready")
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="certsmith-prometheus-") as directory:
        home = Path(directory)
        try:
            try:
                server = start_prometheus(
                    port_forwards(certsmith_installed, pods, home, processes), home, processes
                )
            except AssertionError as error:
                raise AssertionError(f"{error}{log_tails(home)}") from None
            yield server
        finally:
            for process in processes:
                stop(process)


def certificate(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "certificates", name
    )
    return found


def ready_condition(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    conditions = (certificate(api, namespace, name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


def evaluated_since(prometheus: Prometheus, moment: float) -> bool:
    """The rule group has been evaluated after `moment` (Unix seconds, Prometheus's clock)."""
    last = datetime.fromisoformat(prometheus.rule_group()["lastEvaluation"])
    return last.timestamp() > moment


def create_orphan(objects: client.CustomObjectsApi, namespace: str, name: str) -> None:
    """A Certificate of an authority that does not exist: Ready=False IssuerNotReady."""
    objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "certificates",
        builders.certificate(
            name,
            dnsNames=[f"{name}.{namespace}.svc"],
            issuerRef={"name": f"missing-{namespace}"},
        ),
    )


def test_certificate_that_cannot_be_issued_raises_its_alert(
    prometheus: Prometheus, e2e_client: client.ApiClient, e2e_namespace: str
) -> None:
    namespace = e2e_namespace
    objects = client.CustomObjectsApi(e2e_client)
    objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "certificates",
        builders.certificate("healthy", dnsNames=[f"healthy.{namespace}.svc"]),
    )
    wait_for(
        lambda: (ready_condition(e2e_client, namespace, "healthy") or {}).get("status") == "True",
        timeout=120,
        what="Certificate healthy Ready",
        interval=0.5,
    )
    # Quiet: the healthy Certificate's series scraped and the rules evaluated after that
    # raise no alert about its namespace, nor CertsmithDown (the scrape works).
    # max: a replica that held the Lease before may still serve its last value too.
    ready_series = (
        f'max(certsmith_certificate_ready{{namespace="{namespace}", name="healthy"}}) == 1'
    )
    (sample,) = wait_for(
        lambda: prometheus.api("query", query=ready_series)["result"],
        timeout=60,
        what=f"Prometheus to scrape {ready_series}",
        interval=0.5,
    )
    seen_at = float(sample["value"][0])
    wait_for(
        lambda: evaluated_since(prometheus, seen_at),
        timeout=60,
        what="the rules evaluated after the healthy Certificate's series was scraped",
        interval=0.5,
    )
    alerts = prometheus.api("alerts")["alerts"]
    assert [a for a in alerts if a["labels"].get("namespace") == namespace] == []
    assert [a for a in alerts if a["labels"]["alertname"] == "CertsmithDown"] == []
    # Every rule evaluates without error on the operator's real series.
    rules = prometheus.rule_group()["rules"]
    assert {r["name"]: r["health"] for r in rules} == {r["name"]: "ok" for r in rules}

    # Failure: a Certificate of an authority that does not exist is Ready=False
    # IssuerNotReady, which CertsmithCertificateNotReady matches (for: 15m, so pending).
    create_orphan(objects, namespace, "orphan")
    wait_for(
        lambda: (ready_condition(e2e_client, namespace, "orphan") or {}).get("reason")
        == "IssuerNotReady",
        timeout=120,
        what="Certificate orphan Ready=False IssuerNotReady",
        interval=0.5,
    )
    (alert,) = wait_for(
        lambda: [
            a
            for a in prometheus.alerts("CertsmithCertificateNotReady")
            if a["labels"].get("namespace") == namespace
        ],
        timeout=120,
        what=f"CertsmithCertificateNotReady for {namespace}/orphan",
        interval=0.5,
    )
    assert alert["state"] in ("pending", "firing")
    # The replicas' instance and pod labels are aggregated away; the Certificate's stay.
    assert alert["labels"] == {
        "alertname": "CertsmithCertificateNotReady",
        "severity": "warning",
        "job": JOB,
        "namespace": namespace,
        "name": "orphan",
    }
    assert alert["annotations"]["summary"] == f"Certificate {namespace}/orphan is not Ready"
    assert alert["annotations"]["runbook_url"] == ("docs/runbook.md#certsmithcertificatenotready")
    # The same rule with `for: 10s` fires.
    (fired,) = wait_for(
        lambda: [
            a
            for a in prometheus.alerts("CertsmithCertificateNotReady", copy=True)
            if a["labels"].get("namespace") == namespace and a["state"] == "firing"
        ],
        timeout=120,
        what=f"CertsmithCertificateNotReady firing for {namespace}/orphan (for: {SHORT_FOR})",
        interval=0.5,
    )
    assert fired["labels"] == {**alert["labels"], COPY_LABEL: "short-for"}
    assert fired["annotations"] == alert["annotations"]

    # A second failure of the same reason raises the failures counter Prometheus has
    # already seen (the first only created its series): CertsmithIssuanceFailing, by reason.
    failures = 'certsmith_issuance_failures_total{reason="IssuerNotReady"}'
    wait_for(
        lambda: prometheus.api("query", query=failures)["result"],
        timeout=60,
        what=f"Prometheus to scrape {failures}",
        interval=0.5,
    )
    create_orphan(objects, namespace, "orphan-2")
    (failing,) = wait_for(
        lambda: [
            a
            for a in prometheus.alerts("CertsmithIssuanceFailing")
            if a["labels"].get("reason") == "IssuerNotReady"
        ],
        timeout=120,
        what="CertsmithIssuanceFailing for reason IssuerNotReady",
        interval=0.5,
    )
    assert failing["state"] in ("pending", "firing")
    assert failing["labels"] == {
        "alertname": "CertsmithIssuanceFailing",
        "severity": "warning",
        "job": JOB,
        "namespace": OPERATOR_NAMESPACE,
        "reason": "IssuerNotReady",
    }
    # The healthy Certificate stayed quiet throughout.
    assert [
        a
        for a in prometheus.alerts("CertsmithCertificateNotReady")
        if a["labels"].get("namespace") == namespace and a["labels"]["name"] == "healthy"
    ] == []
