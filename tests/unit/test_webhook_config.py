"""The caBundle patch: only the caBundle of webhooks whose bundle differs, nothing else."""

from __future__ import annotations

import base64

import pytest

from certsmith.admission import webhook_config

BUNDLE = b"-----BEGIN CERTIFICATE-----\nroots\n-----END CERTIFICATE-----\n"
ENCODED = base64.b64encode(BUNDLE).decode()


def configuration(*bundles: str | None) -> dict:
    """As the apiserver returns an installed configuration: one webhook per bundle (None:
    no caBundle yet), with the install's other fields."""
    hooks = []
    for index, bundle in enumerate(bundles):
        client_config: dict = {"service": {"name": "certsmith-webhook", "namespace": "certsmith"}}
        if bundle is not None:
            client_config["caBundle"] = bundle
        hooks.append({"name": f"hook-{index}.certsmith.dev", "clientConfig": client_config})
    return {"metadata": {"name": "certsmith.dev", "resourceVersion": "7"}, "webhooks": hooks}


@pytest.mark.parametrize(
    ("bundles", "patched"),
    [
        ((None,), ["hook-0.certsmith.dev"]),
        ((None, None), ["hook-0.certsmith.dev", "hook-1.certsmith.dev"]),
        (("anVuaw==", ENCODED), ["hook-0.certsmith.dev"]),
        ((ENCODED, ""), ["hook-1.certsmith.dev"]),
    ],
)
def test_the_patch_sets_only_the_stale_bundles(bundles, patched):
    patch = webhook_config.ca_bundle_patch(configuration(*bundles), BUNDLE)
    assert patch == {
        "metadata": {"resourceVersion": "7"},
        "webhooks": [{"name": name, "clientConfig": {"caBundle": ENCODED}} for name in patched],
    }


@pytest.mark.parametrize("bundles", [(ENCODED,), (ENCODED, ENCODED), ()])
def test_no_patch_when_every_webhook_has_the_bundle(bundles):
    assert webhook_config.ca_bundle_patch(configuration(*bundles), BUNDLE) is None


def test_a_configuration_without_webhooks_gets_no_patch():
    assert webhook_config.ca_bundle_patch({"metadata": {"resourceVersion": "1"}}, BUNDLE) is None
