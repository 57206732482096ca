"""The operator under test: `python -m certsmith` as a real process against the apiserver tier."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from kubernetes import client, utils

from tests.support import REPO_ROOT, free_port, install_admission, wait_for

OPERATOR_NAMESPACE = "certsmith"


class OperatorProcess:
    """Starts, kills and restarts the operator; its log goes to a file for failure reports."""

    def __init__(
        self,
        kubeconfig: str,
        log_path: Path,
        identity: str = "replica-0",
        *,
        connect_via: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        # Settings of this replica's own (e.g. CERTSMITH_WEBHOOKS=off), over the defaults.
        self.env = dict(env or {})
        # The kubeconfig the operator itself uses, when its path to the apiserver differs.
        self.connect_via = connect_via or kubeconfig
        self.identity = identity
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.webhook_port = free_port()
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.liveness_port = free_port()
        # Its own, as each pod has its own emptyDir: two replicas writing one pair of files
        # loaded each other's half-written pair (KEY_VALUES_MISMATCH).
        self.webhook_dir = log_path.parent / f"{log_path.stem}-webhook"

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": self.connect_via,
            "CERTSMITH_NAMESPACE": OPERATOR_NAMESPACE,
            "CERTSMITH_IDENTITY": self.identity,
            "CERTSMITH_WEBHOOK_LISTEN_PORT": str(self.webhook_port),
            "CERTSMITH_WEBHOOK_CERT_DIR": str(self.webhook_dir),
            "CERTSMITH_METRICS_PORT": str(self.metrics_port),
            "CERTSMITH_HEALTH_PORT": str(self.health_port),
            **self.env,
        }
        if env.get("CERTSMITH_WEBHOOKS", "on").lower() not in ("off", "false", "no", "0"):
            # The install's admission objects, applied as an installer does (the operator
            # never creates them). The apiserver runs on the host here, so it calls this
            # replica on loopback; the last replica started with webhooks is the one called.
            install_admission(self.kubeconfig, f"https://127.0.0.1:{self.webhook_port}")
        client_pki = webhook_client_pki(self.kubeconfig)
        if client_pki is not None:
            env["CERTSMITH_WEBHOOK_CLIENT_CA"] = str(client_pki / "client-ca.crt")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "certsmith",
                f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_serving(self, api_client: client.ApiClient) -> None:
        """Until the CA is Ready and the webhook answers on its port; on timeout the
        AssertionError carries the log tail."""
        try:
            wait_for(lambda: authority_ready(api_client), timeout=60, what="cluster-root Ready")
            wait_for(self._webhook_listening, timeout=30, what="webhook server listening")
        except AssertionError as error:
            alive = self.process is not None and self.process.poll() is None
            raise AssertionError(
                f"{error}; process running: {alive}; log tail:\n{self.log_tail(80)}"
            ) from None

    def wait_ready(self, timeout: float = 60, what: str = "the replica ready") -> None:
        """Until /readyz answers 200; on timeout the AssertionError carries its last answer
        and this replica's log tail, which say why."""
        try:
            wait_for(lambda: self.readyz() == 200, timeout=timeout, what=what)
        except AssertionError as error:
            status, body = self.probe(self.health_port, "readyz")
            alive = self.process is not None and self.process.poll() is None
            raise AssertionError(
                f"{error}; /readyz: {status} {body.strip()!r}; process running: {alive};"
                f" log tail:\n{self.log_tail()}"
            ) from None

    def readyz(self) -> int | None:
        """The status code of /readyz, or None while nothing answers on its port."""
        return self.probe(self.health_port, "readyz")[0]

    def healthz(self) -> int | None:
        """The status code of kopf's liveness probe, or None while nothing answers."""
        return self.probe(self.liveness_port, "healthz")[0]

    @staticmethod
    def probe(port: int, path: str) -> tuple[int | None, str]:
        """(status code, body) of a probe endpoint; (None, "") while nothing answers."""
        url = f"http://127.0.0.1:{port}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return int(answer.status), answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return None, ""

    def _webhook_listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.webhook_port)) == 0

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def webhook_client_pki(kubeconfig: str) -> Path | None:
    """hack/webhook-client-pki's directory (the apiserver's client certificate for webhooks
    and its CA) when hack/cluster made one next to the kubeconfig; the operator under test
    then refuses any other caller."""
    directory = Path(kubeconfig).parent / "webhook-client"
    return directory if (directory / "client-ca.crt").exists() else None


