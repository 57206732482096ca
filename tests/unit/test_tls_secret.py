"""Whose Secret it is, and what certsmith changes in one it owns: only its own keys."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certsmith.api import model, names
from certsmith.authorities import authority
from certsmith.certificates import tls_secret
from certsmith.pki import ca, issue, keys
from tests import builders

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NAME = "web"


def material(intermediate: ca.CAKeyPair, *, revision: int = 2) -> tls_secret.IssuedMaterial:
    spec = model.parse_certificate_spec(builders.spec(dnsNames=["web.shop.svc"]))
    key = keys.generate_private_key(spec.private_key)
    leaf = issue.build_leaf(spec=spec, public_key=key.public_key(), issuer=intermediate, now=NOW)
    return tls_secret.IssuedMaterial(
        leaf=leaf,
        intermediates=(intermediate.certificate,),
        key_pem=keys.encode_private_key(key, "PKCS8"),
        ca_pem=b"roots",
        issuer_fingerprint="f",
        spec_fingerprint="s",
        revision=revision,
        authority="cluster-root",
    )


def ours(intermediate: ca.CAKeyPair, **templates: Any) -> dict[str, Any]:
    secret = tls_secret.build_secret(
        name="web-tls",
        namespace="shop",
        certificate_name=NAME,
        labels_template=templates.get("labels", {}),
        annotations_template=templates.get("annotations", {}),
        material=material(intermediate, revision=1),
    )
    secret["metadata"]["resourceVersion"] = "41"
    return secret


def secret_with(
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner_references: list[dict[str, Any]] | None = None,
    secret_type: str = tls_secret.TLS_SECRET_TYPE,
) -> tls_secret.SecretContents:
    return tls_secret.parse_secret(
        {
            "type": secret_type,
            "metadata": {
                "name": "web-tls",
                "labels": labels or {},
                "annotations": annotations or {},
                "ownerReferences": owner_references or [],
            },
        }
    )


CERTSMITH = {"app.kubernetes.io/managed-by": "certsmith"}
CONTROLLER = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "controller": True}


@pytest.mark.parametrize(
    ("labels", "annotations", "owner_references", "who"),
    [
        # A CertificateAuthority's own Secret (labels authorities/store.py writes).
        (
            {**CERTSMITH, "certsmith.dev/authority": "cluster-root", "certsmith.dev/role": "root"},
            {},
            [],
            "holds the root of CertificateAuthority cluster-root",
        ),
        (
            {"certsmith.dev/authority": "team", "certsmith.dev/role": "intermediate"},
            {},
            [],
            "holds the intermediate of CertificateAuthority team",
        ),
        # Another controller's, even with certsmith's marks on it.
        (
            {"certsmith.dev/certificate": NAME},
            {},
            [CONTROLLER],
            "is controlled by Deployment api (ownerReferences)",
        ),
        ({}, {}, [{**CONTROLLER, "controller": False}], "is owned by Deployment api"),
        (
            {},
            {"cert-manager.io/certificate-name": "web", "cert-manager.io/issuer-name": "ca"},
            [],
            "was issued by cert-manager for its Certificate web",
        ),
        (
            {},
            {"cert-manager.io/allow-direct-injection": "true"},
            [],
            "carries cert-manager's annotation cert-manager.io/allow-direct-injection",
        ),
        (
            {"app.kubernetes.io/managed-by": "Helm", "certsmith.dev/certificate": NAME},
            {},
            [],
            "is managed by Helm (label app.kubernetes.io/managed-by=Helm)",
        ),
        # Another Certificate's, by label or by annotation.
        (
            {**CERTSMITH, "certsmith.dev/certificate": "other"},
            {},
            [],
            "was issued by certsmith for Certificate other",
        ),
        (
            {"certsmith.dev/certificate": NAME},
            {"certsmith.dev/certificate-name": "other"},
            [],
            "was issued by certsmith for Certificate other",
        ),
        ({}, {}, [], "was created by hand (not labelled by certsmith)"),
        ({"backup": "daily"}, {"note": "x"}, [], "was created by hand (not labelled by certsmith)"),
        (CERTSMITH, {}, [], "names no Certificate"),
    ],
)
def test_secrets_certsmith_did_not_create_for_this_certificate_are_claimed_by_others(
    labels, annotations, owner_references, who
):
    claim = tls_secret.foreign_claim(
        secret_with(labels=labels, annotations=annotations, owner_references=owner_references),
        NAME,
    )
    assert claim is not None
    assert who in claim.who


@pytest.mark.parametrize(
    ("labels", "annotations", "owner_references"),
    [
        (
            {**CERTSMITH, "certsmith.dev/certificate": NAME},
            {"certsmith.dev/certificate-name": NAME},
            [],
        ),
        # A label or the annotation removed by hand: still recognised (and then restored).
        ({"certsmith.dev/certificate": NAME}, {}, []),
        ({}, {"certsmith.dev/certificate-name": NAME}, []),
        # What users add to a Secret of ours does not make it someone else's.
        (
            {"certsmith.dev/certificate": NAME, "backup": "daily"},
            {"cert-manager.io/allow-direct-injection": "true"},
            [{**CONTROLLER, "controller": False}],
        ),
        # An ownerReference to this very Certificate (to have the Secret garbage-collected).
        (
            {"certsmith.dev/certificate": NAME},
            {},
            [
                {
                    "apiVersion": "certsmith.dev/v1alpha1",
                    "kind": "Certificate",
                    "name": NAME,
                    "controller": True,
                }
            ],
        ),
    ],
)
def test_secrets_certsmith_created_for_this_certificate_are_its_own(
    labels, annotations, owner_references
):
    contents = secret_with(
        labels=labels, annotations=annotations, owner_references=owner_references
    )
    assert tls_secret.foreign_claim(contents, NAME) is None


def _marks(kind: str) -> list[str]:
    """Every label or annotation key certsmith names (api.names), and one key under each
    prefix there: the keys the Secret ownership rule could read."""
    keys = [
        value
        for attribute, value in vars(names).items()
        if isinstance(value, str) and attribute.endswith(("_LABEL", "_ANNOTATION", "_PREFIX"))
    ]
    return [*sorted({f"{k}x" if k.endswith("/") else k for k in keys}), f"{kind}.example/x"]


@pytest.mark.parametrize("label", [True, False])
def test_every_key_that_claims_a_secret_is_refused_in_a_template(label):
    """Derived from behaviour, so the ownership rule and the template check cannot drift:
    a key that turns certsmith's own Secret into someone else's is refused by the model."""
    kind = "labels" if label else "annotations"
    claiming = []
    for key in _marks(kind):
        metadata = {"labels": {"certsmith.dev/certificate": NAME}, "annotations": {}}
        metadata[kind][key] = "someone-else"
        if tls_secret.foreign_claim(secret_with(**metadata), NAME) is not None:
            claiming.append(key)
            with pytest.raises(model.InvalidSpec) as refused:
                model.parse_certificate_spec(
                    builders.spec(
                        {"secretName": "s", "commonName": "a.b"},
                        secretTemplate={kind: {key: "v"}},
                    )
                )
            assert refused.value.field == f"spec.secretTemplate.{kind}[{key}]"
    assert claiming  # the rule reads some keys of each kind
    assert (names.MANAGED_BY_LABEL in claiming) is label
    assert (names.CERT_MANAGER_CERTIFICATE_ANNOTATION in claiming) is not label


def test_a_mark_this_certificates_own_template_put_there_is_no_claim():
    """Written by a template before such keys were refused: once the template is fixed the
    Secret is still this Certificate's, and the key goes as any key that left the template."""
    templated = {
        "cert-manager.io/certificate-name": "x",
        names.TEMPLATE_ANNOTATIONS_ANNOTATION: "cert-manager.io/certificate-name",
    }
    mine = secret_with(labels={"certsmith.dev/certificate": NAME}, annotations=templated)
    assert tls_secret.foreign_claim(mine, NAME) is None
    # Only on a Secret named for this Certificate, and only for keys the record lists.
    other = secret_with(labels={"certsmith.dev/certificate": "other"}, annotations=templated)
    assert "cert-manager" in tls_secret.foreign_claim(other, NAME).who
    unlisted = secret_with(
        labels={"certsmith.dev/certificate": NAME},
        annotations={"cert-manager.io/certificate-name": "x"},
    )
    assert "cert-manager" in tls_secret.foreign_claim(unlisted, NAME).who


