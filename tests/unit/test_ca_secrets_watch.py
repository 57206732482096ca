"""Which CA Secrets a re-list reports (store.changed_since): after a watch fell behind
(410 Gone), only what differs from what was seen makes the authorities step."""

from __future__ import annotations

import pytest

from certsmith.authorities.store import changed_since


@pytest.mark.parametrize(
    ("known", "listed", "reported"),
    [
        ({}, {"root": "5", "inter": "6"}, ["inter", "root"]),  # the first list: everything
        ({"root": "5", "inter": "6"}, {"root": "5", "inter": "6"}, []),  # nothing changed
        ({"root": "5", "inter": "6"}, {"root": "5", "inter": "9"}, ["inter"]),  # edited
        ({"root": "5", "inter": "6"}, {"root": "5"}, ["inter"]),  # deleted meanwhile
        ({"root": "5"}, {"root": "5", "supplied": "7"}, ["supplied"]),  # created meanwhile
        ({"root": "5"}, {}, ["root"]),
        ({}, {}, []),
    ],
)
def test_a_relist_reports_only_what_differs(
    known: dict[str, str], listed: dict[str, str], reported: list[str]
) -> None:
    assert changed_since(known, listed) == reported
