"""kopf's connections to the apiserver are bounded (api_session.connection_limit): the
status patches of `workers` threads, plus the watch streams."""

from __future__ import annotations

import pytest

from certsmith.config import MAX_WORKERS, Config
from certsmith.controller.api_session import connection_limit


@pytest.mark.parametrize(
    ("workers", "limit"),
    [(1, 17), (Config.workers, 32), (MAX_WORKERS, MAX_WORKERS + 16)],
)
def test_connection_limit(workers: int, limit: int) -> None:
    assert connection_limit(workers) == limit
