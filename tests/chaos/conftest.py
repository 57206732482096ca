"""The chaos tier runs on the integration tier's cluster and operator process.

Its fixtures are imported rather than copied so both tiers start the operator the same
way (`python -m certsmith` with the webhook on loopback).
"""

from __future__ import annotations

from tests.integration.conftest import (  # noqa: F401  (re-exported pytest fixtures)
    operator,
    running_operator,
    validating_webhook_down,
)
