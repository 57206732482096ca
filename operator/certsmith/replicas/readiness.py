"""`/readyz`: ready only when certsmith can do its job.

Liveness is kopf's own probe (`--liveness`); it answers even when the default authority is
broken (the process starts anyway and retries). Readiness here means the default authority
is loaded (so Certificates can be signed; else /readyz names why, e.g. its root Secret is
gone), the apiserver answered within the last 10 s (the Lease campaign asks it every 2 s),
the leader's watch streams deliver (replicas/watch_health.py), and, when webhooks are on, the
webhook accepts connections (so the apiserver's calls will be answered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from certsmith.replicas.state import ReplicaState


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


APISERVER_SILENCE_LIMIT_SECONDS = 10.0


async def serve(
    *,
    port: int,
    replica: ReplicaState,
    authority_problem: Callable[[], str | None],
    webhook_port: int | None,
) -> web.AppRunner:
    """Serve `/readyz` on `port` (every address) until the returned runner is cleaned up.

    `authority_problem`: why the default authority cannot sign, or None; `webhook_port`:
    the port the webhook must accept connections on, or None when webhooks are off."""

    async def readyz(_: web.Request) -> web.Response:
        problems = []
        silence = replica.apiserver_silence_seconds()
        if silence > APISERVER_SILENCE_LIMIT_SECONDS:
            problems.append(f"the apiserver has not answered for {silence:.0f} s")
        controller = replica.controller_problem()
        if controller is not None:
            problems.append(controller)
        authority = authority_problem()
        if authority is not None:
            problems.append(authority)
        if webhook_port is not None and not await _port_open(webhook_port):
            problems.append("the admission webhook is not serving")
        if problems:
            return web.Response(status=503, text="; ".join(problems) + "\n")
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
