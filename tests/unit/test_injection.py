"""The pod mutation: which Secret, where, with which file modes, and what is refused."""

from __future__ import annotations

import pytest

from certsmith.api import names
from certsmith.pods import injection
from tests import builders

NAMED = {names.INJECT_CERTIFICATE_ANNOTATION: "web"}
MOUNT = injection.DEFAULT_MOUNT_PATH


def request(**annotations: str) -> injection.InjectionRequest:
    return injection.parse_request({**NAMED, **annotations})


def mutate(pod_spec: dict, *, mount_path: str = MOUNT, key_mode: int = 0o440) -> dict:
    return injection.mounted_pod_spec(
        pod_spec, secret_name="web-tls", mount_path=mount_path, key_mode=key_mode
    )


def modes(volume: dict) -> dict[str, int]:
    secret = volume["secret"]
    return {item["path"]: item.get("mode", secret["defaultMode"]) for item in secret["items"]}


def pod_spec(**fields) -> dict:
    return {"containers": [{"name": "app", "image": "postgres"}], **fields}


def test_key_is_0440_and_certificates_0444_by_default():
    assert request().key_mode == 0o440
    (volume,) = mutate(pod_spec())["volumes"]
    assert volume["secret"]["secretName"] == "web-tls"
    assert modes(volume) == {"tls.crt": 0o444, "ca.crt": 0o444, "tls.key": 0o440}


@pytest.mark.parametrize(("text", "mode"), [("0400", 0o400), ("600", 0o600), ("0640", 0o640)])
def test_key_mode_annotation_chooses_the_key_mode(text, mode):
    parsed = request(**{names.KEY_MODE_ANNOTATION: text})
    (volume,) = mutate(pod_spec(), key_mode=parsed.key_mode)["volumes"]
    assert modes(volume)["tls.key"] == mode
    assert modes(volume)["tls.crt"] == 0o444


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0644", "last digit must be 0"),
        ("0441", "last digit must be 0"),
        ("0040", "owner read"),
        ("0200", "owner read"),
        ("0o440", "not an octal file mode"),
        ("440 ", None),  # surrounding blanks are tolerated
        ("4440", "not an octal file mode"),
        ("0999", "not an octal file mode"),
        ("", "not an octal file mode"),
        ("rw-r-----", "not an octal file mode"),
    ],
)
def test_bad_key_modes_are_refused_naming_the_annotation(text, says):
    if says is None:
        assert request(**{names.KEY_MODE_ANNOTATION: text}).key_mode == 0o440
        return
    with pytest.raises(injection.InjectionError) as refused:
        request(**{names.KEY_MODE_ANNOTATION: text})
    assert names.KEY_MODE_ANNOTATION in str(refused.value)
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("text", "path"),
    [("/etc/tls", "/etc/tls"), ("/etc/tls/", "/etc/tls"), ("//etc/./tls", "/etc/tls")],
)
def test_mount_path_is_normalised(text, path):
    assert request(**{names.MOUNT_PATH_ANNOTATION: text}).mount_path == path


@pytest.mark.parametrize("text", ["etc/tls", "/", "/etc/../root", "/etc/tls/..", "C:/tls", ""])
def test_bad_mount_paths_are_refused_naming_the_annotation(text):
    with pytest.raises(injection.InjectionError, match=names.MOUNT_PATH_ANNOTATION):
        request(**{names.MOUNT_PATH_ANNOTATION: text})


def test_every_container_and_init_container_gets_the_mount():
    spec = pod_spec(
        initContainers=[{"name": "init", "image": "busybox"}],
        containers=[
            {"name": "app", "image": "nginx"},
            {
                "name": "sidecar",
                "image": "busybox",
                "volumeMounts": [{"name": "x", "mountPath": "/x"}],
            },
        ],
        volumes=[{"name": "x", "emptyDir": {}}],
    )
    mutated = mutate(spec)
    mount = {"name": "certsmith-tls", "mountPath": MOUNT, "readOnly": True}
    assert [c["volumeMounts"] for c in mutated["initContainers"]] == [[mount]]
    assert [c["volumeMounts"] for c in mutated["containers"]] == [
        [mount],
        [{"name": "x", "mountPath": "/x"}, mount],
    ]
    assert [v["name"] for v in mutated["volumes"]] == ["x", "certsmith-tls"]


def test_mutating_twice_changes_nothing():
    """The webhook is reinvoked (reinvocationPolicy IfNeeded) on a pod it already mutated."""
    once = {**pod_spec(), **mutate(pod_spec())}
    assert {**once, **mutate(once)} == once


def test_a_volume_of_that_name_that_is_not_the_secret_is_refused():
    spec = pod_spec(volumes=[{"name": "certsmith-tls", "emptyDir": {}}])
    with pytest.raises(injection.InjectionError, match="volume named certsmith-tls"):
        mutate(spec)
    other = pod_spec(volumes=[{"name": "certsmith-tls", "secret": {"secretName": "mine"}}])
    with pytest.raises(injection.InjectionError, match="rename it"):
        mutate(other)


