"""What users do, in random order, against the real apiserver: a model-based test.

A hypothesis `RuleBasedStateMachine` creates, deletes and re-points Certificates, edits
their `secretTemplate`, pre-creates Secrets by hand, adds its own labels and data keys to
certsmith's Secrets, restores one Secret's certificate into another, deletes Secrets and
trust bundles, toggles a namespace's grant, asks
for renewals, and creates, rotates and deletes a CertificateAuthority. The machine keeps a
model of what each Certificate should be (Ready, or Ready=False for a reason) and of what
belongs to whom. After every step it waits for the cluster to agree, then checks:

- every Certificate that should be Ready is, with a Secret whose chain verifies to its
  `ca.crt`, whose key matches, whose leaf names what the spec names, and a status serial
  equal to the Secret's;
- every Certificate that should not be Ready says why (SecretConflict, PolicyDenied,
  IssuerNotReady), and never claims Ready;
- a Secret certsmith did not create is never modified; what a user added to one of
  certsmith's Secrets (a label, a data key) is kept; template keys removed from the spec
  leave the Secret;
- no Certificate is re-issued more often than its spec and the steps imply (revision at
  most 1 + the issuance triggers it saw);
- a root rotation finishes (phase Ready) or names what blocks it.

Sizes: CERTSMITH_MODEL_EXAMPLES (sequences, default 5) x CERTSMITH_MODEL_STEPS (steps per
sequence, default 15); CI runs the defaults. The figures of a run are printed at the end.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from kubernetes import client

from tests import builders
from tests.chaos.cluster import GROUP, VERSION, judge_secret, ready_condition
from tests.support import wait_for

pytestmark = pytest.mark.chaos

EXAMPLES = int(os.environ.get("CERTSMITH_MODEL_EXAMPLES", "5"))
STEPS = int(os.environ.get("CERTSMITH_MODEL_STEPS", "15"))
SETTLE_SECONDS = 45.0
ROTATION_SECONDS = 120.0

CERT_NAMES = ("alpha", "beta", "gamma")
SECRET_NAMES = ("one-tls", "two-tls", "three-tls")
GRANT_LABEL = "certsmith.dev/test-grants"
"""The chaos session's cluster-root grants `*.example.com` to namespaces with this label."""
TEMPLATE_KEYS = ("team", "tier")
USER_LABEL, USER_DATA_KEY = "backup", "keystore.p12"
ROTATE_ANNOTATION = "certsmith.dev/rotate-requested-at"
RENEW_ANNOTATION = "certsmith.dev/renew-requested-at"

TEMPLATES = st.dictionaries(st.sampled_from(TEMPLATE_KEYS), st.sampled_from(["a", "b"]))
FIGURES: Counter[str] = Counter()


@dataclass
class CertModel:
    secret_name: str
    granted_names: bool
    """dnsNames need the namespace's grant (`*.example.com`), else only its own names."""
    issuer: str
    template: dict[str, str]
    removed_template_keys: set[str] = field(default_factory=set)
    triggers: int = 1
    """Issuances this Certificate may have had: creation plus each step that may re-issue."""
    renewal_request: str | None = None
    """The latest renew-requested-at; its Secret must show it honoured."""


