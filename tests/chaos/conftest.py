"""The chaos tier runs on the integration tier's cluster and operator process.

Its fixtures are imported rather than copied so both tiers start the operator the same
way (`python -m certsmith` with the webhook on loopback). Imported into a second conftest,
a session fixture has a second instance: run in one session with integration tests, the
chaos tests would start a second operator beside the first. So they only run in a
session of their own (`pytest -m chaos`), and are deselected otherwise.
"""

from __future__ import annotations

import warnings

import pytest

from tests.integration.conftest import (  # noqa: F401  (re-exported pytest fixtures)
    operator,
    running_operator,
    validating_webhook_down,
)


@pytest.hookimpl(trylast=True)  # after -m/-k have deselected what was not asked for
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chaos = [item for item in items if item.get_closest_marker("chaos")]
    if chaos and any(item.get_closest_marker("integration") for item in items):
        config.hook.pytest_deselected(items=chaos)
        items[:] = [item for item in items if not item.get_closest_marker("chaos")]
        warnings.warn(
            "chaos tests deselected: they run in a session of their own (pytest -m chaos)",
            stacklevel=1,
        )
