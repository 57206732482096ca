"""Which workloads a re-issued Secret rolls."""

from __future__ import annotations

import pytest

from certsmith.api import names
from certsmith.pods import rollout


def workload(*, annotated=True, pod_spec=None, rotated=None, labels=None, annotations=None) -> dict:
    template_annotations = dict(annotations or {})
    if rotated:
        template_annotations[names.ROTATED_ANNOTATION] = rotated
    return {
        "metadata": {
            "name": "w",
            "annotations": {names.RESTART_ANNOTATION: "true"} if annotated else {},
        },
        "spec": {
            "template": {
                "metadata": {"labels": labels or {}, "annotations": template_annotations},
                "spec": pod_spec or {"containers": [{"name": "app"}]},
            }
        },
    }


def needs(w: dict, *, certificate="web", secret="web-tls", serial="ab") -> bool:
    return rollout.needs_restart(w, certificate_name=certificate, secret_name=secret, serial=serial)


def container(**fields) -> dict:
    return {"containers": [{"name": "app", **fields}]}


INJECTED = {"certsmith.dev/inject": "true"}
SECRET_VOLUME = {"volumes": [{"name": "tls", "secret": {"secretName": "web-tls"}}]}
USES = {
    "secret volume": SECRET_VOLUME,
    "projected volume": {
        "volumes": [{"name": "tls", "projected": {"sources": [{"secret": {"name": "web-tls"}}]}}]
    },
    "env secretKeyRef": container(
        env=[{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "web-tls", "key": "tls.key"}}}]
    ),
    "envFrom secretRef": container(envFrom=[{"secretRef": {"name": "web-tls"}}]),
    "init container env": {
        "containers": [{"name": "app"}],
        "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "web-tls"}}]}],
    },
}


@pytest.mark.parametrize("way", USES)
def test_every_way_of_naming_the_secret_restarts(way):
    assert needs(workload(pod_spec=USES[way]))
    assert not needs(workload(pod_spec=USES[way]), certificate="other", secret="other-tls")


def test_pods_injected_with_the_certificate_by_name_restart():
    w = workload(labels=INJECTED, annotations={"certsmith.dev/certificate": "web"})
    assert needs(w)
    # The Secret may have any name: the webhook mounts whatever the Certificate names.
    assert needs(w, secret="renamed-tls")
    assert not needs(w, certificate="other", secret="other-tls")


def test_pods_injected_with_their_service_account_identity_restart():
    identity = {"certsmith.dev/identity": "service-account"}
    default = workload(labels=INJECTED, annotations=identity)
    assert needs(default, certificate="default-identity", secret="default-identity-tls")
    payments = workload(
        labels=INJECTED, annotations=identity, pod_spec={"serviceAccountName": "payments"}
    )
    assert needs(payments, certificate="payments-identity", secret="payments-identity-tls")
    assert not needs(payments, certificate="default-identity", secret="default-identity-tls")


def test_injection_annotations_without_the_label_do_not_restart():
    w = workload(annotations={"certsmith.dev/certificate": "web"})
    assert not needs(w, secret="unrelated-tls")


def test_workloads_that_did_not_opt_in_do_not_restart():
    assert not needs(workload(annotated=False, pod_spec=SECRET_VOLUME))
    assert not needs(
        workload(annotated=False, labels=INJECTED, annotations={"certsmith.dev/certificate": "web"})
    )


def test_restart_happens_once_per_serial():
    done = workload(pod_spec=SECRET_VOLUME, rotated="web-tls@ab")
    assert not needs(done, serial="ab")
    assert needs(done, serial="cd")


def test_each_secret_keeps_its_own_serial():
    """Pods using two Secrets: rolling for one does not make a retry for the other roll again."""
    both = {
        "volumes": [
            {"name": "web", "secret": {"secretName": "web-tls"}},
            {"name": "api", "secret": {"secretName": "api-tls"}},
        ]
    }
    w = workload(pod_spec=both, rotated="api-tls@01")
    assert needs(w, serial="ab")
    patch = rollout.restart_patch(w, "web-tls", "ab")
    value = patch["spec"]["template"]["metadata"]["annotations"][names.ROTATED_ANNOTATION]
    assert value == "api-tls@01,web-tls@ab"
    rolled = workload(pod_spec=both, rotated=value)
    assert not needs(rolled, serial="ab")
    assert not needs(rolled, certificate="api", secret="api-tls", serial="01")
    assert needs(rolled, certificate="api", secret="api-tls", serial="02")
