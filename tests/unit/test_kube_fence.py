"""A fenced client (the Lease holder's controller) sends no write once its claim lapsed."""

from __future__ import annotations

import socket

import pytest
from kubernetes import client

from certsmith.kube import ApiError, ClaimLapsed, Kube


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: a request that is sent fails as Unreachable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kube_at(port: int) -> Kube:
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    return Kube(client.ApiClient(configuration), timeout=(1.0, 1.0))


SECRET = {"metadata": {"namespace": "default", "name": "s"}, "type": "Opaque"}


def test_a_write_after_the_claim_lapsed_is_never_sent(closed_port):
    fenced = kube_at(closed_port).fenced(lambda: False)
    for write in (
        lambda: fenced.create_secret(body=SECRET),
        lambda: fenced.replace_secret(body=SECRET),
        lambda: fenced.patch_secret(namespace="default", name="s", patch={"data": {}}),
        lambda: fenced.delete_secret(namespace="default", name="s"),
        lambda: fenced.put_configmap(body={"metadata": {"namespace": "d", "name": "c"}}),
    ):
        with pytest.raises(ClaimLapsed) as refused:
            write()
        assert "claim on the Lease lapsed" in refused.value.message


def test_reads_and_writes_within_the_claim_are_sent(closed_port):
    holding = kube_at(closed_port).fenced(lambda: True)
    lapsed = kube_at(closed_port).fenced(lambda: False)
    for call in (
        lambda: holding.create_secret(body=SECRET),
        lambda: lapsed.get_secret(namespace="default", name="s"),
        lambda: lapsed.with_timeout((1.0, 1.0)).list_certificates(),
    ):
        with pytest.raises(ApiError) as failed:
            call()
        assert failed.value.reason == "Unreachable"  # sent: nothing listens there