def _install_crds(api_client: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(api_client)
    for path in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        try:
            utils.create_from_yaml(api_client, str(path))
        except utils.FailToCreateError as error:
            if not all(e.status == 409 for e in error.api_exceptions):
                raise
    for name in (
        "certificates.certsmith.dev",
        "certificateauthorities.certsmith.dev",
        "certificaterequests.certsmith.dev",
    ):
        wait_for(
            lambda n=name: any(
                c.type == "Established" and c.status == "True"
                for c in extensions.read_custom_resource_definition(n).status.conditions or []
            ),
            timeout=30,
            what=f"CRD {name} established",
        )


def authority_ready(api_client: client.ApiClient, name: str = "cluster-root") -> bool:
    objects = client.CustomObjectsApi(api_client)
    try:
        ca = objects.get_cluster_custom_object(
            "certsmith.dev", "v1alpha1", "certificateauthorities", name
        )
    except client.ApiException:
        return False
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (ca.get("status") or {}).get("conditions", [])
    )


TEST_GRANT_LABEL = "certsmith.dev/test-grants"


def _grant_test_names(api_client: client.ApiClient) -> None:
    """Test namespaces may use example.com names and 10/8 addresses (isolation is on by
    default); tests of the isolation policy itself use namespaces without the label."""
    objects = client.CustomObjectsApi(api_client)
    patched = objects.patch_cluster_custom_object(
        "certsmith.dev",
        "v1alpha1",
        "certificateauthorities",
        "cluster-root",
        {
            "spec": {
                "policy": {
                    "grants": [
                        {
                            "namespaceSelector": {"matchLabels": {TEST_GRANT_LABEL: "true"}},
                            "dnsNames": ["*.example.com", "*.example"],
                            "emailAddresses": ["*@example.com"],
                            "ipRanges": ["10.0.0.0/8"],
                        }
                    ]
                }
            }
        },
    )
    generation = patched["metadata"]["generation"]

    def grant_loaded() -> bool:
        ca = objects.get_cluster_custom_object(
            "certsmith.dev", "v1alpha1", "certificateauthorities", "cluster-root"
        )
        conditions = (ca.get("status") or {}).get("conditions", [])
        return any(c.get("observedGeneration") == generation for c in conditions)

    wait_for(grant_loaded, timeout=30, what="the test grant loaded by the operator")


@pytest.fixture(scope="session")
def operator(
    kubeconfig: str, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    _install_crds(api_client)
    core = client.CoreV1Api(api_client)
    try:
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=OPERATOR_NAMESPACE))
        )
    except client.ApiException as error:
        if error.status != 409:
            raise
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(kubeconfig, log_path)
    process.start()
    process.wait_serving(api_client)
    _grant_test_names(api_client)
    yield process
    process.stop()


@pytest.fixture
def running_operator(operator: OperatorProcess, api_client: client.ApiClient):
    """The session's operator, restarted first if an earlier test left it stopped."""
    if operator.process is None or operator.process.poll() is not None:
        operator.start()
        operator.wait_serving(api_client)
    yield operator
    if operator.process is not None and operator.process.poll() is not None:
        pytest.fail(f"the operator exited; its log ends with:\n{operator.log_tail()}")


@pytest.fixture
def validating_webhook_down(api_client: client.ApiClient, running_operator) -> Iterator[None]:
    """Certificate admission off, as during an outage: the validating webhook and the
    ValidatingAdmissionPolicy's binding unregistered; restored after."""
    admission = client.AdmissionregistrationV1Api(api_client)
    saved = api_client.sanitize_for_serialization(
        admission.read_validating_webhook_configuration("certsmith.dev")
    )
    saved_binding = api_client.sanitize_for_serialization(
        admission.read_validating_admission_policy_binding("certsmith.dev")
    )
    admission.delete_validating_webhook_configuration("certsmith.dev")
    admission.delete_validating_admission_policy_binding("certsmith.dev")
    time.sleep(1)  # the apiserver drops them from its caches asynchronously
    yield
    for body in (saved, saved_binding):
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            body["metadata"].pop(key, None)
    for create, body in (
        (admission.create_validating_admission_policy_binding, saved_binding),
        (admission.create_validating_webhook_configuration, saved),
    ):
        try:
            create(body)
        except client.ApiException as error:
            if error.status != 409:  # an operator (re)started meanwhile: installed again
                raise
    time.sleep(1)  # and take them up asynchronously