def test_another_mount_at_the_path_is_refused_naming_the_annotation():
    spec = pod_spec(
        containers=[
            {"name": "app", "volumeMounts": [{"name": "own", "mountPath": MOUNT + "/"}]},
        ],
        volumes=[{"name": "own", "emptyDir": {}}],
    )
    with pytest.raises(injection.InjectionError) as refused:
        mutate(spec)
    assert names.MOUNT_PATH_ANNOTATION in str(refused.value)
    assert "'app' already mounts volume 'own'" in str(refused.value)
    # Elsewhere it is fine, and a mount below the certificate's directory is left alone.
    assert mutate(spec, mount_path="/etc/tls")["containers"][0]["volumeMounts"][0] == {
        "name": "own",
        "mountPath": MOUNT + "/",
    }


def test_a_mount_of_certsmiths_volume_elsewhere_is_refused():
    spec = pod_spec(
        containers=[{"name": "app", "volumeMounts": [{"name": "certsmith-tls", "mountPath": "/a"}]}]
    )
    with pytest.raises(injection.InjectionError) as refused:
        mutate(spec)
    assert "mounts volume certsmith-tls at /a" in str(refused.value)
    assert names.MOUNT_PATH_ANNOTATION in str(refused.value)


@pytest.mark.parametrize(
    ("security", "container_security", "warned"),
    [
        ({}, {}, False),  # the image's user: unknown, not judged
        ({"runAsUser": 0}, {}, False),
        ({"runAsUser": 999}, {}, True),
        ({"runAsNonRoot": True}, {}, True),
        ({"runAsUser": 999, "fsGroup": 999}, {}, False),
        ({"runAsUser": 999, "runAsGroup": 0}, {}, False),  # group 0 reads 0440
        ({"runAsUser": 999, "supplementalGroups": [0]}, {}, False),
        ({"runAsUser": 999}, {"runAsUser": 0}, False),  # the container's own context wins
        ({}, {"runAsUser": 70}, True),
    ],
)
def test_a_non_root_container_without_fs_group_is_warned(security, container_security, warned):
    spec = {
        "securityContext": security,
        "containers": [{"name": "db", "securityContext": container_security}],
    }
    warnings = injection.unreadable_key_warnings(spec, mount_path=MOUNT, key_mode=0o440)
    assert bool(warnings) is warned
    if warned:
        assert "'db'" in warnings[0] and "fsGroup" in warnings[0] and "0440" in warnings[0]


def test_group_zero_cannot_read_an_owner_only_key():
    spec = {"securityContext": {"runAsUser": 999, "runAsGroup": 0}, "containers": [{"name": "db"}]}
    assert injection.unreadable_key_warnings(spec, mount_path=MOUNT, key_mode=0o400)


@pytest.mark.parametrize(
    ("labels", "annotations", "service_account", "certificate"),
    [
        ({"certsmith.dev/inject": "true"}, NAMED, None, "web"),
        (
            {"certsmith.dev/inject": "true"},
            {"certsmith.dev/identity": "service-account"},
            None,
            "default-identity",
        ),
        (
            {"certsmith.dev/inject": "true"},
            {"certsmith.dev/identity": "service-account"},
            "pay",
            "pay-identity",
        ),
        (
            {"certsmith.dev/inject": "true"},
            {"certsmith.dev/identity": "service-account", "certsmith.dev/dns-names": "a.x"},
            "pay",
            injection.identity_certificate_name("pay", ["a.x"]),
        ),
        ({}, NAMED, None, None),  # no opt-in label: the webhook never sees the pod
        ({"certsmith.dev/inject": "false"}, NAMED, None, None),
        ({"certsmith.dev/inject": "true"}, {**NAMED, "certsmith.dev/key-mode": "0644"}, None, None),
    ],
)
def test_injected_certificate_of_a_template(labels, annotations, service_account, certificate):
    spec = {"serviceAccountName": service_account} if service_account else {}
    metadata = {"labels": labels, "annotations": annotations}
    assert injection.injected_certificate(metadata, spec) == certificate


def test_dns_names_without_identity_are_named_as_ignored():
    (warning,) = injection.ignored_annotation_warnings(
        {"certsmith.dev/certificate": "web", "certsmith.dev/dns-names": "a.example.com"}
    )
    assert warning.startswith("annotation certsmith.dev/dns-names is ignored")
    assert "certsmith.dev/identity: service-account" in warning
    both = {"certsmith.dev/identity": "service-account", "certsmith.dev/dns-names": "a.x"}
    assert injection.ignored_annotation_warnings(both) == []
    assert injection.ignored_annotation_warnings({"certsmith.dev/certificate": "web"}) == []


def test_only_certsmiths_identity_certificate_stands_for_the_identity():
    wanted = injection.identity_certificate(
        namespace="t1", service_account="web", dns_names=(), trust_domain="cluster.local"
    )
    assert injection.identity_conflict(wanted, wanted) is None
    users = builders.certificate("web-identity", dnsNames=["mine.t1.svc"])
    message = injection.identity_conflict(users, wanted)
    assert message is not None and "Certificate t1/web-identity exists" in message
    edited = {**wanted, "spec": {**wanted["spec"], "dnsNames": ["extra.t1.svc"]}}
    assert injection.identity_conflict(edited, wanted) is not None
