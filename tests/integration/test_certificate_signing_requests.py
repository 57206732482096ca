"""Kubernetes CertificateSigningRequests for certsmith's signers on a real apiserver (with
kube-controller-manager's own CSR controllers running) and the real operator: an approved
CSR of a service account signed once for its own identity; unapproved, denied and other
signers' CSRs untouched; what policy or the CSR refuses answered Failed naming the field;
approved while the operator was down, signed once after; deleted while signed."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from kubernetes import client, config

from certsmith.pki import inspect
from tests import csrs
from tests.integration import certs, pod_certs
from tests.integration.conftest import OPERATOR_NAMESPACE, OperatorProcess, authority_ready
from tests.support import kubectl, wait_for

pytestmark = pytest.mark.integration

AUTHORITY = f"csr-signer-{uuid.uuid4().hex[:6]}"
"""The module's own authority: the bound of the certificates signed here under its root
would hold up a rotation of cluster-root (another module's) until they expire."""
SIGNER = f"certsmith.dev/{AUTHORITY}"
USAGES = ["digital signature", "server auth", "client auth"]
INTERMEDIATE_CN = f"certsmith {AUTHORITY} intermediate"


def delete_authority(api_client: client.ApiClient, name: str) -> None:
    """The authority and its keys."""
    client.CustomObjectsApi(api_client).delete_cluster_custom_object(
        certs.GROUP, certs.VERSION, "certificateauthorities", name
    )
    for suffix in ("root", "root-next", "intermediate"):
        try:
            client.CoreV1Api(api_client).delete_namespaced_secret(
                f"{name}-{suffix}", OPERATOR_NAMESPACE
            )
        except client.ApiException as error:
            assert error.status == 404


@pytest.fixture(scope="module")
def namespace(
    kubeconfig: str, api_client: client.ApiClient, operator: OperatorProcess
) -> Iterator[str]:
    """A namespace of its own with the ServiceAccount `web` (the requester of most CSRs
    here), every service account may create CSRs (as kubelet's bootstrap or Istio's RA
    mode would be allowed to), and the module's authority AUTHORITY ready."""
    certs.create_authority(api_client, AUTHORITY)
    wait_for(lambda: authority_ready(api_client, AUTHORITY), timeout=30, what=f"{AUTHORITY}")
    name = f"csr-{uuid.uuid4().hex[:6]}"
    kubectl(kubeconfig, "create", "namespace", name)
    kubectl(kubeconfig, "create", "serviceaccount", "web", "-n", name)
    role = f"csr-creator-{name}"
    kubectl(
        kubeconfig,
        *("create", "clusterrole", role, "--verb=create,get"),
        "--resource=certificatesigningrequests.certificates.k8s.io",
    )
    kubectl(
        kubeconfig,
        *("create", "clusterrolebinding", role, f"--clusterrole={role}"),
        "--group=system:serviceaccounts",
    )
    yield name
    kubectl(kubeconfig, "delete", "clusterrolebinding,clusterrole", role, check=False)
    kubectl(kubeconfig, "delete", "namespace", name, "--wait=false", check=False)
    delete_authority(api_client, AUTHORITY)


def account(namespace: str, name: str = "web") -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def spiffe(namespace: str, name: str = "web") -> str:
    return f"spiffe://cluster.local/ns/{namespace}/sa/{name}"


def csr_body(
    pem: bytes, *, signer: str = SIGNER, usages: list[str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": f"t-{uuid.uuid4().hex[:10]}"},
        "spec": {
            "signerName": signer,
            "request": csrs.request_value(pem),
            "usages": usages or USAGES,
            **spec,
        },
    }


def create(
    kubeconfig: str, body: dict[str, Any], as_user: str | None, as_uid: str | None = None
) -> str:
    """Create the CSR as `as_user` (Impersonate-User; None: the admin), with `as_uid`
    (Impersonate-Uid: kube-apiserver records it as spec.uid); its name."""
    impersonate = [f"--as={as_user}"] if as_user else []
    impersonate += [f"--as-uid={as_uid}"] if as_uid else []
    result = kubectl(kubeconfig, *impersonate, "create", "-f", "-", input=json.dumps(body))
    assert result.returncode == 0, result.stderr
    return str(body["metadata"]["name"])


def get(kubeconfig: str, name: str) -> dict[str, Any] | None:
    result = kubectl(kubeconfig, "get", "csr", name, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def approve(kubeconfig: str, name: str) -> None:
    kubectl(kubeconfig, "certificate", "approve", name)


def conditions(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (body.get("status") or {}).get("conditions") or []}


def wait_answered(kubeconfig: str, name: str, timeout: float = 30) -> dict[str, Any]:
    """The CSR once it has a certificate or the condition Failed."""
    return wait_for(
        lambda: (body := get(kubeconfig, name))
        and ((body.get("status") or {}).get("certificate") or "Failed" in conditions(body))
        and body,
        timeout=timeout,
        what=f"CSR {name} answered",
    )


def chain_of(body: dict[str, Any]) -> list[x509.Certificate]:
    return inspect.load_pem_certificates(base64.b64decode(body["status"]["certificate"]))


def failed(body: dict[str, Any]) -> dict[str, Any]:
    assert not (body.get("status") or {}).get("certificate"), body["status"]
    return conditions(body)["Failed"]


def signed_canary(kubeconfig: str, namespace: str) -> x509.Certificate:
    """A good CSR of namespace's `web`, approved and signed: every event before it was seen."""
    pem = csrs.csr_pem(csrs.ecdsa_key(), uris=[spiffe(namespace)])
    name = create(kubeconfig, csr_body(pem), account(namespace))
    approve(kubeconfig, name)
    return chain_of(wait_answered(kubeconfig, name))[0]


def test_an_approved_csr_is_signed_once_for_the_service_accounts_own_identity(
    kubeconfig: str, namespace: str, running_operator: OperatorProcess
) -> None:
    key = csrs.ecdsa_key()
    names = [f"web.{namespace}.svc", f"web.{namespace}.svc.cluster.local"]
    pem = csrs.csr_pem(key, uris=[spiffe(namespace)], dns_names=names)
    body = csr_body(pem, usages=["digital signature", "client auth"], expirationSeconds=3600)
    name = create(kubeconfig, body, account(namespace))
    created = get(kubeconfig, name)
    assert created is not None and created["spec"]["username"] == account(namespace)

    time.sleep(3)  # not approved: left alone
    pending = get(kubeconfig, name)
    assert pending is not None and pending.get("status", {}) in ({}, None)
    assert pending["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

    approve(kubeconfig, name)
    answered = wait_answered(kubeconfig, name)
    assert "Failed" not in conditions(answered)
    leaf, intermediate = chain_of(answered)
    assert intermediate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        INTERMEDIATE_CN
    )
    assert inspect.issued_by(leaf, intermediate)
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [spiffe(namespace)]
    assert san.get_values_for_type(x509.DNSName) == names
    extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [oid.dotted_string for oid in extended] == ["1.3.6.1.5.5.7.3.2"]  # client auth
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert timedelta(minutes=60) <= lifetime <= timedelta(minutes=62)

    # Approved again: the certificate stays the one signed, never a second one.
    kubectl(kubeconfig, "certificate", "approve", name, "--force")
    time.sleep(3)
    again = get(kubeconfig, name)
    assert again is not None
    assert again["status"]["certificate"] == answered["status"]["certificate"]
    assert "Failed" not in conditions(again)


def test_unapproved_denied_and_other_signers_csrs_are_left_alone(
    kubeconfig: str, namespace: str, running_operator: OperatorProcess
) -> None:
    """kube-controller-manager's csrsigning and csrapproving controllers act only on
    kubernetes.io/* signers: certsmith's CSRs are neither approved nor signed by them."""
    sa = account(namespace)

    def good() -> bytes:
        return csrs.csr_pem(csrs.ecdsa_key(), uris=[spiffe(namespace)])

    unapproved = create(kubeconfig, csr_body(good()), sa)
    denied = create(kubeconfig, csr_body(good()), sa)
    kubectl(kubeconfig, "certificate", "deny", denied)
    other = create(kubeconfig, csr_body(good(), signer="example.com/other"), sa)
    approve(kubeconfig, other)
    before = {name: get(kubeconfig, name) for name in (unapproved, denied, other)}

    signed_canary(kubeconfig, namespace)
    time.sleep(2)
    for name, was in before.items():
        now = get(kubeconfig, name)
        assert now is not None and was is not None
        assert now["metadata"]["resourceVersion"] == was["metadata"]["resourceVersion"], name
        assert not (now.get("status") or {}).get("certificate"), name
        assert "Failed" not in conditions(now), name
    assert "Approved" not in conditions(before[unapproved] or {})


def _rsa_1024() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return csrs.csr_pem(key, common_name="weak")


@pytest.mark.parametrize(
    ("case", "reason", "says"),
    [
        ("user", "RequesterNotAllowed", "spec.username: "),
        ("rsa-1024", "InvalidRequest", "spec.request: the CSR's key is an RSA 1024-bit key"),
        ("2000-names", "InvalidRequest", "spec.request: subjectAltName DNS names: has 2000"),
        ("other-namespace", "PolicyDenied", "subjectAltName DNS name 0: 'web.other.svc' is not"),
        ("other-account", "PolicyDenied", "may obtain only its own SPIFFE ID"),
        ("apiserver", "PolicyDenied", "'kubernetes.default.svc' is not allowed (a name of the"),
        ("sha1", "InvalidRequest", "spec.request: the CSR's signature algorithm SHA1 is not"),
        ("exponent-3", "InvalidRequest", "the CSR's key is an RSA key with public exponent 3"),
        ("other-name", "InvalidRequest", "the CSR's subjectAltName holds an otherName 1.2.3.4;"),
        ("cert-sign", "UnsupportedUsage", "spec.usages[1]: 'cert sign' needs a CA certificate"),
        ("no-authority", "AuthorityNotFound", "spec.signerName: certsmith.dev/no-such-ca names"),
    ],
)
def test_what_policy_or_the_csr_refuses_fails_naming_the_field(
    kubeconfig: str,
    namespace: str,
    running_operator: OperatorProcess,
    case: str,
    reason: str,
    says: str,
) -> None:
    key = csrs.ecdsa_key()
    own = csrs.csr_pem(key, uris=[spiffe(namespace)])
    sa: str | None = account(namespace)
    body = {
        "user": csr_body(own),
        "rsa-1024": csr_body(_rsa_1024()),
        "2000-names": csr_body(
            csrs.csr_pem(key, dns_names=[f"w{i}.{namespace}.svc" for i in range(2000)])
        ),
        "other-namespace": csr_body(csrs.csr_pem(key, dns_names=["web.other.svc"])),
        "other-account": csr_body(csrs.csr_pem(key, uris=[spiffe(namespace, "admin")])),
        "cert-sign": csr_body(own, usages=["digital signature", "cert sign"]),
        "apiserver": csr_body(csrs.csr_pem(key, dns_names=["kubernetes.default.svc"])),
        # kube-apiserver accepts these (Go verifies a CSR's SHA-1 signature): certsmith
        # says what it refuses in them.
        "sha1": csr_body(csrs.crafted_csr(key, common_name="web", hash_name="sha1")),
        "exponent-3": csr_body(csrs.csr_pem(csrs.rsa_exponent_3_key(), uris=[spiffe(namespace)])),
        "other-name": csr_body(
            csrs.csr_pem(
                key,
                uris=[spiffe(namespace)],
                other_names=[x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), b"\x0c\x01a")],
            )
        ),
        "no-authority": csr_body(own, signer="certsmith.dev/no-such-ca"),
    }[case]
    if case == "user":
        sa = None  # the admin of the kubeconfig: a user, not a service account
    if case == "apiserver":
        # default's own account: its namespace's names never include the apiserver's.
        kubectl(kubeconfig, "create", "serviceaccount", "default", "-n", "default", check=False)
        sa = account("default", "default")
    name = create(kubeconfig, body, sa)
    approve(kubeconfig, name)
    answer = failed(wait_answered(kubeconfig, name))
    assert answer["reason"] == reason
    assert says in answer["message"]
    assert not re.search(r"\bb['\"]", answer["message"])  # no Python bytes repr
    assert "Approved" in conditions(get(kubeconfig, name) or {})


def test_a_requester_that_does_not_exist_when_signed_fails_the_csr(
    kubeconfig: str, namespace: str, running_operator: OperatorProcess
) -> None:
    """Approved for a service account that never existed (an impersonated name), for one
    whose namespace was deleted after it asked, and for one deleted and created again since
    (another spec.uid): each Failed, RequesterNotFound, naming spec.username."""
    pem = csrs.csr_pem(csrs.ecdsa_key(), uris=[spiffe(namespace, "ghost")])
    ghost = create(kubeconfig, csr_body(pem), account(namespace, "ghost"))

    gone = f"csr-gone-{uuid.uuid4().hex[:6]}"
    kubectl(kubeconfig, "create", "namespace", gone)
    kubectl(kubeconfig, "create", "serviceaccount", "web", "-n", gone)
    pem = csrs.csr_pem(csrs.ecdsa_key(), uris=[spiffe(gone)])
    orphan = create(kubeconfig, csr_body(pem), account(gone))
    kubectl(kubeconfig, "delete", "namespace", gone, "--wait=false")

    pem = csrs.csr_pem(csrs.ecdsa_key(), uris=[spiffe(namespace)])
    earlier = create(kubeconfig, csr_body(pem), account(namespace), as_uid=str(uuid.uuid4()))

    expected = {
        ghost: f"spec.username: service account {namespace}/ghost does not exist",
        orphan: f"spec.username: service account {gone}/web: its namespace {gone} ",
        earlier: f"spec.username: service account {namespace}/web was deleted and created again",
    }
    for name in expected:
        approve(kubeconfig, name)
    for name, says in expected.items():
        answer = failed(wait_answered(kubeconfig, name))
        assert answer["reason"] == "RequesterNotFound"
        assert answer["message"].startswith(says), answer["message"]
    # The service account that exists, asking with its own token (kube-apiserver records
    # the ServiceAccount's uid as spec.uid), is still signed.
    admin = config.new_client_from_config(config_file=kubeconfig)
    token = (
        client.CoreV1Api(admin)
        .create_namespaced_service_account_token(
            "web",
            namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
            ),
        )
        .status.token
    )
    as_token = client.Configuration()
    as_token.host = admin.configuration.host
    as_token.ssl_ca_cert = admin.configuration.ssl_ca_cert
    as_token.api_key = {"authorization": f"Bearer {token}"}
    pem = csrs.csr_pem(csrs.ecdsa_key(), uris=[spiffe(namespace)])
    body = csr_body(pem)
    own = client.CertificatesV1Api(client.ApiClient(as_token))
    created = own.create_certificate_signing_request(body)
    uid = client.CoreV1Api(admin).read_namespaced_service_account("web", namespace).metadata.uid
    assert created.spec.username == account(namespace) and created.spec.uid == uid
    approve(kubeconfig, body["metadata"]["name"])
    answered = wait_answered(kubeconfig, body["metadata"]["name"])
    assert "Failed" not in conditions(answered), conditions(answered)


