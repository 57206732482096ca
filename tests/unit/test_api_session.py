"""kopf's connections to the apiserver are bounded (api_session.connection_limit): the
status patches of `workers` threads, plus the watch streams; and kopf's Certificates watch
is read on only while fewer than `handling_limit` Certificates are being handled
(api_session.StreamGate)."""

from __future__ import annotations

import asyncio

import pytest

from certsmith.config import MAX_WORKERS, Config
from certsmith.controller.api_session import (
    StreamGate,
    connection_limit,
    handling_limit,
    is_certificates_watch,
)


@pytest.mark.parametrize(
    ("workers", "limit"),
    [(1, 17), (Config.workers, 32), (MAX_WORKERS, MAX_WORKERS + 16)],
)
def test_connection_limit(workers: int, limit: int) -> None:
    assert connection_limit(workers) == limit


@pytest.mark.parametrize(
    ("workers", "limit"),
    [(1, 4), (Config.workers, 64), (MAX_WORKERS, 4 * MAX_WORKERS)],
)
def test_handling_limit(workers: int, limit: int) -> None:
    assert handling_limit(workers) == limit


@pytest.mark.parametrize(
    ("path", "query", "watch"),
    [
        ("/apis/certsmith.dev/v1alpha1/certificates", {"watch": "true"}, True),
        (
            "/apis/certsmith.dev/v1alpha1/certificates",
            {"watch": "true", "labelSelector": "a", "resourceVersion": "7"},
            True,
        ),
        ("/apis/certsmith.dev/v1alpha1/namespaces/team-a/certificates", {"watch": "true"}, True),
        # A list (kopf's first), or a watch that is not of Certificates, reads freely.
        ("/apis/certsmith.dev/v1alpha1/certificates", {}, False),
        ("/apis/certsmith.dev/v1alpha1/certificates", {"watch": "false"}, False),
        ("/apis/certsmith.dev/v1alpha1/certificaterequests", {"watch": "true"}, False),
        ("/apis/certsmith.dev/v1alpha1/certificateauthorities", {"watch": "true"}, False),
        ("/apis/cert-manager.io/v1/certificates", {"watch": "true"}, False),
        ("/apis/certsmith.dev/v1/certificates", {"watch": "true"}, False),
        (
            "/apis/certsmith.dev/v1alpha1/namespaces/a/certificates/c/status",
            {"watch": "true"},
            False,
        ),
        ("/api/v1/secrets", {"watch": "true"}, False),
    ],
)
def test_is_certificates_watch(path: str, query: dict[str, str], watch: bool) -> None:
    assert is_certificates_watch(path, query) is watch


async def _passes(gate: StreamGate) -> bool:
    try:
        await asyncio.wait_for(gate.passed(), timeout=0.05)
    except TimeoutError:
        return False
    return True


def test_the_gate_holds_at_the_limit_and_opens_when_one_is_handled() -> None:
    async def run() -> list[tuple[int, bool]]:
        gate = StreamGate(2)
        seen = [(gate.handling_now, await _passes(gate))]
        with gate.handling():
            seen.append((gate.handling_now, await _passes(gate)))
            with gate.handling():
                seen.append((gate.handling_now, await _passes(gate)))
                waiting = asyncio.ensure_future(gate.passed())
                await asyncio.sleep(0.01)
                seen.append((gate.handling_now, waiting.done()))
            await asyncio.sleep(0.01)
            seen.append((gate.handling_now, waiting.done()))
        seen.append((gate.handling_now, await _passes(gate)))
        return seen

    assert asyncio.run(run()) == [
        (0, True),
        (1, True),
        (2, False),
        (2, False),
        (1, True),
        (0, True),
    ]


def test_the_gate_opens_when_a_handler_fails() -> None:
    async def run() -> tuple[int, bool]:
        gate = StreamGate(1)
        with pytest.raises(RuntimeError), gate.handling():
            raise RuntimeError("apiserver gone")
        return gate.handling_now, await _passes(gate)

    assert asyncio.run(run()) == (0, True)


@pytest.mark.parametrize("limit", [0, -1])
def test_a_gate_needs_a_limit_of_one_at_least(limit: int) -> None:
    with pytest.raises(ValueError, match=f"limit must be at least 1, not {limit}"):
        StreamGate(limit)
