"""A root and an intermediate shared by the unit tests that judge or inspect leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certsmith.pki import ca

# A day before the fixed `now` those tests use (2026-06-01 12:00 UTC).
CA_ISSUED_AT = datetime(2026, 5, 31, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def root() -> ca.CAKeyPair:
    return ca.build_root(common_name="root", now=CA_ISSUED_AT, lifetime=timedelta(days=3650))


@pytest.fixture(scope="session")
def intermediate(root: ca.CAKeyPair) -> ca.CAKeyPair:
    return ca.build_intermediate(
        issuer=root, common_name="intermediate", now=CA_ISSUED_AT, lifetime=timedelta(days=365)
    )
