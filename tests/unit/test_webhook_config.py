"""Drift of the registered webhook configurations: what counts as edited."""

from __future__ import annotations

import copy

from certsmith.admission import webhook_config

ENDPOINT = webhook_config.Endpoint(ca_bundle=b"bundle", url="https://127.0.0.1:9443")


def registered(desired: dict) -> dict:
    """As the apiserver returns it: certsmith's fields plus defaults it fills in."""
    live = copy.deepcopy(desired)
    live["metadata"]["resourceVersion"] = "7"
    for hook in live["webhooks"]:
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("reinvocationPolicy", "Never")
    return live


def test_defaults_filled_in_by_the_apiserver_are_no_drift():
    for desired in (
        webhook_config.mutating_configuration(ENDPOINT),
        webhook_config.validating_configuration(ENDPOINT, operator_namespace="certsmith"),
    ):
        assert not webhook_config.drifted(registered(desired), desired)


def test_an_edited_ca_bundle_a_changed_policy_or_a_removed_webhook_is_drift():
    desired = webhook_config.mutating_configuration(ENDPOINT)
    junk = registered(desired)
    junk["webhooks"][0]["clientConfig"]["caBundle"] = "anVuaw=="
    assert webhook_config.drifted(junk, desired)
    ignored = registered(desired)
    ignored["webhooks"][0]["failurePolicy"] = "Ignore"
    assert webhook_config.drifted(ignored, desired)
    emptied = registered(desired)
    emptied["webhooks"] = []
    assert webhook_config.drifted(emptied, desired)
