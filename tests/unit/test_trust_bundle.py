"""Trust-bundle ConfigMaps: certsmith repairs its own, whatever was edited, and never writes
one it did not create."""

from __future__ import annotations

from typing import Any

import pytest

from certsmith.api import model, names
from certsmith.authorities import trust_bundle
from certsmith.authorities.rotation import Lagging
from certsmith.authorities.trust_bundle import Action
from tests import builders

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def ours(**changes: Any) -> dict[str, Any]:
    body = trust_bundle.bundle_configmap(
        name="certsmith-ca", namespace="t1", authority="cluster-root", pem=PEM
    )
    body["metadata"].update(uid="u-1", resourceVersion="7")
    body.update(changes)
    return body


def judge(existing: dict[str, Any] | None, created_here: bool = False) -> trust_bundle.Verdict:
    return trust_bundle.judge(
        existing, authority="cluster-root", owner="cluster-root", pem=PEM, created_here=created_here
    )


def test_a_current_bundle_is_left_alone_and_a_missing_one_written():
    assert judge(ours()).action is Action.NOTHING
    assert judge(None).action is Action.WRITE


def test_every_edit_of_certsmiths_own_bundle_is_repaired():
    edited_data = ours(data={"ca.crt": "hand-edited"})
    assert judge(edited_data).action is Action.WRITE
    no_label = ours()
    del no_label["metadata"]["labels"][names.BUNDLE_LABEL]
    no_label["data"] = {"ca.crt": "hand-edited"}
    assert judge(no_label).action is Action.WRITE  # the annotation still says whose it is
    no_annotation = ours()
    no_annotation["metadata"]["annotations"] = {}
    assert judge(no_annotation).action is Action.WRITE
    stripped = ours()
    stripped["metadata"]["labels"] = {}
    stripped["metadata"]["annotations"] = {}
    assert judge(stripped, created_here=True).action is Action.WRITE
    other_managed_by = ours()
    other_managed_by["metadata"]["labels"][names.MANAGED_BY_LABEL] = "helm"
    assert judge(other_managed_by).action is Action.WRITE


def test_a_configmap_certsmith_did_not_create_is_a_conflict_naming_the_way_out():
    foreign = {
        "metadata": {"name": "certsmith-ca", "namespace": "t1", "uid": "u-9"},
        "data": {"ca.crt": "mine"},
    }
    verdict = judge(foreign)
    assert verdict.action is Action.CONFLICT
    assert "not created by certsmith" in verdict.why
    assert "certsmith.dev/trust-bundle=cluster-root" in verdict.why
    # Labelling it hands it over.
    foreign["metadata"]["labels"] = {names.BUNDLE_LABEL: "cluster-root"}
    assert judge(foreign).action is Action.WRITE


def test_a_repair_keeps_what_others_added_and_restores_what_certsmith_owns():
    existing = ours(
        data={"ca.crt": "hand-edited", "extra.pem": "x"},
        binaryData={"ca.crt": "Zm9v", "keystore.jks": "YmFy"},
    )
    existing["metadata"]["labels"] = {"team": "a"}
    existing["metadata"]["annotations"] = {"note": "kept"}
    # A PUT without them would remove another tool's finalizer (and so delete a ConfigMap
    # it held) and its ownerReferences.
    existing["metadata"]["finalizers"] = ["example.com/hold"]
    owner = {"apiVersion": "v1", "kind": "Namespace", "name": "t1", "uid": "n-1"}
    existing["metadata"]["ownerReferences"] = [owner]
    body = trust_bundle.bundle_configmap(
        name="certsmith-ca", namespace="t1", authority="cluster-root", pem=PEM, existing=existing
    )
    assert body["metadata"]["resourceVersion"] == "7"
    assert body["metadata"]["labels"] == {
        "team": "a",
        "app.kubernetes.io/managed-by": "certsmith",
        "certsmith.dev/trust-bundle": "cluster-root",
    }
    assert body["metadata"]["annotations"] == {
        "note": "kept",
        "certsmith.dev/trust-bundle": "cluster-root",
    }
    assert body["data"] == {"ca.crt": PEM.decode(), "extra.pem": "x"}
    assert body["binaryData"] == {"keystore.jks": "YmFy"}
    assert body["metadata"]["finalizers"] == ["example.com/hold"]
    assert body["metadata"]["ownerReferences"] == [owner]
    assert trust_bundle.is_current(body, PEM, "cluster-root")


