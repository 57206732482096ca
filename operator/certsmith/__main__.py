"""`python -m certsmith`: run the operator (settings come from the environment, see config.py).

Two kopf operators share one process and one Runtime: the admission webhooks run in every
replica; the controller (watches, issuance, renewals, rotations) runs only in the replica
holding the Lease (replicas/leadership.py), and stops if that replica loses it.
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

from certsmith import config, kube, runtime
from certsmith.admission import handlers as admission
from certsmith.authorities import store
from certsmith.controller import handlers as controller
from certsmith.replicas import leadership

logger = logging.getLogger("certsmith")
CRDS = ("certificates.certsmith.dev", "certificateauthorities.certsmith.dev")
# Exit status when the cluster lacks what certsmith needs: retrying cannot help.
EXIT_MISSING = 2


def missing_prerequisites(client: kube.Kube, cfg: config.Config) -> list[str]:
    """What the cluster lacks for certsmith to run (its namespace, its CRDs), each with how
    to fix it; empty when nothing is missing. ApiError when the apiserver does not answer."""
    missing = []
    if client.get_namespace(name=cfg.namespace) is None:
        missing.append(config.missing_namespace_message(cfg.namespace))
    absent = [name for name in CRDS if client.get_crd(name=name) is None]
    if absent:
        missing.append(
            f"CustomResourceDefinition {', '.join(absent)} not installed: apply them with "
            "`kubectl apply -f crds/`"
        )
    return missing


async def check_prerequisites(client: kube.Kube, cfg: config.Config) -> None:
    """Exit (EXIT_MISSING) naming what is missing, once, instead of failing every round for
    ever; wait while the apiserver does not answer (it may be starting)."""
    loop = asyncio.get_running_loop()
    pause = 1.0
    while True:
        try:
            missing = await loop.run_in_executor(None, missing_prerequisites, client, cfg)
            break
        except kube.ApiError as error:
            logger.warning("apiserver not answering (%s); trying again in %.0f s", error, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
    if missing:
        for message in missing:
            logger.error("cannot start: %s", message)
        raise SystemExit(EXIT_MISSING)


async def run(args: argparse.Namespace) -> None:
    cfg = config.from_env()
    shared = runtime.build(cfg)
    await check_prerequisites(shared.kube, cfg)
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
                registry=controller.REGISTRY,
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
            registry=admission.REGISTRY if cfg.webhooks else admission.SERVING_ONLY,
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
    threading.Thread(
        target=store.follow_ca_secrets,
        args=(shared.kube,),
        kwargs={"namespace": cfg.namespace, "changed": shared.ca_secret_changed},
        name="ca-secrets",
        daemon=True,
    ).start()
    # Each kopf operator installs its own signal handlers; ours must win so that a
    # SIGTERM stops both operators, not only the last one started.
    while not stop.is_set() and not serving.done() and not campaign.done():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1)
    campaign.cancel()
    stop.set()
    await serving
    if campaign.done() and not campaign.cancelled():
        error = campaign.exception()
        if isinstance(error, leadership.NamespaceGone):
            logger.error("stopping: %s", error)
            raise SystemExit(EXIT_MISSING)
        if error is not None:
            raise error


def main() -> None:
    parser = argparse.ArgumentParser(prog="certsmith", description=__doc__.splitlines()[0])
    parser.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    # One handler for every logger, kopf's included (kopf.configure would add a second one,
    # printing each line twice).
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
