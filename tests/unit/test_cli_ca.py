"""`kubectl certsmith ca status`: one row per CertificateAuthority, and why one is not Ready."""

from __future__ import annotations

import re
from typing import Any

from certsmith.cli import ca
from tests import builders

FINGERPRINT = "b75ef26f20bdd2294d36b6f6ddd66f3ff019974712ca0a4e002f3413b2631a5e"


def authority(name: str, *, ready: bool = True, **status: Any) -> dict[str, Any]:
    condition = (
        builders.condition("True", reason="Ready", message="loaded")
        if ready
        else builders.condition("False", reason="InvalidRoot", message="no Secret")
    )
    return builders.authority(name, status={"conditions": [condition], **status})


READY = authority(
    "cluster-root",
    root={"fingerprint": FINGERPRINT, "notAfter": "2036-11-25T00:08:46Z"},
    intermediate={"notAfter": "2027-11-28T00:08:46Z"},
)


def test_ready_authorities_show_a_short_root_fingerprint_and_expiries():
    rows = [ca.authority_row(READY)]
    lines = ca.render(rows).splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "NAME",
        "READY",
        "ROOT FINGERPRINT",
        "ROOT EXPIRES",
        "INTERMEDIATE EXPIRES",
        "PHASE",
    ]
    assert lines[1].split() == [
        "cluster-root",
        "True",
        FINGERPRINT[:16],
        "2036-11-25T00:08:46Z",
        "2027-11-28T00:08:46Z",
        "<none>",
    ]
    assert ca.exit_code(rows) == 0


def test_a_failing_authority_brings_its_message_and_fails_the_exit_code():
    rows = [ca.authority_row(READY), ca.authority_row(authority("team-b", ready=False))]
    lines = ca.render(rows).splitlines()
    assert lines[0].split()[-1] == "MESSAGE"
    assert lines[2].split()[:2] == ["team-b", "False"]
    assert lines[2].endswith("InvalidRoot: no Secret")
    assert ca.exit_code(rows) == 1


def test_the_rotation_phase_and_details_reported_by_the_operator_are_shown():
    rotating = authority(
        "cluster-root",
        phase="Overlap",
        rotation={"newRoot": {"fingerprint": "abc"}, "startedAt": "2026-01-01T00:00:00Z"},
    )
    text = ca.render([ca.authority_row(rotating)])
    assert text.splitlines()[1].split()[-1] == "Overlap"
    assert text.splitlines()[2] == (
        "cluster-root rotation: newRoot.fingerprint=abc, startedAt=2026-01-01T00:00:00Z"
    )


def test_no_authority_at_all_is_not_healthy():
    assert ca.exit_code([]) == 1
    assert "is the certsmith operator running?" in ca.render([])