@pytest.mark.parametrize(
    ("request_value", "says"),
    [
        (base64.b64encode(b"not a csr").decode(), "PEM block"),
        (
            csrs.request_value(
                csrs.tampered(
                    csrs.csr_pem(csrs.ecdsa_key(), dns_names=["aaaa.x.svc"]), b"aaaa", b"bbbb"
                )
            ),
            "verification failure",
        ),
    ],
)
def test_a_malformed_or_forged_csr_never_reaches_certsmith(
    kubeconfig: str, namespace: str, request_value: str, says: str
) -> None:
    """kube-apiserver itself refuses, at creation, a request that is not a PEM PKCS#10 CSR
    or whose signature does not verify (certificates.k8s.io validation)."""
    body = csr_body(b"")
    body["spec"]["request"] = request_value
    result = kubectl(
        kubeconfig,
        *("--as", account(namespace), "create", "-f", "-"),
        input=json.dumps(body),
        check=False,
    )
    assert result.returncode != 0
    assert "spec.request" in result.stderr and says in result.stderr, result.stderr


def test_a_csr_approved_while_the_operator_was_down_is_signed_once_after(
    kubeconfig: str,
    api_client: client.ApiClient,
    namespace: str,
    running_operator: OperatorProcess,
) -> None:
    running_operator.kill()
    try:
        pem = csrs.csr_pem(csrs.ecdsa_key(), uris=[spiffe(namespace)])
        name = create(kubeconfig, csr_body(pem), account(namespace))
        approve(kubeconfig, name)
        assert not (get(kubeconfig, name) or {}).get("status", {}).get("certificate")
    finally:
        running_operator.start()
        running_operator.wait_serving(api_client)
    answered = wait_answered(kubeconfig, name)
    assert "Failed" not in conditions(answered)
    version = answered["metadata"]["resourceVersion"]

    running_operator.stop()
    running_operator.start()
    running_operator.wait_serving(api_client)
    signed_canary(kubeconfig, namespace)  # the restarted operator listed every CSR
    after = get(kubeconfig, name)
    assert after is not None and after["metadata"]["resourceVersion"] == version