def test_a_secret_of_ours_whose_type_is_not_tls_cannot_be_written():
    contents = secret_with(labels={"certsmith.dev/certificate": NAME}, secret_type="Opaque")
    claim = tls_secret.foreign_claim(contents, NAME)
    assert claim is not None and "has type Opaque" in claim.who


def test_other_certificate_claim_names_it_for_the_caller_to_check():
    contents = secret_with(labels={"certsmith.dev/certificate": "old"})
    claim = tls_secret.foreign_claim(contents, NAME)
    assert claim is not None and claim.other_certificate == "old"


def test_secret_template_keys_are_recorded_but_never_certsmiths_own(intermediate):
    secret = ours(
        intermediate,
        labels={"team": "shop", "app.kubernetes.io/managed-by": "me"},
        annotations={"b/x": "1", "a/y": "2", names.TEMPLATE_LABELS_ANNOTATION: "backup"},
    )
    annotations = secret["metadata"]["annotations"]
    assert annotations[names.TEMPLATE_LABELS_ANNOTATION] == "team"
    assert annotations[names.TEMPLATE_ANNOTATIONS_ANNOTATION] == "a/y,b/x"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "certsmith"


def test_no_record_is_written_for_an_empty_template(intermediate):
    annotations = ours(intermediate)["metadata"]["annotations"]
    assert not set(tls_secret.TEMPLATE_RECORDS) & set(annotations)


