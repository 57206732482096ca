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
import functools
import re
from collections.abc import Callable

from aiohttp import web

from certsmith.kube import ApiError
from certsmith.replicas.state import ReplicaState


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


APISERVER_SILENCE_LIMIT_SECONDS = 10.0
# An authority's name is a DNS subdomain (RFC 1123): nothing else is looked up.
_AUTHORITY_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


_KEY_ID = re.compile(r"[0-9a-f]{40}")
CrlSource = Callable[[str, str | None], bytes | None]


async def _crl_file(crl: CrlSource | None, request: web.Request) -> web.Response:
    """`/crl/<authority>.crl` and `/crl/<authority>/<key id>.crl` (`serve`)."""
    name = request.match_info["authority"]
    key_id = request.match_info.get("key_id")
    if (
        crl is None
        or not _AUTHORITY_NAME.fullmatch(name)
        or (key_id is not None and not _KEY_ID.fullmatch(key_id))
    ):
        return web.Response(status=404, text="no such CRL\n")
    try:
        der = await asyncio.to_thread(crl, name, key_id)
    except (ApiError, ValueError) as error:  # unanswered or unreadable: retry later
        return web.Response(status=503, text=f"the CRL cannot be read now: {error}\n")
    if der is None:
        return web.Response(status=404, text=f"CertificateAuthority {name} has no CRL\n")
    return web.Response(body=der, content_type="application/pkix-crl")


async def serve(
    *,
    port: int,
    replica: ReplicaState,
    authority_problem: Callable[[], str | None],
    webhook_port: int | None,
    crl: CrlSource | None = None,
) -> web.AppRunner:
    """Serve `/readyz` on `port` (every address) until the returned runner is cleaned up,
    and, with `crl`, `/crl/<authority>.crl` (its current intermediate's CRL) and
    `/crl/<authority>/<key id>.crl` (the CRL of its CA with that hex key identifier, as
    leaves name it: revocation.ISSUER_PLACEHOLDER) in DER (`application/pkix-crl`, RFC 5280
    4.2.1.13), 404 when it has none.

    `authority_problem`: why the default authority cannot sign, or None; `webhook_port`:
    the port the webhook must accept connections on, or None when webhooks are off;
    `crl(authority, key id or None)`: the DER to serve (blocking: run in a thread), None
    for none, an exception when it cannot be read now (503)."""

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
    app.router.add_get("/crl/{authority}.crl", functools.partial(_crl_file, crl))
    app.router.add_get("/crl/{authority}/{key_id}.crl", functools.partial(_crl_file, crl))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
