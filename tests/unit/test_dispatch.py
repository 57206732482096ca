"""The scheduler's keys: what the controller schedules is parsed back, anything else refused."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from certsmith.controller.dispatch import ScheduledKey, parse_key


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        (("Certificate", "shop", "web"), ScheduledKey("Certificate", "shop", "web")),
        (
            ("CertificateAuthority", "", "cluster-root"),
            ScheduledKey("CertificateAuthority", "", "cluster-root"),
        ),
        (ScheduledKey("Certificate", "a", "b"), ScheduledKey("Certificate", "a", "b")),
        (
            ("PodCertificateRequest", "shop", "web-0-abcde"),
            ScheduledKey("PodCertificateRequest", "shop", "web-0-abcde"),
        ),
        (
            ("CertificateSigningRequest", "", "csr-abcde"),
            ScheduledKey("CertificateSigningRequest", "", "csr-abcde"),
        ),
    ],
)
def test_scheduled_keys_parse(key: Hashable, parsed: ScheduledKey) -> None:
    assert parse_key(key) == parsed


@pytest.mark.parametrize(
    "key",
    [
        "Certificate/shop/web",
        ("Certificate", "shop"),
        ("Certificate", "shop", "web", "extra"),
        ("Secret", "shop", "web"),
        ("Certificate", None, "web"),
    ],
)
def test_anything_else_is_refused_naming_it(key: Hashable) -> None:
    with pytest.raises(TypeError, match="not a scheduled certsmith key"):
        parse_key(key)
