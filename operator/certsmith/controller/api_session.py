"""kopf's connections to the apiserver, bounded.

kopf's own session sets no limit on connections (aiohttp `TCPConnector(limit=0)`): while
status patches wait on a busy apiserver, each further one opens another TLS connection, and
every open connection holds ~0.3 MiB (asyncio's 256 KiB TLS read buffer plus OpenSSL's
state), kept in the pool after the burst. A burst of 2,000 Certificates had ~190 open at
once. With a limit, a patch waits for a free connection instead; the patches a burst makes
are the status writes of `workers` threads, so `workers` connections carry them.
"""

from __future__ import annotations

import aiohttp
import kopf

WATCH_STREAMS = 16
"""Connections kept beside the patches' for kopf's watch streams, one per watched resource
(the controller watches up to 7: authorities, Certificates, CertificateRequests, namespaces,
ConfigMaps, ClusterTrustBundles, PodCertificateRequests), with room to spare: a stream
waiting for a free connection would delay that resource's events."""


def connection_limit(workers: int) -> int:
    """Open connections at most for a controller with `workers` threads: their patches,
    plus the watch streams'."""
    return workers + WATCH_STREAMS


def bounded_session(info: kopf.ConnectionInfo, *, limit: int) -> kopf.AiohttpSession:
    """A session like kopf's own for `info` (its server, TLS settings, credentials and
    proxy), with at most `limit` open connections. Must be called on kopf's event loop
    (aiohttp binds the session to the running loop); kopf closes it when it logs in again."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
    )