def test_csrs_deleted_while_being_signed_disturb_nothing(
    kubeconfig: str, namespace: str, running_operator: OperatorProcess
) -> None:
    """Created, approved and deleted at once (API calls, no kubectl in between), so the
    operator may be signing each when it goes: nothing is left, nothing breaks."""
    as_account = config.new_client_from_config(config_file=kubeconfig)
    as_account.set_default_header("Impersonate-User", account(namespace))
    admin = client.CertificatesV1Api(config.new_client_from_config(config_file=kubeconfig))
    creator = client.CertificatesV1Api(as_account)
    names = []
    for _ in range(10):
        pem = csrs.csr_pem(csrs.ecdsa_key(), uris=[spiffe(namespace)])
        body = csr_body(pem)
        name = body["metadata"]["name"]
        creator.create_certificate_signing_request(body)
        approval = {
            **body,
            "status": {
                "conditions": [
                    {"type": "Approved", "status": "True", "reason": "Test", "message": "test"}
                ]
            },
        }
        admin.replace_certificate_signing_request_approval(name, approval)
        admin.delete_certificate_signing_request(name)
        names.append(name)
    signed_canary(kubeconfig, namespace)
    assert all(get(kubeconfig, name) is None for name in names)
    assert running_operator.process is not None and running_operator.process.poll() is None
    assert "Traceback" not in running_operator.log_tail(200)


