"""charts/certsmith: with default values it renders exactly the kustomize install (crds/ and
manifests/, normalised), every value reaches the objects it is documented to change, the
operator accepts the settings it renders (config.from_env), and values.schema.json refuses
bad values. Renders with the project's helm (hack/build-helm, or $HELM) and kustomize with
its kubectl (hack/build-binaries); `hack/render-chart --check` runs this file in `make lint`.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from certsmith import config
from certsmith.admission import admission_policy, webhook_config
from tests.support import kubectl_path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "certsmith"
RULES = REPO_ROOT / "monitoring" / "alerts.yaml"
DASHBOARD = REPO_ROOT / "monitoring" / "dashboards" / "certsmith.json"
NAMESPACE = "certsmith"
# What Helm (and the chart's labels helper) add that a kustomize install has no use for.
CHART_ONLY_LABELS = frozenset(
    {
        "helm.sh/chart",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
    }
)
CHART_ONLY_ANNOTATIONS = frozenset({"helm.sh/resource-policy"})
# Variables of config.py the chart does not set, and why.
NOT_FOR_THE_CHART = {
    # For running the operator outside a cluster; in a pod its service account is used.
    "CERTSMITH_OPERATOR_KUBECONFIG",
}

Object = dict[str, Any]


@cache
def _helm() -> str:
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    built = subprocess.run(
        [str(REPO_ROOT / "hack" / "build-helm")], check=True, capture_output=True, text=True
    )
    return built.stdout.strip().splitlines()[-1]


def _template(
    *arguments: str, tests: bool = False, namespace: str = NAMESPACE
) -> subprocess.CompletedProcess[str]:
    command = [_helm(), "template", "certsmith", str(CHART), "--namespace", namespace]
    if not tests:
        command.append("--skip-tests")
    return subprocess.run([*command, *arguments], capture_output=True, text=True, check=False)


def render(*sets: str, tests: bool = False, namespace: str = NAMESPACE) -> list[Object]:
    """The chart's objects with `--set` each of `sets` (a `key=value` string)."""
    arguments = [argument for value in sets for argument in ("--set", value)]
    rendered = _template(*arguments, tests=tests, namespace=namespace)
    assert rendered.returncode == 0, rendered.stderr
    return [body for body in yaml.safe_load_all(rendered.stdout) if body]


