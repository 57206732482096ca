"""The seal on a Certificate's status (certificates.seal): one value per key, uid and
fields; any change breaks it."""

from __future__ import annotations

from typing import Any

import pytest

from certsmith.certificates import seal

KEY = bytes(range(32))
UID = "uid-1"
FIELDS: dict[str, Any] = {
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "Issued", "observedGeneration": 3}
    ],
    "notAfter": "2026-06-01T18:00:00Z",
    "renewalTime": "2026-06-01T16:00:00Z",
    "serialNumber": "0a1b",
    "revision": 2,
    "secretResourceVersion": "4711",
    "lastFailureTime": None,
}


def test_a_seal_is_a_fixed_value_of_its_key_uid_and_fields() -> None:
    # Pinned: a change of the encoding would void every seal written by a running release.
    assert seal.seal(KEY, UID, FIELDS) == "WLbakszf8-VdpkUoZDZJl54uCBnge_rw05-lu9KDDcw"
    assert seal.holds(KEY, UID, FIELDS, seal.seal(KEY, UID, FIELDS))


def test_the_order_of_fields_and_absent_or_null_fields_do_not_matter() -> None:
    # A merge patch's null removes a field: the stored status has none of it.
    stored = {k: v for k, v in reversed(FIELDS.items()) if v is not None}
    assert seal.holds(KEY, UID, stored, seal.seal(KEY, UID, FIELDS))


@pytest.mark.parametrize(
    ("uid", "changed"),
    [
        pytest.param("uid-2", {}, id="another Certificate"),
        pytest.param(UID, {"secretResourceVersion": "4712"}, id="the Secret written since"),
        pytest.param(UID, {"notAfter": "2027-06-01T18:00:00Z"}, id="notAfter"),
        pytest.param(UID, {"renewalTime": "2026-07-01T16:00:00Z"}, id="renewalTime"),
        pytest.param(UID, {"serialNumber": "0a1c"}, id="serialNumber"),
        pytest.param(UID, {"revision": 3}, id="revision"),
        pytest.param(UID, {"revision": "2"}, id="revision as a string"),
        pytest.param(UID, {"lastFailureTime": "2026-06-01T10:00:00Z"}, id="a field added"),
        pytest.param(UID, {"notAfter": None}, id="a field removed"),
        pytest.param(
            UID,
            {"conditions": [{**FIELDS["conditions"][0], "status": "False"}]},
            id="Ready's status",
        ),
        pytest.param(
            UID,
            {"conditions": [{**FIELDS["conditions"][0], "observedGeneration": 4}]},
            id="another spec",
        ),
    ],
)
def test_any_field_changed_breaks_the_seal(uid: str, changed: dict[str, Any]) -> None:
    assert not seal.holds(KEY, uid, {**FIELDS, **changed}, seal.seal(KEY, UID, FIELDS))


@pytest.mark.parametrize(
    ("key", "recorded"),
    [
        pytest.param(bytes(32), seal.seal(KEY, UID, FIELDS), id="made under another key"),
        pytest.param(KEY, None, id="none recorded"),
        pytest.param(KEY, 12, id="not a string"),
        pytest.param(KEY, "", id="empty"),
        pytest.param(KEY, seal.seal(KEY, UID, FIELDS)[:-1], id="cut short"),
    ],
)
def test_only_the_seal_itself_holds(key: bytes, recorded: object) -> None:
    assert not seal.holds(key, UID, FIELDS, recorded)
