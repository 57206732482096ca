"""Signer names of authorities in the Kubernetes pod-certificate APIs (api.names)."""

from __future__ import annotations

import pytest

from certsmith.api import names

pytestmark = pytest.mark.unit


def test_an_authority_signs_as_certsmith_dev_slash_its_name() -> None:
    assert names.signer_name("cluster-root") == "certsmith.dev/cluster-root"


@pytest.mark.parametrize(
    ("signer", "authority"),
    [
        ("certsmith.dev/cluster-root", "cluster-root"),
        ("certsmith.dev/partners.example.com", "partners.example.com"),
        ("kubernetes.io/kube-apiserver-client-pod", None),
        ("example.com/cluster-root", None),
        ("certsmith.dev/", None),
        ("certsmith.dev/a/b", None),
        ("certsmith.devx/cluster-root", None),
    ],
)
def test_only_certsmith_signer_names_name_an_authority(signer: str, authority: str | None) -> None:
    assert names.signer_authority(signer) == authority
