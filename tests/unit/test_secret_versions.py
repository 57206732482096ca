"""What a list of the certsmith Secrets after the watch fell behind reports
(secret_versions.differences): every Secret created, written or gone meanwhile, once."""

from __future__ import annotations

from certsmith.controller.secret_versions import Difference, Seen, differences

WEB = ("shop", "web-tls")
API = ("shop", "api-tls")
DB = ("data", "db-tls")


def test_only_what_changed_is_reported_in_key_order() -> None:
    before = {WEB: Seen("10", "web"), API: Seen("11", "api"), DB: Seen("12", "db")}
    listed = {
        WEB: Seen("10", "web"),  # unchanged: nothing
        API: Seen("15", "api"),  # written meanwhile
        ("shop", "new-tls"): Seen("16", "new"),  # created meanwhile
    }  # db-tls deleted meanwhile
    assert differences(before, listed) == [
        Difference(DB, Seen("12", "db"), True, Seen("12", "db")),
        Difference(API, Seen("15", "api"), False, Seen("11", "api")),
        Difference(("shop", "new-tls"), Seen("16", "new"), False, None),
    ]


def test_a_secret_relabelled_for_another_certificate_is_a_change() -> None:
    before = {WEB: Seen("10", "web")}
    listed = {WEB: Seen("10", "other")}
    assert differences(before, listed) == [
        Difference(WEB, Seen("10", "other"), False, Seen("10", "web"))
    ]


def test_nothing_changed_nothing_reported() -> None:
    same = {WEB: Seen("10", "web")}
    assert differences(same, dict(same)) == []
    assert differences({}, {}) == []
