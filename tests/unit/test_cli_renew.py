"""`kubectl certsmith renew`: the request value, and when a renewal counts as done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from certsmith.cli import renew
from certsmith.cli.api import CliError
from tests import builders


def test_request_value_is_rfc3339_utc_with_microseconds():
    moment = datetime(2026, 6, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert renew.request_value(moment) == "2026-06-01T12:00:00.123456Z"
    assert datetime.fromisoformat(renew.request_value(moment)) == moment.astimezone(UTC)


def body(
    serial: str | None, ready: str, *, generation: int = 1, observed: int = 1
) -> dict[str, Any]:
    return builders.certificate(
        "web",
        generation=generation,
        status={
            "serialNumber": serial,
            "conditions": [builders.condition(ready, observed_generation=observed)],
        },
    )


def test_done_only_with_a_new_serial_and_ready():
    assert renew.reissued(body("new", "True"), "old")
    assert not renew.reissued(body("old", "True"), "old")
    assert not renew.reissued(body("new", "False"), "old")
    assert not renew.reissued(body(None, "True"), None)
    assert renew.reissued(body("first", "True"), None)
    assert not renew.reissued(body("new", "True", generation=2, observed=1), "old")


def test_names_and_all_are_exclusive():
    with pytest.raises(CliError):
        renew.check_arguments(["web"], every=True)
    with pytest.raises(CliError):
        renew.check_arguments([], every=False)
    renew.check_arguments([], every=True)
    renew.check_arguments(["web", "api"], every=False)
