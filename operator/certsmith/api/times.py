"""Timestamps as the Kubernetes API writes them (RFC 3339, UTC, a `Z`).

`metav1.Time` has whole seconds (`format_time`); `metav1.MicroTime` (Lease times, and the
request annotations, which must differ a moment apart) has microseconds
(`format_micro_time`). Both parse back with `parse_time`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    """`2026-11-30T04:00:00Z`: RFC 3339 in UTC, whole seconds (metav1.Time)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(moment: datetime) -> str:
    """`2026-11-30T04:00:00.123456Z`: RFC 3339 in UTC with microseconds (metav1.MicroTime)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime (UTC when it names no zone); None when
    absent, not a string, or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
