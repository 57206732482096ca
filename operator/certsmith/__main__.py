"""`python -m certsmith`: run the operator (settings come from the environment, see config.py).

Two kopf operators share one process and one Runtime: the admission webhooks run in every
replica; the controller (watches, issuance, renewals, rotations) runs only in the replica
holding the Lease (leadership.py), and stops if that replica loses it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading

import kopf

from certsmith import config, handlers, leadership, runtime, webhooks


async def run(args: argparse.Namespace) -> None:
    cfg = config.from_env()
    shared = runtime.build(cfg)
    memo = kopf.Memo(runtime=shared)
    # Stable across restarts of the same replica (the pod name in a cluster), so a restarted
    # leader renews its own Lease at once instead of waiting for it to expire.
    identity = os.environ.get("CERTSMITH_IDENTITY") or socket.gethostname()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def lead(term_over: asyncio.Event) -> None:
        stop_term = asyncio.Event()

        async def relay() -> None:
            await asyncio.wait(
                [asyncio.create_task(stop.wait()), asyncio.create_task(term_over.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )
            stop_term.set()

        relay_task = asyncio.create_task(relay())
        shared.leading = True
        try:
            await kopf.operator(
                registry=handlers.REGISTRY,
                memo=memo,
                clusterwide=True,
                standalone=True,
                identity=f"certsmith-controller@{identity}",
                stop_flag=stop_term,
            )
        finally:
            shared.leading = False
        relay_task.cancel()

    serving = asyncio.create_task(
        kopf.operator(
            registry=webhooks.REGISTRY if cfg.webhooks else webhooks.SERVING_ONLY,
            memo=memo,
            clusterwide=True,
            standalone=True,
            identity=f"certsmith-webhooks@{identity}",
            liveness_endpoint=args.liveness,
            stop_flag=stop,
        )
    )
    elector = leadership.Elector(
        kube=shared.kube,
        namespace=cfg.namespace,
        identity=identity,
        clock=runtime.utc_now,
        lead=lead,
        on_contact=shared.apiserver_answered,
        on_read=shared.watch_health.read,
    )
    campaign = asyncio.create_task(elector.run())
    threading.Thread(
        target=leadership.follow_lease,
        args=(shared.kube,),
        kwargs={"namespace": cfg.namespace, "delivered": shared.watch_health.delivered},
        name="lease-canary",
        daemon=True,
    ).start()
    # Each kopf operator installs its own signal handlers; ours must win so that a
    # SIGTERM stops both operators, not only the last one started.
    while not stop.is_set() and not serving.done():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1)
    campaign.cancel()
    stop.set()
    await serving


def main() -> None:
    parser = argparse.ArgumentParser(prog="certsmith", description=__doc__.splitlines()[0])
    parser.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kopf.configure(verbose=args.verbose)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