def test_a_csr_for_a_new_authority_is_signed_by_that_authority(
    kubeconfig: str,
    api_client: client.ApiClient,
    namespace: str,
    running_operator: OperatorProcess,
) -> None:
    """Approved right after its authority was created (loaded or not yet: a CSR for an
    authority that exists waits, never fails): signed by that authority's intermediate."""
    authority = f"csr-late-{uuid.uuid4().hex[:6]}"
    certs.create_authority(api_client, authority)
    try:
        pem = csrs.csr_pem(csrs.ecdsa_key(), uris=[spiffe(namespace)])
        signer = f"certsmith.dev/{authority}"
        name = create(kubeconfig, csr_body(pem, signer=signer), account(namespace))
        approve(kubeconfig, name)
        answered = wait_answered(kubeconfig, name, timeout=60)
        assert "Failed" not in conditions(answered), conditions(answered)
        intermediate = chain_of(answered)[1]
        assert intermediate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
            f"certsmith {authority} intermediate"
        )
    finally:
        delete_authority(api_client, authority)


VALID_UNTIL = "certsmith.dev/signing-requests-valid-until"


def _root_secret(api_client: client.ApiClient, secret: str) -> client.V1Secret:
    return client.CoreV1Api(api_client).read_namespaced_secret(secret, OPERATOR_NAMESPACE)


