"""What issuing into or repairing a Secret writes, and the Events the user reads about it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from certsmith.certificates import issuance, policies, tls_secret
from certsmith.certificates.policies import Action, Decision
from certsmith.pki import ca, inspect, keys
from tests.unit.certificate_builders import (
    AUTHORITY,
    NOW,
    contents_of,
    judged,
    observed,
    secret_body,
    signer,
    spec_of,
)

RENEWAL_DUE = Decision(Action.ISSUE, "RenewalDue", "renewal time has been reached")
MISSING = Decision(Action.ISSUE, "SecretMissing", "Secret web-tls does not exist")


@pytest.mark.parametrize(
    ("private_key", "previous_key", "reused"),
    [
        pytest.param({"rotationPolicy": "Never"}, {}, True, id="Never, same algorithm"),
        pytest.param({"rotationPolicy": "Always"}, {}, False, id="Always"),
        pytest.param(
            {"rotationPolicy": "Never", "algorithm": "RSA"}, {}, False, id="Never, other algorithm"
        ),
        pytest.param({"rotationPolicy": "Never"}, None, False, id="Never, no Secret"),
    ],
)
def test_signing_key(
    root: ca.CAKeyPair,
    intermediate: ca.CAKeyPair,
    private_key: dict[str, str],
    previous_key: dict[str, str] | None,
    reused: bool,
) -> None:
    previous = (
        None
        if previous_key is None
        else contents_of(secret_body(spec_of(privateKey=previous_key), root, intermediate))
    )
    key = issuance.signing_key(spec_of(privateKey=private_key), previous)
    assert (previous is not None and key is previous.key) is reused


def test_issued_material_records_the_signer_and_the_next_revision(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    spec = spec_of(duration="1h")
    previous = contents_of(secret_body(spec, root, intermediate, revision=4))
    requested = {"certsmith.dev/renew-requested-at": "2026-06-01T11:30:00Z"}
    material = issuance.issued_material(
        observed({"revision": 2}, annotations=requested),
        spec,
        previous,
        signer(root, intermediate),
        NOW,
    )
    assert material.revision == 5  # the Secret's 4 is the latest
    assert material.authority == AUTHORITY
    assert material.renewal_request == "2026-06-01T11:30:00Z"
    assert material.intermediates == (intermediate.certificate,)
    assert material.ca_pem == inspect.certificates_to_pem([root.certificate])
    assert material.issuer_fingerprint == inspect.fingerprint_sha256(intermediate.certificate)
    assert inspect.issued_by(material.leaf, intermediate.certificate)
    assert material.leaf.not_valid_after_utc == NOW + timedelta(hours=1)
    assert keys.key_matches_certificate(keys.load_private_key(material.key_pem), material.leaf)


@pytest.mark.parametrize(
    ("has_previous", "before", "decision", "trigger"),
    [
        pytest.param(False, {}, MISSING, NOW - timedelta(hours=1), id="first: from creation"),
        pytest.param(
            False, {"revision": 3}, MISSING, NOW, id="Secret deleted later: from detection"
        ),
        pytest.param(
            True,
            {"revision": 1},
            RENEWAL_DUE,
            # Issued at 11:50 for an hour: due at 12:29:38.735227 (2/3, less the jitter).
            datetime.fromisoformat("2026-06-01T12:29:38.735227+00:00"),
            id="renewal: from the renewal time",
        ),
        pytest.param(
            True,
            {"revision": 1},
            Decision(Action.ISSUE, "SpecChanged", "the spec changed"),
            NOW,
            id="other re-issue: from detection",
        ),
    ],
)
def test_trigger_time(
    root: ca.CAKeyPair,
    intermediate: ca.CAKeyPair,
    has_previous: bool,
    before: dict[str, Any],
    decision: Decision,
    trigger: datetime,
) -> None:
    spec = spec_of(duration="1h")
    previous = contents_of(secret_body(spec, root, intermediate)) if has_previous else None
    assert issuance.trigger_time(observed(before), spec, previous, decision, NOW) == trigger


@pytest.mark.parametrize(
    ("has_previous", "reason"), [(False, "Issued"), (True, "Renewed")], ids=["new", "renewal"]
)
def test_issued_event(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair, has_previous: bool, reason: str
) -> None:
    spec = spec_of(duration="1h")
    previous = contents_of(secret_body(spec, root, intermediate)) if has_previous else None
    material = issuance.issued_material(observed(), spec, previous, signer(root, intermediate), NOW)
    assert issuance.issued_event(previous, material, RENEWAL_DUE) == issuance.Event(
        "Normal",
        reason,
        f"issued serial {inspect.serial_hex(material.leaf)} valid until 2026-06-01T13:00:00Z "
        "(renewal time has been reached)",
    )


@pytest.mark.parametrize(
    ("action", "same_bundle", "writes"),
    [
        (Action.ISSUE, True, True),
        (Action.REPAIR, False, True),
        (Action.REPAIR, True, False),
        (Action.NOTHING, False, False),
    ],
)
def test_writes_data(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair, action: Action, same_bundle: bool, writes: bool
) -> None:
    body = secret_body(spec_of(), root, intermediate)
    if not same_bundle:
        body["data"]["ca.crt"] = ""
    decision = Decision(action, "Reason", "message")
    authority = signer(root, intermediate)
    assert issuance.writes_data(decision, contents_of(body), authority) is writes


def held_of(body: dict[str, Any], root: ca.CAKeyPair) -> policies.Held:
    held = policies.readable(judged(spec_of(), contents_of(body), root))
    assert isinstance(held, policies.Held)
    return held


def test_repair_patch_restores_only_what_drifted(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    body = secret_body(spec_of(), root, intermediate)
    authority = signer(root, intermediate)
    assert issuance.repair_patch(observed(), spec_of(), held_of(body, root), authority) is None
    del body["metadata"]["labels"]["certsmith.dev/certificate"]
    body["metadata"]["labels"]["backup"] = "daily"
    patch = issuance.repair_patch(observed(), spec_of(), held_of(body, root), authority)
    assert patch == {"metadata": {"labels": {"certsmith.dev/certificate": "web"}}}


def test_repair_patch_updates_the_trust_bundle(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    body = secret_body(spec_of(), root, intermediate)
    body["data"]["ca.crt"] = ""
    patch = issuance.repair_patch(
        observed(), spec_of(), held_of(body, root), signer(root, intermediate)
    )
    assert patch is not None
    assert tls_secret.parse_secret(
        {**body, "data": {**body["data"], **patch["data"]}}
    ).ca_pem == inspect.certificates_to_pem([root.certificate])


@pytest.mark.parametrize(
    ("patch", "event"),
    [
        pytest.param(
            {
                "metadata": {
                    "labels": {"certsmith.dev/certificate": "web", "team": None},
                    "annotations": {"certsmith.dev/serial": "0a"},
                }
            },
            issuance.Event(
                "Normal",
                "Repaired",
                "Secret web-tls: set certsmith.dev/certificate, removed team, "
                "set certsmith.dev/serial",
            ),
            id="labels then annotations, each sorted",
        ),
        pytest.param(
            {"metadata": {}, "data": {"ca.crt": "Y2E="}}, None, id="trust bundle: no Event"
        ),
    ],
)
def test_repaired_event(patch: dict[str, Any], event: issuance.Event | None) -> None:
    assert issuance.repaired_event("web-tls", patch) == event
