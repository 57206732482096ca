"""`kubectl certsmith renew`: have the operator re-issue now, and optionally wait for it.

The plugin never signs anything itself: it sets the Certificate's renew-requested-at
annotation, and the operator re-issues once per distinct value (policies.renewal_requested).
So a renewal goes through the same checks, events and status as any other issuance.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from certsmith.api import conditions, names, times
from certsmith.cli import status
from certsmith.cli.api import CliError, NotFound

if TYPE_CHECKING:
    from certsmith.cli.api import Api

POLL_INTERVAL_SECONDS = 0.5


def request_value(now: datetime) -> str:
    """RFC 3339 UTC with microseconds: two requests a moment apart still differ."""
    return times.format_micro_time(now)


def serial_of(body: Mapping[str, Any]) -> str | None:
    """The Certificate's status.serialNumber (lowercase hex), None before its first issue."""
    return (body.get("status") or {}).get("serialNumber")


def reissued(body: Mapping[str, Any], old_serial: str | None) -> bool:
    """Done: a different serial than before the request, and Ready=True for this generation."""
    ready = conditions.find_condition(
        (body.get("status") or {}).get("conditions"), conditions.READY
    )
    serial = serial_of(body)
    if ready is None or ready.get("status") != "True" or serial in (None, old_serial):
        return False
    observed = ready.get("observedGeneration")
    generation = (body.get("metadata") or {}).get("generation")
    return not (isinstance(observed, int) and isinstance(generation, int) and observed < generation)


@dataclass
class Requested:
    """A Certificate whose renewal was requested, and its serial before the request."""

    namespace: str
    name: str
    old_serial: str | None

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


def _select(
    api: Api, *, namespace: str | None, certificates: Sequence[str], every: bool
) -> list[dict[str, Any]]:
    """The Certificates to renew: every one in `namespace` (None: all namespaces) with
    `every`, else each named one of `namespace` (CliError if it does not exist)."""
    if every:
        return api.list_certificates(namespace)
    if namespace is None:
        raise CliError("-A/--all-namespaces goes with --all")
    return [api.get_certificate(namespace, name) for name in certificates]


def run(
    api: Api,
    *,
    namespace: str | None,
    certificates: Sequence[str],
    every: bool,
    wait: bool,
    timeout: timedelta,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Request a renewal of each Certificate selected (`namespace` None with `every`: in
    all namespaces, -A), and with `wait` wait up to `timeout` for each to be re-issued.
    Exit code 1 when a request was refused or a wait failed, else 0."""
    bodies = _select(api, namespace=namespace, certificates=certificates, every=every)
    if not bodies:
        print(f"No Certificates found in {status.describe_scope(namespace)}.")
        return 0
    value = request_value(clock())
    requested, refused = [], 0
    for body in bodies:
        metadata = body["metadata"]
        entry = Requested(metadata["namespace"], metadata["name"], serial_of(body))
        try:
            api.annotate_certificate(
                entry.namespace, entry.name, {names.RENEWAL_REQUEST_ANNOTATION: value}
            )
        except CliError as error:
            # One refusal (say, by admission) must not stop the rest of an --all.
            print(f"error: {error}", file=sys.stderr)
            refused += 1
            continue
        requested.append(entry)
        print(f"Certificate {entry.label}: renewal requested at {value}", flush=True)
    waited = _wait(api, requested, timeout=timeout, sleep=sleep) if wait else 0
    return 1 if refused or waited else 0


def _wait(
    api: Api, requested: list[Requested], *, timeout: timedelta, sleep: Callable[[float], None]
) -> int:
    """Poll every POLL_INTERVAL_SECONDS until each is re-issued (`reissued`); 1 when one was
    deleted meanwhile or `timeout` passed first (each still pending is named), else 0."""
    deadline = time.monotonic() + timeout.total_seconds()
    pending = list(requested)
    failed = 0
    last: dict[str, Mapping[str, Any]] = {}
    while pending:
        for entry in list(pending):
            try:
                body = api.get_certificate(entry.namespace, entry.name)
            except NotFound:
                print(
                    f"error: Certificate {entry.label} was deleted while waiting", file=sys.stderr
                )
                pending.remove(entry)
                failed += 1
                continue
            last[entry.label] = body
            if reissued(body, entry.old_serial):
                old = entry.old_serial or "(none)"
                print(f"Certificate {entry.label} renewed: serial {old} → {serial_of(body)}")
                pending.remove(entry)
        if pending and time.monotonic() >= deadline:
            for entry in pending:
                state = status.certificate_state(last[entry.label], datetime.now(UTC))
                why = f" ({state.reason}: {state.message})" if state.reason else ""
                print(
                    f"error: timed out after {_seconds(timeout)} waiting for Certificate "
                    f"{entry.label} to be re-issued; it is Ready={state.ready}{why}",
                    file=sys.stderr,
                )
            return 1
        if pending:
            sleep(POLL_INTERVAL_SECONDS)
    return 1 if failed else 0


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():g}s"


def check_arguments(names: Sequence[str], every: bool) -> None:
    """Certificate names or --all, exactly one of them; CliError otherwise."""
    if every and names:
        raise CliError("give Certificate names or --all, not both")
    if not every and not names:
        raise CliError("name a Certificate to renew, or pass --all")