def find(objects: Sequence[Object], kind: str, name: str | None = None) -> Object:
    matches = [
        body
        for body in objects
        if body["kind"] == kind and (name is None or body["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"{len(matches)} {kind} {name or ''} rendered"
    return matches[0]


def kinds(objects: Sequence[Object]) -> set[str]:
    return {body["kind"] for body in objects}


def container(objects: Sequence[Object]) -> Object:
    deployment = find(objects, "Deployment", "certsmith")
    containers: list[Object] = deployment["spec"]["template"]["spec"]["containers"]
    return containers[0]


def env(objects: Sequence[Object]) -> dict[str, str]:
    """The operator container's literal environment variables (fieldRefs left out)."""
    return {item["name"]: item["value"] for item in container(objects)["env"] if "value" in item}


def ports(objects: Sequence[Object]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container(objects)["ports"]}


def _normalised(body: Object) -> Object:
    metadata = dict(body["metadata"])
    for field, dropped in (("labels", CHART_ONLY_LABELS), ("annotations", CHART_ONLY_ANNOTATIONS)):
        kept = {k: v for k, v in (metadata.get(field) or {}).items() if k not in dropped}
        metadata.pop(field, None)
        if kept:
            metadata[field] = kept
    return {**body, "metadata": metadata}


def _keyed(objects: Sequence[Object]) -> dict[tuple[str, str, str], Object]:
    keyed = {}
    for body in objects:
        metadata = body["metadata"]
        key = (body["kind"], metadata.get("namespace", ""), metadata["name"])
        assert key not in keyed, f"{key} twice"
        keyed[key] = _normalised(body)
    return keyed


def kustomize_install() -> list[Object]:
    """What `kubectl apply -f crds/ && kubectl apply -k manifests/` applies."""
    built = subprocess.run(
        [kubectl_path(), "kustomize", str(REPO_ROOT / "manifests")],
        check=True,
        capture_output=True,
        text=True,
    )
    objects = [body for body in yaml.safe_load_all(built.stdout) if body]
    for path in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        objects.append(yaml.safe_load(path.read_text()))
    return objects


def test_default_values_render_exactly_the_kustomize_install() -> None:
    chart = _keyed(render())
    kustomize = _keyed(kustomize_install())
    # The chart leaves its namespace to `helm install --create-namespace` (or the user).
    del kustomize[("Namespace", "", NAMESPACE)]
    assert sorted(chart) == sorted(kustomize)
    for key, body in kustomize.items():
        assert chart[key] == body, f"{key} differs between charts/certsmith and manifests/"


def test_chart_objects_carry_helm_labels_and_crds_are_kept_by_default() -> None:
    objects = render()
    for body in objects:
        labels = body["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "certsmith"
        assert labels["app.kubernetes.io/instance"] == "certsmith"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    crds = [body for body in objects if body["kind"] == "CustomResourceDefinition"]
    assert sorted(body["metadata"]["name"] for body in crds) == [
        "certificateauthorities.certsmith.dev",
        "certificaterequests.certsmith.dev",
        "certificates.certsmith.dev",
    ]
    keep = {"helm.sh/resource-policy": "keep"}
    assert all(body["metadata"]["annotations"] == keep for body in crds)


def test_crd_switches() -> None:
    assert "CustomResourceDefinition" not in kinds(render("crds.enabled=false"))
    unkept = [b for b in render("crds.keep=false") if b["kind"] == "CustomResourceDefinition"]
    assert len(unkept) == 3
    assert all("annotations" not in body["metadata"] for body in unkept)


def test_every_setting_config_py_reads_is_set_by_the_chart_or_said_why_not() -> None:
    source = (REPO_ROOT / "operator" / "certsmith" / "config.py").read_text()
    read = set(re.findall(r'"(CERTSMITH_[A-Z_]+)"', source))
    # Every option on that adds a variable (the client CA is off by default).
    objects = render("webhook.clientCAConfigMap=apiserver-ca")
    deployment_env = {item["name"] for item in container(objects)["env"]}
    assert read - deployment_env == NOT_FOR_THE_CHART


@pytest.mark.parametrize(
    ("sets", "variables"),
    [
        ((), {"CERTSMITH_TRUST_DOMAIN": "cluster.local", "CERTSMITH_WORKERS": "16"}),
        (("config.trustDomain=corp.example",), {"CERTSMITH_TRUST_DOMAIN": "corp.example"}),
        (("config.workers=64",), {"CERTSMITH_WORKERS": "64"}),
        (("config.readinessPort=8181",), {"CERTSMITH_HEALTH_PORT": "8181"}),
        (("metrics.port=9999",), {"CERTSMITH_METRICS_PORT": "9999"}),
        (("webhook.port=10443",), {"CERTSMITH_WEBHOOK_LISTEN_PORT": "10443"}),
        (("webhook.enabled=false",), {"CERTSMITH_WEBHOOKS": "off"}),
        (
            ("webhook.clientCAConfigMap=apiserver-ca",),
            {"CERTSMITH_WEBHOOK_CLIENT_CA": "/etc/certsmith/webhook-client/ca.crt"},
        ),
    ],
)
def test_operator_settings_reach_the_deployment(
    sets: tuple[str, ...], variables: Mapping[str, str]
) -> None:
    rendered = env(render(*sets))
    assert {name: rendered.get(name) for name in variables} == variables


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("config.trustDomain=corp.example", "config.workers=256"),
        ("webhook.port=10443", "metrics.port=9999", "config.readinessPort=8181"),
        ("webhook.enabled=false",),
        ("webhook.clientCAConfigMap=apiserver-ca",),
    ],
)
def test_the_operator_accepts_the_settings_the_chart_renders(
    sets: tuple[str, ...], tmp_path: Path
) -> None:
    """What the Deployment sets goes through config.from_env as in the pod: the files it
    names are stood in for by local ones (the pod's are mounts)."""
    rendered = env(render(*sets))
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    local = {
        **rendered,
        "CERTSMITH_NAMESPACE": NAMESPACE,
        "CERTSMITH_WEBHOOK_CERT_DIR": str(tmp_path / "webhook"),
    }
    if "CERTSMITH_WEBHOOK_CLIENT_CA" in local:
        local["CERTSMITH_WEBHOOK_CLIENT_CA"] = str(ca_file)
    settings = config.from_env(local)
    assert settings.trust_domain == rendered["CERTSMITH_TRUST_DOMAIN"]
    assert settings.workers == int(rendered["CERTSMITH_WORKERS"])
    assert settings.health_port == int(rendered["CERTSMITH_HEALTH_PORT"])
    assert settings.metrics_port == int(rendered["CERTSMITH_METRICS_PORT"])
    assert settings.webhooks == (rendered["CERTSMITH_WEBHOOKS"] == "on")
    if settings.webhooks:
        assert settings.webhook_port == int(rendered["CERTSMITH_WEBHOOK_LISTEN_PORT"])
        assert settings.webhook_service == "certsmith-webhook"


def test_ports_reach_containers_probes_and_services() -> None:
    objects = render(
        "config.readinessPort=8181",
        "config.livenessPort=8088",
        "metrics.port=9999",
        "webhook.port=10443",
    )
    assert ports(objects) == {"webhook": 10443, "health": 8088, "readiness": 8181, "metrics": 9999}
    assert container(objects)["args"] == ["--liveness=http://0.0.0.0:8088/healthz"]
    metrics_service = find(objects, "Service", "certsmith-metrics")
    assert metrics_service["spec"]["ports"] == [
        {"name": "metrics", "port": 9999, "targetPort": "metrics"}
    ]
    pod = find(objects, "Deployment")["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9999"


ADMISSION_KINDS = {
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}


def test_webhooks_off_installs_no_admission_objects() -> None:
    objects = render("webhook.enabled=false")
    assert not kinds(objects) & ADMISSION_KINDS
    assert [b["metadata"]["name"] for b in objects if b["kind"] == "Service"] == [
        "certsmith-metrics"
    ]
    assert "webhook" not in ports(objects)


def test_webhook_configurations_follow_values_and_namespace() -> None:
    objects = render(
        "webhook.timeoutSeconds.podInjection=20",
        "webhook.timeoutSeconds.certificateValidation=3",
        "config.trustDomain=corp.example",
        namespace="security",
    )
    mutating = find(objects, "MutatingWebhookConfiguration", "certsmith.dev")["webhooks"]
    validating = find(objects, "ValidatingWebhookConfiguration", "certsmith.dev")["webhooks"]
    assert [hook["timeoutSeconds"] for hook in mutating + validating] == [20, 3, 3]
    # What CEL judges is left out, for the release's namespace and trust domain.
    assert validating[0]["matchConditions"] == webhook_config.validating_match_conditions(
        "security", "corp.example"
    )
    for hook in mutating + validating:
        assert hook["clientConfig"]["service"]["name"] == "certsmith-webhook"
        assert hook["clientConfig"]["service"]["namespace"] == "security"
        # The install never sets the caBundle: the operator keeps it (README, GitOps).
        assert "caBundle" not in hook["clientConfig"]


def test_admission_policy_is_the_operators_for_the_release_namespace() -> None:
    """The policy refuses Certificates in the release namespace (the operator's), with the
    message and rules admission_policy gives; the binding enforces it."""
    objects = render(namespace="security")
    for kind, expected in (
        ("ValidatingAdmissionPolicy", admission_policy.policy(operator_namespace="security")),
        ("ValidatingAdmissionPolicyBinding", admission_policy.binding()),
    ):
        body = _normalised(find(objects, kind, admission_policy.POLICY_NAME))
        assert body == expected


def test_client_ca_config_map_is_mounted_where_the_variable_points() -> None:
    objects = render("webhook.clientCAConfigMap=apiserver-ca")
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-client-ca")
    assert volume["configMap"] == {
        "name": "apiserver-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "webhook-client-ca")
    assert Path(mount["mountPath"]) / "ca.crt" == Path(env(objects)["CERTSMITH_WEBHOOK_CLIENT_CA"])


def test_replicas_disruption_budget_and_anti_affinity() -> None:
    objects = render("replicaCount=3", "podDisruptionBudget.minAvailable=2")
    assert find(objects, "Deployment")["spec"]["replicas"] == 3
    assert find(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    affinity = find(objects, "Deployment")["spec"]["template"]["spec"]["affinity"]
    term = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    # One replica: a budget would block every drain.
    assert "PodDisruptionBudget" not in kinds(render("replicaCount=1"))
    assert "PodDisruptionBudget" not in kinds(render("podDisruptionBudget.enabled=false"))


def test_pod_settings_reach_the_deployment() -> None:
    objects = render(
        "image.repository=registry.example/certsmith",
        "image.tag=1.2.3",
        "image.pullPolicy=Always",
        "imagePullSecrets[0].name=regcred",
        "resources.requests.cpu=250m",
        "resources.limits.memory=1Gi",
        "nodeSelector.pool=system",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Exists",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].key=pool",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
        "podSecurityContext.fsGroup=65532",
        "securityContext.privileged=false",
        "priorityClassName=system-cluster-critical",
        "podAnnotations.team=platform",
        "podLabels.tier=control",
    )
    pod = find(objects, "Deployment")["spec"]["template"]
    spec = pod["spec"]
    operator = container(objects)
    assert operator["image"] == "registry.example/certsmith:1.2.3"
    assert operator["imagePullPolicy"] == "Always"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert operator["resources"] == {
        "requests": {"cpu": "250m", "memory": "128Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert spec["nodeSelector"] == {"pool": "system"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    # Affinity given replaces the default anti-affinity.
    assert list(spec["affinity"]) == ["nodeAffinity"]
    assert spec["securityContext"]["fsGroup"] == 65532
    assert operator["securityContext"]["privileged"] is False
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert pod["metadata"]["annotations"]["team"] == "platform"
    assert pod["metadata"]["labels"] == {"app.kubernetes.io/name": "certsmith", "tier": "control"}


def test_image_tag_defaults_to_the_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = container(render("image.tag="))["image"]
    assert image == f"certsmith/operator:{chart['appVersion']}"


def test_service_monitor_scrapes_the_job_the_alerts_expect() -> None:
    objects = render(
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.interval=15s",
        "metrics.serviceMonitor.labels.release=prometheus",
    )
    monitor = find(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    # A ServiceMonitor's job is the Service's name: the one monitoring/alerts.yaml uses.
    assert find(objects, "Service", "certsmith-metrics")["metadata"]["labels"] == {
        **monitor["spec"]["selector"]["matchLabels"],
        **{k: v for k, v in monitor["metadata"]["labels"].items() if k != "release"},
    }
    assert 'job="certsmith-metrics"' in RULES.read_text()
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "metrics",
            "path": "/metrics",
            "interval": "15s",
            "scrapeTimeout": "10s",
            "honorLabels": True,
        }
    ]
    assert "ServiceMonitor" not in kinds(render())


def test_pod_monitor_sets_the_job_the_alerts_expect() -> None:
    objects = render("metrics.podMonitor.enabled=true", "metrics.podMonitor.honorLabels=false")
    endpoint = find(objects, "PodMonitor")["spec"]["podMetricsEndpoints"][0]
    assert endpoint["honorLabels"] is False
    assert endpoint["relabelings"] == [{"targetLabel": "job", "replacement": "certsmith-metrics"}]
    assert "PodMonitor" not in kinds(render())


def test_prometheus_rule_is_the_alerts_file_untouched_by_templating() -> None:
    rule = find(render("metrics.prometheusRule.enabled=true"), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert "{{ $labels." in RULES.read_text()
    assert "PrometheusRule" not in kinds(render())


def _rule_texts(spec: Object) -> str:
    """Every alert's expression and description, one after the other."""
    return "\n".join(
        f"{rule['expr']}\n{rule['annotations']['description']}"
        for group in spec["groups"]
        for rule in group["rules"]
    )


def test_prometheus_rule_watches_the_release_namespaces_deployment() -> None:
    objects = render("metrics.prometheusRule.enabled=true", namespace="platform")
    rendered = _rule_texts(find(objects, "PrometheusRule")["spec"])
    assert 'namespace="certsmith"' in _rule_texts(yaml.safe_load(RULES.read_text()))
    assert 'namespace="certsmith"' not in rendered
    assert 'kube_deployment_spec_replicas{namespace="platform", deployment="certsmith"}' in rendered
    assert "Deployment platform/certsmith" in rendered


def test_dashboard_config_map_is_the_dashboard_file() -> None:
    objects = render("dashboard.enabled=true", "dashboard.labels.grafana_dashboard=certsmith")
    config_map = find(objects, "ConfigMap", "certsmith-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "certsmith"
    assert config_map["data"]["certsmith.json"].strip() == DASHBOARD.read_text().strip()
    assert "ConfigMap" not in kinds(render())


def test_network_policy_admits_webhook_metrics_and_probes() -> None:
    objects = render(
        "networkPolicy.enabled=true",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
    )
    ingress = find(objects, "NetworkPolicy")["spec"]["ingress"]
    assert [[port["port"] for port in rule["ports"]] for rule in ingress] == [
        ["webhook"],
        ["metrics"],
        ["health", "readiness"],
    ]
    assert ingress[1]["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    assert "NetworkPolicy" not in kinds(render())


def test_helm_test_creates_a_certificate_outside_the_release_namespace() -> None:
    objects = render("image.tag=9.9.9", "test.timeoutSeconds=300", tests=True)
    pod = find(objects, "Pod", "certsmith-helm-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    test_container = pod["spec"]["containers"][0]
    assert test_container["image"] == "certsmith/operator:9.9.9"
    # The release namespace holds the CA keys: Certificates there are refused.
    assert test_container["command"][-2:] == ["certsmith-helm-test", "300"]
    namespace = find(objects, "Namespace", "certsmith-helm-test")
    assert namespace["metadata"]["annotations"]["helm.sh/hook"] == "test"
    for body in objects:
        if body["metadata"]["name"].endswith("helm-test"):
            policy = body["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
            assert policy == "before-hook-creation,hook-succeeded"
    # No selector of the release counts the test Pod as a replica.
    selector = find(render(tests=True), "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    labels = pod["metadata"]["labels"]
    assert not selector.items() <= labels.items()
    for service in (b for b in objects if b["kind"] == "Service"):
        assert not service["spec"]["selector"].items() <= labels.items()


def _refusals() -> Iterator[tuple[str, ...]]:
    yield ("--set-string", "replicaCount=two")
    yield ("--set", "replicaCount=0")
    yield ("--set", "config.workers=0")
    yield ("--set", "config.workers=257")
    yield ("--set-string", "config.trustDomain=Corp.Example")
    yield ("--set", "metrics.port=0")
    yield ("--set", "webhook.port=65536")
    yield ("--set", "webhook.timeoutSeconds.podInjection=31")
    yield ("--set", "webhook.timeoutSeconds.certificateValidation=0")
    yield ("--set", "image.pullPolicy=Sometimes")
    yield ("--set", "crds.keep=maybe")
    yield ("--set", "metrics.serviceMonitor.interval=often")
    yield ("--set", "replicas=2")
    yield ("--set-string", "resources.limits.cpu=abc")


@pytest.mark.parametrize("arguments", list(_refusals()))
def test_schema_refuses_bad_values(arguments: tuple[str, ...]) -> None:
    rendered = _template(*arguments)
    assert rendered.returncode != 0
    assert "schema" in rendered.stderr
    key = arguments[1].split("=")[0].split(".")[-1]
    assert key in rendered.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ("--set", "config.readinessPort=9443"),
            "config.readinessPort and webhook.port are both 9443",
        ),
        (
            ("--set", "config.livenessPort=8081"),
            "config.livenessPort and config.readinessPort are both 8081",
        ),
        (("--set", "metrics.port=8080"), "config.livenessPort and metrics.port are both 8080"),
        (
            ("--set", "replicaCount=2,podDisruptionBudget.minAvailable=2"),
            "podDisruptionBudget.minAvailable (2) must be below replicaCount (2)",
        ),
    ],
)
def test_values_that_cannot_work_together_are_refused(
    arguments: tuple[str, ...], message: str
) -> None:
    rendered = _template(*arguments)
    assert rendered.returncode != 0
    assert message in rendered.stderr
