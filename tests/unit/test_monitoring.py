"""monitoring/: the alert rules and the Grafana dashboard read only what certsmith exports
(metrics.py, as served), every panel's PromQL parses (promtool), every alert has its
severity, texts, runbook section and a firing and a quiet promtool test, and
manifests/monitoring carries exactly the same rules and dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from certsmith import metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES = REPO_ROOT / "monitoring" / "alerts.yaml"
RULE_TESTS = REPO_ROOT / "monitoring" / "tests" / "alerts_test.yaml"
DASHBOARD = REPO_ROOT / "monitoring" / "dashboards" / "certsmith.json"
PROMETHEUS_RULE = REPO_ROOT / "manifests" / "monitoring" / "prometheusrule.yaml"
DASHBOARD_CONFIG_MAP = REPO_ROOT / "manifests" / "monitoring" / "grafana-dashboard.yaml"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"

# Labels a scrape adds to every series (docs/runbook.md, Scraping).
TARGET_LABELS = frozenset({"job", "instance", "pod"})
# Series of others that the rules read, with their labels: Prometheus's own, and
# kube-state-metrics' for the Deployment.
EXTERNAL_SERIES = {
    "up": frozenset(),
    "kube_deployment_spec_replicas": frozenset({"namespace", "deployment"}),
    "kube_deployment_status_replicas_available": frozenset({"namespace", "deployment"}),
}
SOME_TIME = datetime(2026, 6, 1, tzinfo=UTC)
# What Grafana substitutes in the dashboard's queries.
DASHBOARD_VARIABLES = {"$__rate_interval": "5m", "$job": "certsmith-metrics"}
PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def exported() -> dict[str, frozenset[str]]:
    """Every sample name certsmith serves on /metrics and its label names, read from the
    exposition after each metric got a value through metrics.py's own functions."""
    metrics.certificate_ready("shop", "web", SOME_TIME, SOME_TIME)
    metrics.issued("RenewalDue", 0.1)
    metrics.FAILURES.labels("IssuanceFailed").inc()
    metrics.authority_state("cluster-root", SOME_TIME, SOME_TIME, "Ready")
    metrics.cluster_trust_bundle_roots("cluster-root", 1)
    metrics.pod_certificate_answered("Issued", "Issued", 0.5)
    metrics.certificate_request_decided("Issued")
    metrics.crl_published("cluster-root", 2, SOME_TIME)
    metrics.certificate_signing_request_answered("Issued")
    try:
        exposition = generate_latest(REGISTRY).decode()
    finally:
        metrics.certificate_forgotten("shop", "web")
        metrics.authority_forgotten("cluster-root")
    series: dict[str, frozenset[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name.startswith("certsmith_"):
                series[sample.name] = frozenset(sample.labels)
    return series


def test_every_metric_of_metrics_py_is_in_the_exposition_read(
    exported: dict[str, frozenset[str]],
) -> None:
    families = {
        family.name
        for family in REGISTRY.collect()
        if family.name.startswith("certsmith_") and family.type in {"counter", "gauge", "histogram"}
    }
    served = {
        name.removesuffix(suffix)
        for name in exported
        for suffix in ("_total", "_bucket", "_count", "_sum", "_created", "")
        if name.endswith(suffix)
    }
    assert families <= served
    assert exported["certsmith_certificate_ready"] == {"namespace", "name"}
    assert exported["certsmith_issuance_latency_seconds_bucket"] == {"le"}
    for name in ("revoked_certificates", "crl_age_seconds", "crl_this_update_timestamp_seconds"):
        assert exported[f"certsmith_{name}"] == {"authority"}


def promql_reads(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """The metric names a PromQL expression selects, each with the label names its
    matchers name, and the label names its by/without/on/ignoring/group_* lists name.
    Enough PromQL for these files: no nested braces in matchers, no string-valued names."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    grouping: set[str] = set()
    for listed in re.findall(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text
    ):
        grouping |= {label.strip() for label in listed.split(",") if label.strip()}
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    selected: dict[str, set[str]] = {}
    for name, matchers in re.findall(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}", text):
        assert name, f"a selector without a metric name in {expr!r}"
        selected.setdefault(name, set()).update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    for name in re.findall(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        if name not in PROMQL_KEYWORDS:
            selected.setdefault(name, set())
    return selected, grouping


@pytest.mark.parametrize(
    ("expr", "selected", "grouping"),
    [
        (
            'sum without (instance, pod) (increase(a_total{reason=~"X|Y"}[10m])) > 0',
            {"a_total": {"reason"}},
            {"instance", "pod"},
        ),
        (
            "max by (job) (max_over_time(b[1d])) > 0 and on (job) c == 0",
            {"b": set(), "c": set()},
            {"job"},
        ),
        ('absent(up{job="x"} == 1)', {"up": {"job"}}, set()),
        ("histogram_quantile(0.9, sum by (le) (rate(d_bucket[5m])))", {"d_bucket": set()}, {"le"}),
        ("time() + clamp_max(e - f, 7 * 86400)", {"e": set(), "f": set()}, set()),
    ],
)
def test_promql_reads(expr: str, selected: dict[str, set[str]], grouping: set[str]) -> None:
    assert promql_reads(expr) == (selected, grouping)


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in _load(RULES)["groups"] for rule in group["rules"]]


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(panel title and refId, the query as Grafana sends it to Prometheus)."""
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in DASHBOARD_VARIABLES.items():
                expr = expr.replace(variable, value)
            yield f"{panel['title']} {target['refId']}", expr


QUERIES = [(rule["alert"], rule["expr"]) for rule in alert_rules()] + list(dashboard_queries())


@pytest.mark.parametrize(("where", "expr"), QUERIES, ids=[where for where, _ in QUERIES])
def test_queries_read_only_exported_series_and_labels(
    exported: dict[str, frozenset[str]], where: str, expr: str
) -> None:
    selected, grouping = promql_reads(expr)
    available: set[str] = set(TARGET_LABELS)
    for name, matched in selected.items():
        known = exported.get(name, EXTERNAL_SERIES.get(name))
        assert known is not None, f"{where}: {name} is not exported (metrics.py)"
        assert matched <= known | TARGET_LABELS, f"{where}: {name} has no {matched - known}"
        available |= known
    assert grouping <= available, f"{where}: no series here has {grouping - available}"


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: hack/install-deps installs Debian's prometheus"
    queries = list(dashboard_queries())
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{index}", "expr": expr}
                    for index, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout


def test_every_dashboard_panel_queries_prometheus_through_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job"}
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert all('job="$job"' in target["expr"] for target in panel["targets"]), panel["title"]


def test_every_alert_has_severity_texts_and_its_runbook_section() -> None:
    headings = set(re.findall(r"^## (\S+)$", RUNBOOK.read_text(), flags=re.MULTILINE))
    for rule in alert_rules():
        alert = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, alert
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, alert
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{alert.lower()}"
        assert alert in headings


def test_every_alert_has_a_firing_and_a_quiet_promtool_test() -> None:
    cases = [case for test in _load(RULE_TESTS)["tests"] for case in test["alert_rule_test"]]
    for alert in {rule["alert"] for rule in alert_rules()}:
        outcomes = [bool(case.get("exp_alerts")) for case in cases if case["alertname"] == alert]
        assert True in outcomes, f"{alert} never fires in {RULE_TESTS.name}"
        assert False in outcomes, f"{alert} is never quiet in {RULE_TESTS.name}"


def test_promtool_input_series_look_like_certsmiths(exported: dict[str, frozenset[str]]) -> None:
    """The tests feed series with exactly the labels certsmith serves (plus a scrape's):
    an alert matching a label certsmith does not set could not pass them."""
    for test in _load(RULE_TESTS)["tests"]:
        for series in test["input_series"]:
            parsed = re.fullmatch(r"(\w+)\{(.*)\}", series["series"])
            assert parsed, series["series"]
            name, labels = parsed.groups()
            names = set(re.findall(r"(\w+)=", labels))
            if name in EXTERNAL_SERIES:
                assert names - TARGET_LABELS <= EXTERNAL_SERIES[name], series["series"]
            else:
                assert names - TARGET_LABELS == exported[name], series["series"]


def test_the_prometheus_rule_carries_the_rule_file() -> None:
    rule = _load(PROMETHEUS_RULE)
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["namespace"] == "certsmith"
    assert rule["spec"] == _load(RULES)


def test_the_dashboard_config_map_carries_the_dashboard() -> None:
    config_map = _load(DASHBOARD_CONFIG_MAP)
    assert config_map["kind"] == "ConfigMap"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["certsmith.json"]) == json.loads(DASHBOARD.read_text())


def certificate_samples(registry: Any) -> dict[tuple[str, str, str], float]:
    """The per-Certificate samples of `registry`'s exposition, by (metric, namespace, name)."""
    exposition = generate_latest(registry).decode()
    return {
        (sample.name, sample.labels["namespace"], sample.labels["name"]): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith("certsmith_certificate_") and "namespace" in sample.labels
    }


EXPIRY = "certsmith_certificate_expiration_timestamp_seconds"
RENEWAL = "certsmith_certificate_renewal_timestamp_seconds"
READY = "certsmith_certificate_ready"


def test_per_certificate_series_follow_ready_not_ready_and_forgotten() -> None:
    later = datetime(2026, 7, 1, tzinfo=UTC)
    try:
        metrics.certificate_not_ready("mem", "never-ready")
        metrics.certificate_ready("mem", "web", later, SOME_TIME)
        assert {k: v for k, v in certificate_samples(REGISTRY).items() if k[1] == "mem"} == {
            (READY, "mem", "never-ready"): 0.0,
            (EXPIRY, "mem", "web"): later.timestamp(),
            (RENEWAL, "mem", "web"): SOME_TIME.timestamp(),
            (READY, "mem", "web"): 1.0,
        }
        metrics.certificate_not_ready("mem", "web")
        metrics.certificate_forgotten("mem", "never-ready")
        assert {k: v for k, v in certificate_samples(REGISTRY).items() if k[1] == "mem"} == {
            (EXPIRY, "mem", "web"): later.timestamp(),
            (RENEWAL, "mem", "web"): SOME_TIME.timestamp(),
            (READY, "mem", "web"): 0.0,
        }
        # What `?name[]=` serves (bench/scale.py asks for one metric so).
        only_ready = REGISTRY.restricted_registry([READY])
        assert {k: v for k, v in certificate_samples(only_ready).items() if k[1] == "mem"} == {
            (READY, "mem", "web"): 0.0
        }
    finally:
        metrics.certificate_forgotten("mem", "web")
        metrics.certificate_forgotten("mem", "never-ready")
    assert not [k for k in certificate_samples(REGISTRY) if k[1] == "mem"]
