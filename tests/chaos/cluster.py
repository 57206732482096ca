"""What chaos tests need beyond the integration helpers.

- `RawApi`: JSON in and out, no client models (decoding thousands of Secrets into models
  would cost the test more CPU than the operator spends issuing them, on shared cores).
- `Observer`: watches Certificates and certsmith's Secrets for the whole run, surviving
  an apiserver restart, and judges every Secret revision and every Ready it sees.
- `restart_apiserver`: SIGTERM the profile's kube-apiserver and bring it back with
  `hack/cluster up`, which starts only the components that are not running.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from kubernetes import client, config

from certsmith.pki import inspect
from tests.builders import GROUP, VERSION
from tests.support import REPO_ROOT, wait_for

CERTIFICATE_LABEL = "certsmith.dev/certificate"
SERIAL_ANNOTATION = "certsmith.dev/serial-number"
REVISION_ANNOTATION = "certsmith.dev/revision"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager")


class ApiStatus(Exception):
    """A non-2xx answer; `body` is the decoded Status object when there is one."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('message', body)}")
        self.status = status
        self.body = body


class RawApi:
    """Plain JSON calls on one connection pool; each thread of a test may share it."""

    def __init__(self, kubeconfig: str, *, pool_size: int = 8) -> None:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = pool_size
        # Callers decide how to retry (through an apiserver restart); urllib3's own
        # retries would only add noise and delay.
        configuration.retries = 0
        self._client = client.ApiClient(configuration)

    def _open(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] = 15,
    ) -> Any:
        if query:
            path = f"{path}?{urlencode(query)}"
        request = self._client.param_serialize(
            method=method,
            resource_path=path,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        method_, url, headers, body_, post = request
        return self._client.call_api(method_, url, headers, body_, post, _request_timeout=timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._open(method, path, **kwargs)
        data = response.read()
        decoded = json.loads(data) if data else {}
        if not 200 <= response.status < 300:
            raise ApiStatus(int(response.status), decoded if isinstance(decoded, dict) else {})
        return decoded

    def watch(
        self, path: str, *, query: Mapping[str, str], resource_version: str
    ) -> Iterator[dict[str, Any]]:
        """Raw watch events from `resource_version` until the server ends the stream."""
        response = self._open(
            "GET",
            path,
            query={
                **query,
                "watch": "true",
                "allowWatchBookmarks": "true",
                "resourceVersion": resource_version,
                "timeoutSeconds": "60",
            },
            timeout=(5, 90),
        )
        if not 200 <= response.status < 300:
            data = response.read()
            raise ApiStatus(int(response.status), json.loads(data) if data else {})
        raw = response.response
        buffer = b""
        try:
            for chunk in raw.stream(amt=None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            raw.release_conn()


# --- judging a Secret ------------------------------------------------------------------


@dataclass(frozen=True)
class SecretView:
    """One revision of a certsmith Secret, judged on arrival."""

    namespace: str
    name: str
    certificate: str
    resource_version: str
    serial: str | None
    """The leaf's serial in tls.crt (lower-case hex without leading zeros, as status has it)."""
    revision: str | None
    problem: str | None
    """Why this Secret would break a TLS client, or None when it is valid."""


def _b64(data: Mapping[str, str], key: str) -> bytes:
    value = data.get(key)
    if not value:
        raise ValueError(f"{key} is missing")
    return base64.b64decode(value)


def judge_secret(secret: Mapping[str, Any], *, now: datetime | None = None) -> SecretView:
    """Whether the key matches the leaf, the chain leads to ca.crt and the leaf is current."""
    metadata = secret.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    data = secret.get("data") or {}
    serial: str | None = None
    problem: str | None = None
    now = now or datetime.now(UTC)
    try:
        chain = x509.load_pem_x509_certificates(_b64(data, "tls.crt"))
        leaf, intermediates = chain[0], chain[1:]
        serial = inspect.serial_hex(leaf)
        key = serialization.load_pem_private_key(_b64(data, "tls.key"), password=None)
        roots = x509.load_pem_x509_certificates(_b64(data, "ca.crt"))
        problem = _chain_problem(leaf, intermediates, roots, key.public_key(), now)
        if problem is None and annotations.get(SERIAL_ANNOTATION) != serial:
            problem = f"annotation serial {annotations.get(SERIAL_ANNOTATION)} != leaf {serial}"
    except (ValueError, TypeError) as error:
        problem = f"unparsable: {error}"
    return SecretView(
        namespace=metadata.get("namespace", ""),
        name=metadata.get("name", ""),
        certificate=(metadata.get("labels") or {}).get(CERTIFICATE_LABEL, ""),
        resource_version=metadata.get("resourceVersion", ""),
        serial=serial,
        revision=annotations.get(REVISION_ANNOTATION),
        problem=problem,
    )


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _chain_problem(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    roots: list[x509.Certificate],
    public_key: Any,
    now: datetime,
) -> str | None:
    if _spki(leaf.public_key()) != _spki(public_key):
        return "tls.key does not match tls.crt"
    if not intermediates:
        return "tls.crt holds no intermediate"
    try:
        leaf.verify_directly_issued_by(intermediates[0])
    except (ValueError, TypeError, InvalidSignature):
        return "the leaf is not signed by the intermediate in tls.crt"
    for root in roots:
        try:
            intermediates[0].verify_directly_issued_by(root)
            break
        except (ValueError, TypeError, InvalidSignature):
            continue
    else:
        return "the intermediate does not chain to ca.crt"
    # A minute of slack: the leaf's notBefore is the operator's clock, ours may be behind.
    if not leaf.not_valid_before_utc - timedelta(minutes=1) <= now < leaf.not_valid_after_utc:
        return f"outside its validity {leaf.not_valid_before_utc}..{leaf.not_valid_after_utc}"
    return None


def ready_condition(certificate: Mapping[str, Any]) -> dict[str, Any] | None:
    for entry in (certificate.get("status") or {}).get("conditions") or []:
        if entry.get("type") == "Ready":
            return entry
    return None


# --- the observer ------------------------------------------------------------------------


@dataclass
class Observations:
    """Everything the observer saw; read it under `Observer.lock`."""

    serials: dict[tuple[str, str], dict[str, SecretView]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    """(namespace, Certificate) → serial → the first Secret revision holding it."""
    serials_by_revision: dict[tuple[str, str], dict[str, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )
    bad_secrets: list[SecretView] = field(default_factory=list)
    ready: dict[tuple[str, str], str] = field(default_factory=dict)
    """(namespace, Certificate) → the serial its latest Ready=True status names."""
    ready_but_invalid: list[str] = field(default_factory=list)
    secret_events: int = 0
    certificate_events: int = 0
    relists: int = 0
    stream_errors: int = 0
    last_write: float = 0.0
    """monotonic time of the latest Secret revision seen."""


class Observer:
    """Two watch threads (Certificates, certsmith's Secrets) plus a checker of Ready claims.

    A Ready=True status naming serial S is checked against the Secret revisions already
    seen; the Secret watch may lag the Certificate watch (they are separate streams), so
    an unseen serial is settled by a GET: the operator writes the Secret before the
    status, so the Secret must hold S then unless a later revision replaced it.
    """

    def __init__(self, api: RawApi, namespaces: set[str]) -> None:
        self._api = api
        self._namespaces = namespaces
        self.lock = threading.Lock()
        self.seen = Observations()
        self._stop = threading.Event()
        self._claims: list[tuple[str, str, str, str, int]] = []
        self._claims_ready = threading.Condition(self.lock)
        self._threads = [
            threading.Thread(target=self._run_watch, args=args, daemon=True, name=args[0])
            for args in (
                ("certificates", f"/apis/{GROUP}/{VERSION}/certificates", {}),
                ("secrets", "/api/v1/secrets", {"labelSelector": CERTIFICATE_LABEL}),
            )
        ]
        self._threads.append(threading.Thread(target=self._run_checker, daemon=True))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._claims_ready:
            self._claims_ready.notify_all()

    def wait_quiet(self, timeout: float) -> None:
        """Until every Ready claim seen so far has been checked."""
        wait_for(lambda: not self._claims, timeout=timeout, what="Ready claims checked")

    # --- watching --------------------------------------------------------------------

    def _run_watch(self, kind: str, path: str, query: dict[str, str]) -> None:
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    listing = self._api.call("GET", path, query=query, timeout=30)
                    for item in listing.get("items") or []:
                        self._handle(kind, item)
                    resource_version = listing["metadata"]["resourceVersion"]
                for event in self._api.watch(path, query=query, resource_version=resource_version):
                    if self._stop.is_set():
                        return
                    obj = event.get("object") or {}
                    if event["type"] == "ERROR":
                        # 410 Gone: our resourceVersion left the watch cache; list again.
                        resource_version = None
                        with self.lock:
                            self.seen.relists += 1
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._handle(kind, obj)
            except ApiStatus as error:
                if error.status == 410:
                    resource_version = None
                    with self.lock:
                        self.seen.relists += 1
                self._backoff()
            except (urllib3.exceptions.HTTPError, OSError, client.ApiException, ValueError):
                # The apiserver is restarting or dropped the stream: resume where we were.
                self._backoff()

    def _backoff(self) -> None:
        with self.lock:
            self.seen.stream_errors += 1
        self._stop.wait(0.2 + random.random() * 0.3)

    def _handle(self, kind: str, obj: Mapping[str, Any]) -> None:
        namespace = obj["metadata"].get("namespace", "")
        if namespace not in self._namespaces:
            return
        if kind == "secrets":
            self._secret(obj)
        else:
            self._certificate(obj)

    def _secret(self, obj: Mapping[str, Any]) -> None:
        view = judge_secret(obj)
        key = (view.namespace, view.certificate)
        with self.lock:
            self.seen.secret_events += 1
            self.seen.last_write = time.monotonic()
            if view.problem is not None:
                self.seen.bad_secrets.append(view)
            if view.serial is not None:
                self.seen.serials[key].setdefault(view.serial, view)
                self.seen.serials_by_revision[key][view.revision or "?"].add(view.serial)

    def _certificate(self, obj: Mapping[str, Any]) -> None:
        ready = ready_condition(obj)
        status = obj.get("status") or {}
        metadata = obj["metadata"]
        with self.lock:
            self.seen.certificate_events += 1
            if ready is None or ready.get("status") != "True":
                return
            serial = str(status.get("serialNumber") or "")
            key = (metadata["namespace"], metadata["name"])
            if self.seen.ready.get(key) == serial:
                return  # the same claim, already checked
            self.seen.ready[key] = serial
            secret_name = (obj.get("spec") or {}).get("secretName", "")
            revision = int(status.get("revision") or 0)
            self._claims.append((key[0], key[1], secret_name, serial, revision))
            self._claims_ready.notify()

    # --- checking Ready claims --------------------------------------------------------

    def _run_checker(self) -> None:
        while not self._stop.is_set():
            with self._claims_ready:
                while not self._claims and not self._stop.is_set():
                    self._claims_ready.wait(1)
                if not self._claims:
                    return
                claim = self._claims[0]
            failure = self._check_claim(*claim)
            with self.lock:
                self._claims.pop(0)
                if failure is not None:
                    self.seen.ready_but_invalid.append(failure)

    def _check_claim(
        self, namespace: str, name: str, secret_name: str, serial: str, revision: int
    ) -> str | None:
        with self.lock:
            seen = self.seen.serials[(namespace, name)].get(serial)
        if seen is not None:
            if seen.problem is None:
                return None
            return f"{namespace}/{name} Ready with serial {serial}: its Secret {seen.problem}"
        for _ in range(50):  # the apiserver may be restarting; the claim stays pending
            try:
                secret = self._api.call(
                    "GET", f"/api/v1/namespaces/{namespace}/secrets/{secret_name}"
                )
                break
            except ApiStatus as error:
                if error.status == 404:
                    return f"{namespace}/{name} Ready with serial {serial} but no Secret"
                self._stop.wait(0.2)
            except (urllib3.exceptions.HTTPError, OSError):
                self._stop.wait(0.2)
        else:
            return None  # unknowable, not counted either way
        view = judge_secret(secret)
        if view.serial == serial:
            if view.problem is None:
                return None
            return f"{namespace}/{name} Ready with serial {serial}: its Secret {view.problem}"
        if int(view.revision or 0) > revision:
            return None  # replaced by a later issuance since; that one is checked on its own
        return (
            f"{namespace}/{name} Ready with serial {serial} (revision {revision}) but its "
            f"Secret holds {view.serial} (revision {view.revision})"
        )


# --- the control plane ---------------------------------------------------------------------


def apiserver_state_dir() -> Path:
    """Where hack/cluster keeps the apiserver profile's pid files (same rule as the script)."""
    cache = Path(os.environ.get("CERTSMITH_CACHE", Path.home() / ".cache" / "certsmith"))
    return Path(os.environ.get("CERTSMITH_STATE", cache / "state")) / "apiserver"


def control_plane_pids() -> dict[str, int]:
    pids = {}
    for component in CONTROL_PLANE:
        try:
            pids[component] = int((apiserver_state_dir() / f"{component}.pid").read_text())
        except (OSError, ValueError):
            continue
    return pids


def process_alive(pid: int) -> bool:
    """Running and not a zombie (the apiserver is not our child, so we cannot reap it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def restart_apiserver(*, grace: float = 10.0) -> tuple[float, float]:
    """SIGTERM kube-apiserver, wait for it to be gone, `hack/cluster up` again.

    kube-apiserver waits up to 60 s for connections it cannot drain (watches); as
    `hack/cluster down` does, a process still draining after `grace` seconds gets SIGKILL.
    It must also be reaped before `hack/cluster up` runs: its `is_running` uses `kill -0`,
    which succeeds on a zombie, and would then wait on an apiserver that never comes.
    Returns (seconds until it was gone, seconds `hack/cluster up` took).
    """
    pid = control_plane_pids()["kube-apiserver"]
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: not process_alive(pid), timeout=grace, what="kube-apiserver exited")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: not Path(f"/proc/{pid}").exists(),
        timeout=60,
        what=f"kube-apiserver (pid {pid}) reaped by its parent",
    )
    exited = time.monotonic()
    result = subprocess.run(
        [str(REPO_ROOT / "hack" / "cluster"), "up", "apiserver"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"hack/cluster up failed:\n{result.stderr}"
    return exited - started, time.monotonic() - exited


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")