def test_a_bundle_being_deleted_is_left_to_its_deletion():
    """Held by a finalizer, or in a namespace being deleted: not repaired (a repair once
    removed the finalizer and so deleted it at once); its deletion event has it written anew."""
    edited = ours(data={"ca.crt": "hand-edited"})
    edited["metadata"]["deletionTimestamp"] = "2026-12-01T04:00:00Z"
    edited["metadata"]["finalizers"] = ["example.com/hold"]
    assert judge(edited).action is Action.NOTHING


def test_the_synced_condition_names_conflicts_first():
    assert trust_bundle.synced_condition(()).status
    problems = (
        Lagging("t2", "certsmith-ca", "ConfigMap could not be written: 422", "BundleWriteFailed"),
        Lagging("t1", "certsmith-ca", "ConfigMap was not created by certsmith", "BundleConflict"),
    )
    condition = trust_bundle.synced_condition(problems)
    assert not condition.status and condition.reason == "BundleConflict"
    assert condition.message.startswith("t1/certsmith-ca: ConfigMap was not created by certsmith")
    assert "t2/certsmith-ca" in condition.message


def test_a_valid_namespace_selector_passes():
    trust_bundle.check_selector(None)
    trust_bundle.check_selector({})
    trust_bundle.check_selector(
        {
            "matchLabels": {"team": "a"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )


@pytest.mark.parametrize(
    ("selector", "field", "words"),
    [
        ("team=a", "spec.trustBundle.namespaceSelector", "label selector object"),
        ({"matchLabels": {"team": 1}}, "spec.trustBundle.namespaceSelector.matchLabels", "strings"),
        ({"matchExpressions": {"key": "a"}}, ".matchExpressions", "must be a list"),
        ({"matchExpressions": [{"operator": "Exists"}]}, ".matchExpressions[0]", "needs a key"),
        (
            {"matchExpressions": [{"key": "env", "operator": "in", "values": ["prod"]}]},
            ".matchExpressions[0].operator",
            "'in' is not one of In, NotIn, Exists, DoesNotExist",
        ),
        ({"matchExpressions": [{"key": "env", "operator": "In"}]}, "[0].values", "In needs"),
        (
            {"matchExpressions": [{"key": "env", "operator": "Exists", "values": ["x"]}]},
            "[0].values",
            "Exists takes no values",
        ),
    ],
)
def test_a_bad_namespace_selector_names_the_field(selector, field, words):
    with pytest.raises(model.InvalidSpec) as raised:
        trust_bundle.check_selector(selector)
    assert raised.value.field.startswith("spec.trustBundle.namespaceSelector")
    assert raised.value.field.endswith(field) and words in str(raised.value)


def test_any_certsmith_mark_lets_the_rightful_owner_repair_and_no_other_authority_write():
    relabelled = ours(data={"ca.crt": "garbage"})
    relabelled["metadata"]["labels"][names.BUNDLE_LABEL] = "tb"
    relabelled["metadata"]["annotations"][names.BUNDLE_ANNOTATION] = "tb"
    assert judge(relabelled).action is Action.WRITE  # cluster-root repairs it, marks too
    empty_mark = {"metadata": {"annotations": {names.BUNDLE_ANNOTATION: ""}}}
    assert judge(empty_mark).action is Action.WRITE
    for existing in (relabelled, ours(), None):
        by_tb = trust_bundle.judge(
            existing, authority="tb", owner="cluster-root", pem=PEM, created_here=True
        )
        assert by_tb.action is Action.CONFLICT
        assert "trust bundle of CertificateAuthority cluster-root" in by_tb.why
        assert "another spec.trustBundle.configMapName" in by_tb.why
    repaired = trust_bundle.bundle_configmap(
        name="certsmith-ca", namespace="t1", authority="cluster-root", pem=PEM, existing=relabelled
    )
    assert repaired["metadata"]["labels"][names.BUNDLE_LABEL] == "cluster-root"
    assert repaired["metadata"]["annotations"][names.BUNDLE_ANNOTATION] == "cluster-root"


def authority_body(
    name: str, created: str, bundle: dict[str, Any] | None = None, **metadata: Any
) -> dict[str, Any]:
    spec = {} if bundle is None else {"trustBundle": bundle}
    body = builders.authority(name, **spec)
    body["metadata"].update(creationTimestamp=created, **metadata)
    return body


DEFAULT = authority_body("cluster-root", "2024-05-01T00:00:00Z")
OLD_CC = authority_body("cc", "2024-01-01T00:00:00Z", {"configMapName": "certsmith-ca"})
NEW_DD = authority_body("dd", "2024-02-01T00:00:00Z", {"configMapName": "certsmith-ca"})
TWIN_AA = authority_body("aa", "2024-02-01T00:00:00Z", {"configMapName": "certsmith-ca"})
TEAM_ONLY = authority_body(
    "cc",
    "2024-01-01T00:00:00Z",
    {"configMapName": "certsmith-ca", "namespaceSelector": {"matchLabels": {"team": "a"}}},
)
DEFAULT_ELSEWHERE = authority_body(
    "cluster-root", "2024-05-01T00:00:00Z", {"namespaceSelector": {"matchLabels": {"x": "y"}}}
)
TB = authority_body("tb", "2023-01-01T00:00:00Z", {"configMapName": "tb-ca"})
NO_BUNDLE = authority_body("plain", "2023-01-01T00:00:00Z")
BAD_SELECTOR = authority_body(
    "bad",
    "2020-01-01T00:00:00Z",
    {
        "configMapName": "certsmith-ca",
        "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "in"}]},
    },
)
DELETING = authority_body(
    "gone",
    "2020-01-01T00:00:00Z",
    {"configMapName": "certsmith-ca"},
    deletionTimestamp="2024-06-01T00:00:00Z",
)


@pytest.mark.parametrize(
    ("authorities", "config_map", "labels", "owner", "candidates"),
    [
        # The default authority wins wherever it is a candidate, however old the others.
        ([OLD_CC, DEFAULT], "certsmith-ca", {}, "cluster-root", {"cc", "cluster-root"}),
        ([DEFAULT, OLD_CC, NEW_DD], "certsmith-ca", {}, "cluster-root", None),
        # Where it selects nothing, the oldest candidate; same age: the name decides.
        ([DEFAULT_ELSEWHERE, NEW_DD, OLD_CC], "certsmith-ca", {}, "cc", {"cc", "dd"}),
        ([DEFAULT_ELSEWHERE, NEW_DD, TWIN_AA], "certsmith-ca", {}, "aa", {"aa", "dd"}),
        # Only authorities selecting the namespace are candidates.
        ([DEFAULT_ELSEWHERE, TEAM_ONLY, NEW_DD], "certsmith-ca", {}, "dd", {"dd"}),
        ([DEFAULT_ELSEWHERE, TEAM_ONLY, NEW_DD], "certsmith-ca", {"team": "a"}, "cc", None),
        ([DEFAULT_ELSEWHERE], "certsmith-ca", {}, None, set()),
        # Another bundle name, no bundle, an invalid selector, being deleted: no candidate.
        (
            [DEFAULT, TB, NO_BUNDLE, BAD_SELECTOR, DELETING],
            "certsmith-ca",
            {},
            "cluster-root",
            {"cluster-root"},
        ),
        ([DEFAULT, TB, NO_BUNDLE], "tb-ca", {}, "tb", {"tb"}),
        ([DEFAULT, TB], "plain-ca", {}, None, set()),
    ],
)
def test_the_rightful_owner_of_a_bundle_configmap(
    authorities, config_map, labels, owner, candidates
):
    found = trust_bundle.claims(authorities, default_authority="cluster-root")
    contenders = trust_bundle.candidates(found, config_map=config_map, namespace_labels=labels)
    if candidates is not None:
        assert {c.authority for c in contenders} == candidates
    assert trust_bundle.rightful_owner(contenders, default_authority="cluster-root") == owner
    # The order the authorities are seen in never matters.
    backwards = trust_bundle.claims(reversed(authorities), default_authority="cluster-root")
    contenders = trust_bundle.candidates(backwards, config_map=config_map, namespace_labels=labels)
    assert trust_bundle.rightful_owner(contenders, default_authority="cluster-root") == owner


def test_the_bundle_name_is_the_spec_s_else_certsmith_ca_for_the_default_authority_alone():
    assert trust_bundle.bundle_name("cluster-root", {}, default_authority="cluster-root") == (
        "certsmith-ca"
    )
    assert trust_bundle.bundle_name("cc", {}, default_authority="cluster-root") is None
    spec = {"trustBundle": {"configMapName": "mine"}}
    assert (
        trust_bundle.bundle_name("cluster-root", spec, default_authority="cluster-root") == "mine"
    )