class UserModel(RuleBasedStateMachine):
    """One namespace of its own and one CertificateAuthority per sequence."""

    api_client: client.ApiClient  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self.core = client.CoreV1Api(self.api_client)
        self.objects = client.CustomObjectsApi(self.api_client)
        self.namespace = f"m-{uuid.uuid4().hex[:8]}"
        self.authority = f"model-{uuid.uuid4().hex[:6]}"
        self.authority_exists = False
        self.granted = False
        self.certs: dict[str, CertModel] = {}
        self.owners: dict[str, str] = {}
        """Secret name → the Certificate certsmith created it for (outlives the Certificate)."""
        self.foreign: dict[str, str] = {}
        """Secret name → resourceVersion of a Secret made by hand; certsmith must not touch it."""
        self.user_extras: set[str] = set()
        """Secrets of certsmith's to which the user added USER_LABEL and USER_DATA_KEY."""
        self.rotating = False
        self.root_before_rotation: str | None = None
        """The authority's root fingerprint when a rotation was asked for; it must change."""

    # --- setup and teardown ----------------------------------------------------------

    @initialize(data=st.data())
    def setup(self, data: st.DataObject) -> None:
        """The namespace, and a first Certificate so that every sequence has one to act on."""
        self.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace))
        )
        self.create_certificate(
            name=data.draw(st.sampled_from(CERT_NAMES)),
            secret=data.draw(st.sampled_from(SECRET_NAMES)),
            granted=False,
            own_issuer=False,
            template=data.draw(TEMPLATES),
        )

    def teardown(self) -> None:
        with contextlib.suppress(client.ApiException):
            self.core.delete_namespace(self.namespace)
        if self.authority_exists:
            self._delete_authority()

    # --- rules: Certificates ---------------------------------------------------------

    @rule(
        name=st.sampled_from(CERT_NAMES),
        secret=st.sampled_from(SECRET_NAMES),
        granted=st.booleans(),
        own_issuer=st.booleans(),
        template=TEMPLATES,
    )
    def create_certificate(
        self, name: str, secret: str, granted: bool, own_issuer: bool, template: dict[str, str]
    ) -> None:
        if name in self.certs:
            return
        issuer = self.authority if own_issuer and self.authority_exists else "cluster-root"
        if granted and issuer != "cluster-root":
            granted = False  # the model authority grants nothing beyond a namespace's own
        body = self._certificate_body(name, secret, granted, issuer, template)
        try:
            self.objects.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "certificates", body
            )
        except client.ApiException as error:
            # The validating webhook refuses names the namespace may not carry, naming them.
            assert granted and not self.granted, f"refused unexpectedly: {error.body}"
            assert error.status == 403 and "spec.dnsNames" in str(error.body), error.body
            FIGURES["refused at admission"] += 1
            return
        model = CertModel(secret, granted, issuer, dict(template))
        model.triggers += self._owned_revision(name, secret)
        self.certs[name] = model
        FIGURES["created"] += 1

    @precondition(lambda self: self.certs)
    @rule(data=st.data())
    def delete_certificate(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.certs)))
        self.objects.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "certificates", name
        )
        wait_for(lambda: not self._exists(name), timeout=30, what=f"{name} deleted")
        del self.certs[name]  # its Secret stays, documented, and stays its
        FIGURES["deleted"] += 1

    @precondition(lambda self: self.certs)
    @rule(data=st.data(), secret=st.sampled_from(SECRET_NAMES))
    def change_secret_name(self, data: st.DataObject, secret: str) -> None:
        name = data.draw(st.sampled_from(sorted(self.certs)))
        model = self.certs[name]
        if model.secret_name == secret:
            return
        self._patch_certificate(name, {"spec": {"secretName": secret}})
        model.secret_name = secret
        model.triggers += 1 + self._owned_revision(name, secret)
        FIGURES["secretName changed"] += 1

    @precondition(lambda self: self.certs)
    @rule(
        data=st.data(),
        template=TEMPLATES,
    )
    def change_template(self, data: st.DataObject, template: dict[str, str]) -> None:
        name = data.draw(st.sampled_from(sorted(self.certs)))
        model = self.certs[name]
        removed = set(model.template) - set(template)
        labels: dict[str, Any] = {key: None for key in removed}
        labels.update(template)
        self._patch_certificate(name, {"spec": {"secretTemplate": {"labels": labels}}})
        model.removed_template_keys = (model.removed_template_keys | removed) - set(template)
        model.template = dict(template)
        FIGURES["secretTemplate changed"] += 1

    @precondition(lambda self: self.certs)
    @rule(data=st.data())
    def request_renewal(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.certs)))
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self._patch_certificate(name, {"metadata": {"annotations": {RENEW_ANNOTATION: stamp}}})
        self.certs[name].triggers += 1
        self.certs[name].renewal_request = stamp
        FIGURES["renewal requested"] += 1

    # --- rules: Secrets ---------------------------------------------------------------

    @rule(secret=st.sampled_from(SECRET_NAMES), tls=st.booleans())
    def precreate_secret(self, secret: str, tls: bool) -> None:
        """A Secret made by hand (or by another tool) before any Certificate names it."""
        if secret in self.owners or secret in self.foreign or self._secret(secret) is not None:
            return
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(name=secret, annotations={"example.com/made": "by-hand"}),
            type="kubernetes.io/tls" if tls else "Opaque",
            string_data={"tls.crt": "", "tls.key": ""} if tls else {"password": "hunter2"},
        )
        stored = self.core.create_namespaced_secret(self.namespace, body)
        self.foreign[secret] = stored.metadata.resource_version
        FIGURES["Secret pre-created by hand"] += 1

    @precondition(lambda self: self.owners)
    @rule(data=st.data())
    def delete_certsmith_secret(self, data: st.DataObject) -> None:
        secret = data.draw(st.sampled_from(sorted(self.owners)))
        try:
            self.core.delete_namespaced_secret(secret, self.namespace)
        except client.ApiException as error:
            assert error.status == 404, error
        owner = self.owners.pop(secret)
        self.user_extras.discard(secret)
        if owner in self.certs and self.certs[owner].secret_name == secret:
            self.certs[owner].triggers += 1
        FIGURES["Secret deleted"] += 1

    @precondition(lambda self: self.foreign)
    @rule(data=st.data())
    def delete_foreign_secret(self, data: st.DataObject) -> None:
        """The user removes the Secret that blocked a Certificate: it may be issued now."""
        secret = data.draw(st.sampled_from(sorted(self.foreign)))
        self.core.delete_namespaced_secret(secret, self.namespace)
        del self.foreign[secret]
        FIGURES["hand-made Secret deleted"] += 1

    @precondition(lambda self: len(self.owners) >= 2)
    @rule(data=st.data())
    def restore_wrong_backup(self, data: st.DataObject) -> None:
        """tls.crt and tls.key of one certsmith Secret copied into another (a backup restored
        into the wrong place): the wrong leaf must be replaced, not reported Ready."""
        source, target = data.draw(
            st.lists(st.sampled_from(sorted(self.owners)), min_size=2, max_size=2, unique=True)
        )
        copied = self._secret(source)
        if copied is None or not copied.data:
            return
        keys = {key: copied.data[key] for key in ("tls.crt", "tls.key") if key in copied.data}
        try:
            self.core.patch_namespaced_secret(target, self.namespace, {"data": keys})
        except client.ApiException as error:
            assert error.status == 404, error
            return
        owner = self.owners[target]
        if owner in self.certs and self.certs[owner].secret_name == target:
            self.certs[owner].triggers += 1
        FIGURES["wrong backup restored"] += 1

    @precondition(lambda self: self.owners)
    @rule(data=st.data())
    def user_adds_to_secret(self, data: st.DataObject) -> None:
        """A label and a data key of the user's own on certsmith's Secret: they must stay."""
        secret = data.draw(st.sampled_from(sorted(self.owners)))
        extra = base64.b64encode(b"user data").decode()
        self.core.patch_namespaced_secret(
            secret,
            self.namespace,
            {"metadata": {"labels": {USER_LABEL: "daily"}}, "data": {USER_DATA_KEY: extra}},
        )
        self.user_extras.add(secret)
        FIGURES["user additions to a certsmith Secret"] += 1

    @rule(delete=st.booleans())
    def break_trust_bundle(self, delete: bool) -> None:
        """Delete, or strip the label of and edit, the namespace's certsmith-ca ConfigMap."""
        try:
            if delete:
                self.core.delete_namespaced_config_map("certsmith-ca", self.namespace)
            else:
                self.core.patch_namespaced_config_map(
                    "certsmith-ca",
                    self.namespace,
                    {
                        "metadata": {"labels": {"app.kubernetes.io/managed-by": None}},
                        "data": {"ca.crt": "edited by hand"},
                    },
                )
        except client.ApiException as error:
            assert error.status == 404, error  # not written yet: nothing to break
        FIGURES["trust bundle broken"] += 1

    # --- rules: namespace and authority ---------------------------------------------

    @rule()
    def toggle_grant(self) -> None:
        self.granted = not self.granted
        value = "true" if self.granted else None
        self.core.patch_namespace(self.namespace, {"metadata": {"labels": {GRANT_LABEL: value}}})
        FIGURES["grant toggled"] += 1

    @precondition(lambda self: not self.authority_exists)
    @rule()
    def create_authority(self) -> None:
        body = builders.authority(self.authority, rotation={"propagationDelay": "2s"})
        self.objects.create_cluster_custom_object(GROUP, VERSION, "certificateauthorities", body)
        self.authority_exists = True
        for model in self.certs.values():
            if model.issuer == self.authority:
                model.triggers += 1  # a new root: its leaves move to it
        FIGURES["authority created"] += 1

    @precondition(lambda self: self.authority_exists)
    @rule()
    def delete_authority(self) -> None:
        self._delete_authority()
        self.authority_exists = False
        self.rotating = False
        self.root_before_rotation = None
        FIGURES["authority deleted"] += 1

    @precondition(lambda self: self.authority_exists)
    @rule()
    def rotate_root(self) -> None:
        ca = self.objects.get_cluster_custom_object(
            GROUP, VERSION, "certificateauthorities", self.authority
        )
        if self.root_before_rotation is None:
            self.root_before_rotation = ((ca.get("status") or {}).get("root") or {}).get(
                "fingerprint"
            )
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.objects.patch_cluster_custom_object(
            GROUP,
            VERSION,
            "certificateauthorities",
            self.authority,
            {"metadata": {"annotations": {ROTATE_ANNOTATION: f"{stamp}-{uuid.uuid4().hex[:4]}"}}},
        )
        self.rotating = True
        for model in self.certs.values():
            if model.issuer == self.authority:
                model.triggers += 1
        FIGURES["root rotations"] += 1

    # --- the invariant ----------------------------------------------------------------

    @invariant()
    def cluster_agrees_with_the_model(self) -> None:
        if not hasattr(self, "namespace") or self._namespace_missing():
            return
        timeout = ROTATION_SECONDS if self.rotating else SETTLE_SECONDS
        started = time.monotonic()
        problems: list[str] = []

        def settled() -> bool:
            nonlocal problems
            problems = self._problems()
            return not problems

        try:
            wait_for(settled, timeout=timeout, what="the cluster to agree", interval=0.5)
        except AssertionError:
            raise AssertionError(
                f"after {timeout:.0f}s the cluster still disagrees with the model:\n- "
                + "\n- ".join(problems)
            ) from None
        FIGURES["steps settled"] += 1
        FIGURES["settle seconds (sum)"] += round(time.monotonic() - started)
        self.rotating = False
        self.root_before_rotation = None

    def _problems(self) -> list[str]:
        problems = self._foreign_secret_problems()
        contenders: dict[str, list[str]] = {}
        for name, model in self.certs.items():
            if self._expected_reason(name, model) is None:
                contenders.setdefault(model.secret_name, []).append(name)
        for name, model in sorted(self.certs.items()):
            body = self._certificate(name)
            if body is None:
                problems.append(f"Certificate {name} is gone")
                continue
            reason = self._expected_reason(name, model)
            ready = ready_condition(body) or {}
            status = body.get("status") or {}
            if int(status.get("revision") or 0) > model.triggers:
                problems.append(
                    f"{name}: revision {status.get('revision')} > {model.triggers} issuance "
                    "triggers (re-issued more often than the steps imply)"
                )
            if reason is not None:
                if ready.get("status") != "False" or ready.get("reason") != reason:
                    problems.append(f"{name}: want Ready=False/{reason}, have {_brief(ready)}")
                continue
            rivals = contenders[model.secret_name]
            if len(rivals) > 1 and model.secret_name not in self.owners:
                # Two Certificates asked for a free Secret: either may get it, not both. The
                # Secret's label says which (a Ready status may still be from before).
                written = self._secret(model.secret_name)
                winner = ((written.metadata.labels or {}) if written else {}).get(
                    "certsmith.dev/certificate"
                )
                if winner not in rivals:
                    problems.append(f"{rivals} share {model.secret_name}, not yet written")
                    continue
                self.owners[model.secret_name] = winner
                return [*problems, "ownership settled; checking again"]
            problems.extend(self._ready_problems(name, model, body, ready, status))
        problems.extend(self._bundle_problems())
        problems.extend(self._authority_problems())
        return problems

    def _expected_reason(self, name: str, model: CertModel) -> str | None:
        """Why this Certificate cannot be Ready, or None when it should be."""
        if model.issuer == self.authority and not self.authority_exists:
            return "IssuerNotReady"
        if model.granted_names and not self.granted:
            return "PolicyDenied"
        if model.secret_name in self.foreign:
            return "SecretConflict"
        owner = self.owners.get(model.secret_name)
        if owner is not None and owner != name:
            return "SecretConflict"
        contenders = [
            other
            for other, m in self.certs.items()
            if other != name and m.secret_name == model.secret_name
        ]
        rival_ready = owner is None and any(self._is_ready(c) for c in contenders)
        if rival_ready and not self._is_ready(name):
            return "SecretConflict"
        return None

    def _ready_problems(
        self,
        name: str,
        model: CertModel,
        body: dict[str, Any],
        ready: dict[str, Any],
        status: dict[str, Any],
    ) -> list[str]:
        if ready.get("status") != "True":
            return [f"{name}: want Ready=True, have {_brief(ready)}"]
        if body["metadata"].get("generation") != ready.get("observedGeneration"):
            return [f"{name}: Ready is for generation {ready.get('observedGeneration')}"]
        secret = self._secret(model.secret_name)
        if secret is None:
            return [f"{name}: Ready but Secret {model.secret_name} is missing"]
        view = judge_secret(self.api_client.sanitize_for_serialization(secret))
        problems = []
        if view.problem is not None:
            problems.append(f"{name}: Ready but its Secret {view.problem}")
        names = _leaf_dns_names(secret)
        wanted = self._certificate_body(name, "", model.granted_names, "", {})["spec"]["dnsNames"]
        if view.problem is None and names != sorted(wanted):
            problems.append(f"{name}: Ready but its leaf names {names}, not {sorted(wanted)}")
        honoured = (secret.metadata.annotations or {}).get(RENEW_ANNOTATION)
        if model.renewal_request is not None and honoured != model.renewal_request:
            problems.append(f"{name}: renewal asked at {model.renewal_request} not honoured")
        if view.serial != status.get("serialNumber"):
            problems.append(f"{name}: status serial {status.get('serialNumber')} != {view.serial}")
        labels = secret.metadata.labels or {}
        for key, value in model.template.items():
            if labels.get(key) != value:
                problems.append(f"{name}: template label {key}={value} not on the Secret")
        for key in model.removed_template_keys:
            if key in labels:
                problems.append(f"{name}: label {key}, removed from the template, still there")
        if model.secret_name in self.user_extras and (
            labels.get(USER_LABEL) != "daily" or USER_DATA_KEY not in (secret.data or {})
        ):
            problems.append(f"{name}: the user's label or data key on its Secret is gone")
        self.owners[model.secret_name] = name
        return problems

    def _foreign_secret_problems(self) -> list[str]:
        problems = []
        for secret, version in self.foreign.items():
            stored = self._secret(secret)
            if stored is None or stored.metadata.resource_version != version:
                problems.append(f"Secret {secret}, made by hand, was modified or deleted")
        return problems

    def _bundle_problems(self) -> list[str]:
        try:
            bundle = self.core.read_namespaced_config_map("certsmith-ca", self.namespace)
        except client.ApiException as error:
            return [f"trust bundle certsmith-ca: {error.status}"]
        pem = (bundle.data or {}).get("ca.crt", "")
        if "BEGIN CERTIFICATE" not in pem:
            return ["trust bundle certsmith-ca holds no certificate (not repaired)"]
        return []

    def _authority_problems(self) -> list[str]:
        if not self.authority_exists:
            return []
        ca = self.objects.get_cluster_custom_object(
            GROUP, VERSION, "certificateauthorities", self.authority
        )
        status = ca.get("status") or {}
        phase = status.get("phase")
        if phase in (None, "Ready"):
            ready = ready_condition(ca) or {}
            if ready.get("status") != "True":
                return [f"authority: {_brief(ready)}"]
            root = (status.get("root") or {}).get("fingerprint")
            if self.root_before_rotation is not None and root == self.root_before_rotation:
                return ["authority: the root rotation asked for has not happened"]
            return []
        blockers = (status.get("rotation") or {}).get("blockers")
        return [f"authority rotation in {phase}; blockers named: {blockers}"]

    # --- helpers --------------------------------------------------------------------

    def _certificate_body(
        self, name: str, secret: str, granted: bool, issuer: str, template: dict[str, str]
    ) -> dict[str, Any]:
        dns = [f"{name}.example.com"] if granted else [f"{name}.{self.namespace}.svc"]
        return builders.certificate(
            name,
            secretName=secret,
            dnsNames=dns,
            duration="1h",
            issuerRef={"name": issuer},
            secretTemplate={"labels": template},
        )

    def _patch_certificate(self, name: str, patch: dict[str, Any]) -> None:
        self.objects.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "certificates", name, patch
        )

    def _certificate(self, name: str) -> dict[str, Any] | None:
        try:
            return self.objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "certificates", name
            )
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def _exists(self, name: str) -> bool:
        return self._certificate(name) is not None

    def _is_ready(self, name: str) -> bool:
        body = self._certificate(name)
        return body is not None and (ready_condition(body) or {}).get("status") == "True"

    def _secret(self, name: str) -> client.V1Secret | None:
        try:
            return self.core.read_namespaced_secret(name, self.namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def _owned_revision(self, name: str, secret: str) -> int:
        """The revision of a Secret certsmith issued for `name` earlier: numbering goes on."""
        stored = self._secret(secret) if self.owners.get(secret) == name else None
        if stored is None:
            return 0
        return int((stored.metadata.annotations or {}).get("certsmith.dev/revision", "0"))

    def _namespace_missing(self) -> bool:
        try:
            self.core.read_namespace(self.namespace)
        except client.ApiException:
            return True
        return False

    def _delete_authority(self) -> None:
        try:
            self.objects.delete_cluster_custom_object(
                GROUP, VERSION, "certificateauthorities", self.authority
            )
        except client.ApiException as error:
            assert error.status == 404, error


def _leaf_dns_names(secret: client.V1Secret) -> list[str]:
    pem = base64.b64decode((secret.data or {}).get("tls.crt", ""))
    try:
        leaf = x509.load_pem_x509_certificates(pem)[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, IndexError, x509.ExtensionNotFound):
        return []
    return sorted(san.get_values_for_type(x509.DNSName))


def _brief(condition: dict[str, Any]) -> str:
    if not condition:
        return "no Ready condition"
    return f"Ready={condition.get('status')}/{condition.get('reason')}: {condition.get('message')}"


def test_what_users_do_keeps_every_promise(running_operator, api_client: client.ApiClient) -> None:
    UserModel.api_client = api_client
    FIGURES.clear()
    started = time.monotonic()
    run_state_machine_as_test(
        UserModel,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            # Each step waits on a real cluster: a shrink would replay sequences for an hour.
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    figures = ", ".join(f"{key}: {value}" for key, value in sorted(FIGURES.items()))
    print(
        f"\nuser model: {EXAMPLES} sequences x {STEPS} steps in "
        f"{time.monotonic() - started:.0f}s; {figures}"
    )