def test_reissue_changes_only_what_certsmith_owns(intermediate):
    secret = ours(intermediate, labels={"team": "shop", "gone": "x"})
    secret["metadata"]["labels"]["backup"] = "daily"
    secret["metadata"]["annotations"]["example.com/owner"] = "team-a"
    secret["data"]["keystore.p12"] = base64.b64encode(b"p12").decode()
    new = material(intermediate)

    patch = tls_secret.issue_patch(
        tls_secret.parse_secret(secret),
        certificate_name=NAME,
        labels_template={"team": "payments"},
        annotations_template={},
        material=new,
    )

    assert patch["metadata"]["resourceVersion"] == "41"  # a concurrent write makes it a 409
    assert set(patch["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert base64.b64decode(patch["data"]["tls.key"]) == new.key_pem
    labels, annotations = patch["metadata"]["labels"], patch["metadata"]["annotations"]
    assert labels["team"] == "payments" and labels["gone"] is None
    assert labels["certsmith.dev/certificate"] == NAME
    assert "backup" not in labels and "example.com/owner" not in annotations
    assert annotations[names.REVISION_ANNOTATION] == "2"
    assert annotations[names.TEMPLATE_LABELS_ANNOTATION] == "team"

    merged = merge_patch(secret, patch)
    assert merged["metadata"]["labels"]["backup"] == "daily"
    assert merged["metadata"]["annotations"]["example.com/owner"] == "team-a"
    assert merged["data"]["keystore.p12"] == secret["data"]["keystore.p12"]
    assert "gone" not in merged["metadata"]["labels"]


def desired(spec_labels: dict[str, str], spec_annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "desired_labels": tls_secret.desired_labels(NAME, spec_labels),
        "desired_annotations": tls_secret.template_annotations(NAME, spec_labels, spec_annotations),
    }


def test_keys_that_leave_the_template_are_removed_and_hand_set_keys_are_not(intermediate):
    secret = ours(
        intermediate,
        labels={"team": "shop", "tier": "web"},
        annotations={"example.com/a": "1", "example.com/b": "2"},
    )
    secret["metadata"]["labels"]["backup"] = "daily"  # by hand, never in the template
    secret["metadata"]["annotations"]["example.com/owner"] = "team-a"

    patch = tls_secret.metadata_patch(
        tls_secret.parse_secret(secret), **desired({"team": "shop"}, {"example.com/a": "1"})
    )

    assert patch == {
        "metadata": {
            "labels": {"tier": None},
            "annotations": {
                "example.com/b": None,
                names.TEMPLATE_LABELS_ANNOTATION: "team",
                names.TEMPLATE_ANNOTATIONS_ANNOTATION: "example.com/a",
            },
        }
    }
    merged = merge_patch(secret, patch)
    assert merged["metadata"]["labels"]["backup"] == "daily"
    assert merged["metadata"]["annotations"]["example.com/owner"] == "team-a"
    # Judged again, the repaired Secret needs nothing more.
    again = tls_secret.metadata_patch(
        tls_secret.parse_secret(merged), **desired({"team": "shop"}, {"example.com/a": "1"})
    )
    assert again is None


def test_emptied_template_removes_its_keys_and_its_records(intermediate):
    secret = ours(intermediate, labels={"team": "shop"}, annotations={"example.com/a": "1"})
    patch = tls_secret.metadata_patch(tls_secret.parse_secret(secret), **desired({}, {}))
    assert patch == {
        "metadata": {
            "labels": {"team": None},
            "annotations": {
                "example.com/a": None,
                names.TEMPLATE_LABELS_ANNOTATION: None,
                names.TEMPLATE_ANNOTATIONS_ANNOTATION: None,
            },
        }
    }


def test_changed_template_value_is_updated(intermediate):
    secret = ours(intermediate, labels={"team": "shop"})
    patch = tls_secret.metadata_patch(
        tls_secret.parse_secret(secret), **desired({"team": "pay"}, {})
    )
    assert patch == {"metadata": {"labels": {"team": "pay"}}}


def test_a_secret_without_records_loses_nothing(intermediate):
    """Secrets written before the records existed: no key is known to be the template's."""
    secret = ours(intermediate, labels={"team": "shop"})
    del secret["metadata"]["annotations"][names.TEMPLATE_LABELS_ANNOTATION]
    patch = tls_secret.metadata_patch(tls_secret.parse_secret(secret), **desired({}, {}))
    assert patch is None


def test_immutable_and_validity_are_read(intermediate):
    secret = ours(intermediate)
    secret["immutable"] = True
    contents = tls_secret.parse_secret(secret)
    assert contents.immutable
    assert contents.valid_until == min(
        contents.leaf.not_valid_after_utc, intermediate.certificate.not_valid_after_utc
    )
    assert contents.valid_until <= NOW + timedelta(days=90)


@pytest.mark.parametrize(
    ("tls_key", "with_key", "key_loaded", "problems"),
    [
        ("kept", True, True, ()),
        ("kept", False, False, ()),  # not read at all
        ("missing", True, False, ("tls.key is missing",)),
        ("missing", False, False, ()),  # nothing said about what was not read
        ("garbage", True, False, ("tls.key does not hold a supported private key",)),
        ("garbage", False, False, ()),
    ],
)
def test_the_key_is_read_only_when_asked(intermediate, tls_key, with_key, key_loaded, problems):
    secret = ours(intermediate)
    if tls_key == "missing":
        del secret["data"]["tls.key"]
    elif tls_key == "garbage":
        secret["data"]["tls.key"] = base64.b64encode(b"not a key").decode()
    contents = tls_secret.parse_secret(secret, with_key=with_key)
    assert (contents.key is not None) is key_loaded
    assert contents.problems == problems
    # The chain and ca.crt are read either way.
    assert contents.leaf is not None
    assert contents.intermediates == (intermediate.certificate,)
    assert contents.ca_pem == base64.b64decode(secret["data"]["ca.crt"])


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the apiserver applies application/merge-patch+json."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge_patch(result.get(key) or {}, value)
        else:
            result[key] = value
    return result


def test_an_authority_uses_only_secrets_marked_for_its_role(root):
    stored = authority.key_pair_secret(
        authority="team",
        role="intermediate",
        name="team-intermediate",
        namespace="certsmith",
        pair=root,
    )
    assert authority.check_role(stored, authority="team", role="intermediate") is False
    with pytest.raises(ValueError) as refused:
        authority.check_role(stored, authority="team", role="root")
    assert "has label certsmith.dev/role=intermediate, annotation certsmith.dev/role=" in str(
        refused.value
    )
    leaf = {
        "metadata": {
            "name": "team-intermediate",
            "namespace": "certsmith",
            "labels": {"certsmith.dev/certificate": "web"},
        }
    }
    with pytest.raises(ValueError, match="it holds the certificate of Certificate web"):
        authority.check_role(leaf, authority="team", role="intermediate")


def _without(secret, *, labels=(), annotations=()):
    metadata = secret["metadata"]
    return {
        **secret,
        "metadata": {
            **metadata,
            "labels": {k: v for k, v in metadata["labels"].items() if k not in labels},
            "annotations": {
                k: v for k, v in metadata["annotations"].items() if k not in annotations
            },
        },
    }


def test_a_ca_secret_with_a_mark_removed_is_still_certsmiths_and_is_marked_again(root):
    stored = authority.key_pair_secret(
        authority="team", role="intermediate", name="team-intermediate", namespace="c", pair=root
    )
    assert stored["metadata"]["annotations"] == {
        "certsmith.dev/authority": "team",
        "certsmith.dev/role": "intermediate",
    }
    for edited in (
        _without(stored, labels=["certsmith.dev/role"]),
        _without(stored, labels=["certsmith.dev/role", "certsmith.dev/authority"]),
        _without(stored, annotations=["certsmith.dev/authority", "certsmith.dev/role"]),
        _without(stored, labels=["app.kubernetes.io/managed-by"]),
    ):
        assert authority.check_role(edited, authority="team", role="intermediate") is True
    patch = authority.marks_patch(authority="team", role="intermediate")
    assert patch["metadata"]["labels"] == stored["metadata"]["labels"]
    assert patch["metadata"]["annotations"] == stored["metadata"]["annotations"]


def test_a_mark_naming_another_authority_or_role_disowns_it(root):
    stored = authority.key_pair_secret(
        authority="team", role="intermediate", name="team-intermediate", namespace="c", pair=root
    )
    relabelled = {
        **stored,
        "metadata": {
            **stored["metadata"],
            "labels": {**stored["metadata"]["labels"], "certsmith.dev/authority": "other"},
        },
    }
    # The message names the mark that disagrees, not what the others say (it once read "is
    # the intermediate of CertificateAuthority team, not the intermediate of … team").
    with pytest.raises(ValueError) as refused:
        authority.check_role(relabelled, authority="team", role="intermediate")
    assert str(refused.value) == (
        "Secret c/team-intermediate has label certsmith.dev/authority=other, so it is not the "
        "intermediate of CertificateAuthority team; certsmith neither uses nor overwrites it: "
        "delete it, move it away, or set that mark back"
    )
    bare = _without(
        stored,
        labels=["certsmith.dev/role", "certsmith.dev/authority"],
        annotations=["certsmith.dev/authority", "certsmith.dev/role"],
    )
    with pytest.raises(ValueError, match="carries no certsmith CA mark"):
        authority.check_role(bare, authority="team", role="intermediate")
    assert authority.describe_ca_secret(bare) is None
    assert authority.describe_ca_secret(stored) == ("the intermediate of CertificateAuthority team")
