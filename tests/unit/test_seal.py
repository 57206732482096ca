"""The seal on what a restart takes from status (certificates.seal): one value per key and
judged fields, any change breaks it."""

from __future__ import annotations

import dataclasses

import pytest

from certsmith.certificates import seal

KEY = bytes(range(32))
JUDGED = seal.Judged("uid-1", 3, "4711", "2026-06-01T18:00:00Z", "2026-06-01T16:00:00Z")


def test_a_seal_is_a_fixed_value_of_its_key_and_fields() -> None:
    # Pinned: a change of the encoding would void every seal written by a running release.
    assert seal.seal(KEY, JUDGED) == "fZvkhtOpUBQSr0Mb1gngoGn5wHGW8kL5dJYS42ss9HY"
    assert seal.holds(KEY, JUDGED, seal.seal(KEY, JUDGED))


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"uid": "uid-2"}, id="another Certificate"),
        pytest.param({"generation": 4}, id="another spec"),
        pytest.param({"generation": None}, id="no generation"),
        pytest.param({"secret_version": "4712"}, id="the Secret written since"),
        pytest.param({"not_after": "2027-06-01T18:00:00Z"}, id="notAfter"),
        pytest.param({"renewal_time": "2026-07-01T16:00:00Z"}, id="renewalTime"),
    ],
)
def test_any_field_changed_breaks_the_seal(changed: dict[str, object]) -> None:
    other = dataclasses.replace(JUDGED, **changed)  # type: ignore[arg-type]
    assert not seal.holds(KEY, other, seal.seal(KEY, JUDGED))


@pytest.mark.parametrize(
    ("key", "recorded"),
    [
        pytest.param(bytes(32), seal.seal(KEY, JUDGED), id="made under another key"),
        pytest.param(KEY, None, id="none recorded"),
        pytest.param(KEY, 12, id="not a string"),
        pytest.param(KEY, "", id="empty"),
        pytest.param(KEY, seal.seal(KEY, JUDGED)[:-1], id="cut short"),
    ],
)
def test_only_the_seal_itself_holds(key: bytes, recorded: object) -> None:
    assert not seal.holds(key, JUDGED, recorded)
