"""Which workloads a re-issued Secret rolls."""

from __future__ import annotations

from certsmith import rollout


def workload(*, annotated=True, volumes=None, rotated=None) -> dict:
    template_annotations = {rollout.ROTATED_ANNOTATION: rotated} if rotated else {}
    return {
        "metadata": {
            "name": "w",
            "annotations": {rollout.RESTART_ANNOTATION: "true"} if annotated else {},
        },
        "spec": {
            "template": {
                "metadata": {"annotations": template_annotations},
                "spec": {"volumes": volumes or []},
            }
        },
    }


SECRET_VOLUME = [{"name": "tls", "secret": {"secretName": "web-tls"}}]
PROJECTED_VOLUME = [{"name": "tls", "projected": {"sources": [{"secret": {"name": "web-tls"}}]}}]


def test_annotated_workload_mounting_the_secret_restarts():
    assert rollout.needs_restart(workload(volumes=SECRET_VOLUME), "web-tls", "ab")
    assert rollout.needs_restart(workload(volumes=PROJECTED_VOLUME), "web-tls", "ab")


def test_other_workloads_do_not():
    assert not rollout.needs_restart(
        workload(annotated=False, volumes=SECRET_VOLUME), "web-tls", "ab"
    )
    assert not rollout.needs_restart(workload(volumes=SECRET_VOLUME), "other-tls", "ab")


def test_restart_happens_once_per_serial():
    done = workload(volumes=SECRET_VOLUME, rotated="web-tls@ab")
    assert not rollout.needs_restart(done, "web-tls", "ab")
    assert rollout.needs_restart(done, "web-tls", "cd")
