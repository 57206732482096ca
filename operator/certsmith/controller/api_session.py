"""kopf's connections to the apiserver, bounded; and kopf's watch of Certificates read no
faster than Certificates are handled.

kopf's own session sets no limit on connections (aiohttp `TCPConnector(limit=0)`): while
status patches wait on a busy apiserver, each further one opens another TLS connection, and
every open connection holds ~0.3 MiB (asyncio's 256 KiB TLS read buffer plus OpenSSL's
state), kept in the pool after the burst. A burst of 2,000 Certificates had ~190 open at
once. With a limit, a patch waits for a free connection instead; the patches a burst makes
are the status writes of `workers` threads, so `workers` connections carry them.

kopf reads every watch stream as fast as it arrives and queues each event, decoded, for its
object (kopf's queueing.watcher: an unbounded queue per object, and objects beyond its
worker_limit wait in another): 10,000 Certificates applied at once, faster than they are
issued, left ~4,800 decoded Certificates queued in the process mid-burst. `StreamGate`
holds the Certificates' stream instead while enough Certificates are being handled: the
events wait as bytes in the connection (the kernel's socket buffers, then the apiserver),
in order, and kopf reads on from where it stopped, resourceVersion by resourceVersion.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, cast

import aiohttp
import kopf
from aiohttp.connector import Connection

from certsmith.api import names

WATCH_STREAMS = 16
"""Connections kept beside the patches' for kopf's watch streams, one per watched resource
(the controller watches up to 7: authorities, Certificates, CertificateRequests, namespaces,
ConfigMaps, ClusterTrustBundles, PodCertificateRequests), with room to spare: a stream
waiting for a free connection would delay that resource's events."""

HANDLING_PER_WORKER = 4
"""Certificates being handled per worker thread (queued for a thread or in one) at which
the Certificates' watch stream is held: a thread done with one finds the next queued, and
kopf's object tasks (`handlers.object_tasks`, 16 per thread) never fill up with
Certificates waiting for a thread."""

GATED_READ_BYTES = 64 * 1024
"""The most of a held stream read between two looks at the gate (aiohttp's own buffer
limit; kopf asks for 1 MiB, ~700 Certificate events): at most ~40 Certificates' events
pass beyond the limit."""


def connection_limit(workers: int) -> int:
    """Open connections at most for a controller with `workers` threads: their patches,
    plus the watch streams'."""
    return workers + WATCH_STREAMS


def handling_limit(workers: int) -> int:
    """How many Certificates may be in their handler at once (for a controller with
    `workers` threads) before kopf's Certificates watch is read no further."""
    return HANDLING_PER_WORKER * workers


def is_certificates_watch(path: str, query: Mapping[str, str]) -> bool:
    """Whether a request (its URL path and query) is a watch of Certificates, cluster-wide
    (/apis/GROUP/VERSION/certificates) or in one namespace
    (/apis/GROUP/VERSION/namespaces/NAMESPACE/certificates), as kopf makes it (?watch=true)."""
    if query.get("watch") != "true":
        return False
    prefix = f"/apis/{names.GROUP}/{names.VERSION}/"
    if not path.startswith(prefix):
        return False
    parts = path[len(prefix) :].split("/")
    return parts == [names.CERTIFICATES] or (
        len(parts) == 3 and parts[0] == "namespaces" and parts[2] == names.CERTIFICATES
    )


class StreamGate:
    """Counts the Certificates in their handler (`handling`); the Certificates' watch
    stream is read further only while fewer than `limit` are (`passed`). Used on kopf's
    event loop only."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.handling_now = 0
        self._open = asyncio.Event()
        self._open.set()

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Around one Certificate's handler call (waiting for a thread included)."""
        self.handling_now += 1
        if self.handling_now >= self.limit:
            self._open.clear()
        try:
            yield
        finally:
            self.handling_now -= 1
            if self.handling_now < self.limit:
                self._open.set()

    async def passed(self) -> None:
        """Returns once fewer than `limit` Certificates are being handled."""
        await self._open.wait()


class _GatedContent:
    """A watch response's body, read through the gate: kopf reads a watch's body with
    iter_chunked alone; aiohttp's other uses (closing, errors) go to the body itself."""

    def __init__(self, content: aiohttp.StreamReader, gate: StreamGate) -> None:
        self._content = content
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._content, name)

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        while True:
            await self._gate.passed()
            chunk = await self._content.read(min(n, GATED_READ_BYTES))
            if not chunk:
                return
            yield chunk


def _gated_response(gate: StreamGate) -> type[aiohttp.ClientResponse]:
    class GatedResponse(aiohttp.ClientResponse):
        async def start(self, connection: Connection) -> aiohttp.ClientResponse:
            started = await super().start(connection)
            if is_certificates_watch(self.url.path, self.url.query):
                # Read through the gate, by kopf's stream reader alone (see _GatedContent).
                self.content = cast(aiohttp.StreamReader, _GatedContent(self.content, gate))
            return started

    return GatedResponse


def bounded_session(
    info: kopf.ConnectionInfo, *, limit: int, gate: StreamGate
) -> kopf.AiohttpSession:
    """A session like kopf's own for `info` (its server, TLS settings, credentials and
    proxy), with at most `limit` open connections, whose Certificates watch is read through
    `gate`. Must be called on kopf's event loop (aiohttp binds the session to the running
    loop); kopf closes it when it logs in again."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
        response_class=_gated_response(gate),
    )
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
    )