def _recorded(api_client: client.ApiClient, secret: str) -> datetime | None:
    """The bound recorded on one of an authority's root Secrets, or None."""
    text = (_root_secret(api_client, secret).metadata.annotations or {}).get(VALID_UNTIL)
    return None if text is None else datetime.fromisoformat(text)


def _root_of(api_client: client.ApiClient, secret: str) -> bytes:
    return base64.b64decode(_root_secret(api_client, secret).data["tls.crt"])


def _authority(api_client: client.ApiClient, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api_client).get_cluster_custom_object(
        certs.GROUP, certs.VERSION, "certificateauthorities", name
    )
    return found


def _status(api_client: client.ApiClient, name: str) -> dict[str, Any]:
    return _authority(api_client, name).get("status") or {}


def _verifies(chain: list[x509.Certificate], root: bytes) -> bool:
    return pod_certs.openssl_verify(chain, root, "sslserver").strip().endswith("OK")


def test_a_root_rotation_keeps_the_old_root_until_csr_certificates_under_it_expire(
    kubeconfig: str,
    api_client: client.ApiClient,
    namespace: str,
    running_operator: OperatorProcess,
) -> None:
    """A CSR's certificate is never renewed by certsmith: its notAfter under each root is
    recorded on that root's Secret before it is handed out (also for one signed while
    Distributing); Reissuing signs under the new root and then waits for the old root's
    bound, named as the rotation's blocker (RotationBlocked), even across a restart; once
    the bound has passed (here: set back by hand) the rotation ends and the new root's
    Secret carries its own bound."""
    authority = f"csr-rot-{uuid.uuid4().hex[:6]}"
    certs.create_authority(api_client, authority, rotation={"propagationDelay": "5s"})
    signer = f"certsmith.dev/{authority}"
    root, next_root = f"{authority}-root", f"{authority}-root-next"

    def sign(expiration: int) -> list[x509.Certificate]:
        pem = csrs.csr_pem(csrs.ecdsa_key(), uris=[spiffe(namespace)])
        body = csr_body(pem, signer=signer, expirationSeconds=expiration)
        name = create(kubeconfig, body, account(namespace))
        approve(kubeconfig, name)
        answered = wait_answered(kubeconfig, name, timeout=60)
        assert "Failed" not in conditions(answered), conditions(answered)
        return chain_of(answered)

    try:
        wait_for(lambda: authority_ready(api_client, authority), timeout=30, what="Ready")
        old_root = _root_of(api_client, root)
        first = sign(3600)
        not_after = first[0].not_valid_after_utc
        bound = _recorded(api_client, root)
        assert bound is not None and not_after <= bound < not_after + timedelta(minutes=1)

        client.CustomObjectsApi(api_client).patch_cluster_custom_object(
            certs.GROUP,
            certs.VERSION,
            "certificateauthorities",
            authority,
            {"metadata": {"annotations": {"certsmith.dev/rotate-requested-at": "now"}}},
        )
        wait_for(
            lambda: _status(api_client, authority).get("phase") == "Distributing",
            timeout=15,
            what="Distributing",
        )
        distributing = sign(7200)
        assert _verifies(distributing, old_root)
        later = _recorded(api_client, root)
        assert later is not None and later >= distributing[0].not_valid_after_utc > not_after

        wait_for(
            lambda: _status(api_client, authority).get("phase") == "Reissuing",
            timeout=60,
            what="Reissuing",
        )
        new_root = _root_of(api_client, next_root)
        reissuing = sign(600)
        assert _verifies(reissuing, new_root) and not _verifies(reissuing, old_root)
        assert _recorded(api_client, next_root) is not None
        assert _recorded(api_client, root) == later  # the old root's bound is unchanged

        running_operator.kill()
        running_operator.start()
        running_operator.wait_serving(api_client)

        def blocked() -> dict[str, Any] | None:
            status = _status(api_client, authority)
            lines = (status.get("rotation") or {}).get("blockers") or []
            return status if any("Kubernetes CSR certificates" in b for b in lines) else None

        status = wait_for(blocked, timeout=90, what="the CSR certificates named as the blocker")
        assert status["phase"] == "Reissuing"
        (blocker,) = status["rotation"]["blockers"]
        assert f"valid up to {later.strftime('%Y-%m-%dT%H:%M:%SZ')}" in blocker
        condition = next(c for c in status["conditions"] if c["type"] == "RotationBlocked")
        assert (
            condition["status"] == "True"
            and "Kubernetes CSR certificates" in (condition["message"])
        )
        # Both roots are trusted meanwhile: the first certificate still verifies.
        bundle = _authority(api_client, authority)["status"]["trustedRoots"]
        assert len(bundle) == 2

        # As if every certificate under the old root had expired.
        client.CoreV1Api(api_client).patch_namespaced_secret(
            root,
            OPERATOR_NAMESPACE,
            {"metadata": {"annotations": {VALID_UNTIL: "2020-01-01T00:00:00Z"}}},
        )
        wait_for(
            lambda: _status(api_client, authority).get("phase") == "Ready",
            timeout=90,
            what="the rotation ended",
        )
        assert _root_of(api_client, root) == new_root
        carried = _recorded(api_client, root)
        assert carried is not None and carried >= reissuing[0].not_valid_after_utc
    finally:
        delete_authority(api_client, authority)
