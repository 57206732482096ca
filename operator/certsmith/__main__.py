"""`python -m certsmith`: run the operator (settings come from the environment, see config.py).

Two kopf operators share one process and one set of parts (wiring.py): the admission
webhooks run in every replica; the controller (watches, issuance, renewals, rotations) runs
only in the replica holding the Lease (replicas/leadership.py), and stops if that replica
loses it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import threading
import urllib.parse
from collections.abc import Sequence

import kopf

# kopf's operator() takes this NewType, which its public namespace does not export.
from kopf._core.engines.peering import Identity

from certsmith import allocator, config, kube, wiring
from certsmith.api import names
from certsmith.authorities import store
from certsmith.podcerts.apis import PodCertificateApis
from certsmith.replicas import leadership

logger = logging.getLogger("certsmith")
CRDS = (
    "certificates.certsmith.dev",
    "certificateauthorities.certsmith.dev",
    "certificaterequests.certsmith.dev",
)
CRD_LABELS = "app.kubernetes.io/name=certsmith"
"""The label crds/ and the chart give certsmith's CRDs: one list finds them all at start."""
QUIET_UNLESS_VERBOSE = ("kopf.objects", "aiohttp.access")
"""Loggers whose INFO lines (kopf's "Handler … succeeded", a webhook call's access line)
are only shown with --verbose."""


class AdmissionRefusals(logging.Filter):
    """kopf logs each admission refusal (a handler's kopf.AdmissionError, a PermanentError)
    as an ERROR, "Webhook '<id>' failed permanently: <why>": but refusing is the webhook
    working (the caller gets the message), and one ERROR per refused request buries real
    ones. Such a record is logged at INFO (so, like kopf's other INFO lines, only with
    --verbose); any other failure of a handler stays an ERROR."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not (
            record.levelno == logging.ERROR
            and message.startswith("Webhook ")
            and " failed permanently: " in message
        ):
            return True
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return self._logger.isEnabledFor(logging.INFO)


EXIT_CANNOT_RUN = 2
"""Exit status when a setting or the cluster makes certsmith unable to run: retrying cannot
help (a ConfigError, missing prerequisites, the operator's namespace deleted)."""


class MissingPrerequisites(Exception):
    """What the cluster lacks for certsmith to run, each with how to fix it."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__("; ".join(missing))
        self.missing = tuple(missing)


def missing_prerequisites(client: kube.Kube, cfg: config.Config) -> list[str]:
    """What the cluster lacks for certsmith to run (its namespace, its CRDs), each with how
    to fix it; empty when nothing is missing. ApiError when the apiserver does not answer."""
    missing = []
    if client.get_namespace(name=cfg.namespace) is None:
        missing.append(config.missing_namespace_message(cfg.namespace))
    # One list for the labelled ones; a CRD installed without the label is read by name.
    labelled = {crd["metadata"]["name"] for crd in client.list_crds(label_selector=CRD_LABELS)}
    absent = [name for name in CRDS if name not in labelled and client.get_crd(name=name) is None]
    if absent:
        missing.append(
            f"CustomResourceDefinition {', '.join(absent)} not installed: apply them with "
            "`kubectl apply -f crds/`"
        )
    return missing


def discover_pod_certificate_apis(client: kube.Kube) -> PodCertificateApis:
    """The served versions of the pod-certificate APIs (preferred first). ApiError when the
    apiserver does not answer."""

    def served(resource: str) -> str | None:
        return client.served_version(
            group=names.CERTIFICATES_GROUP,
            resource=resource,
            versions=names.POD_CERTIFICATE_VERSIONS,
        )

    return PodCertificateApis(
        requests=served(names.POD_CERTIFICATE_REQUESTS),
        bundles=served(names.CLUSTER_TRUST_BUNDLES),
    )


async def check_prerequisites(client: kube.Kube, cfg: config.Config) -> PodCertificateApis:
    """MissingPrerequisites naming what is missing, once, instead of failing every round
    for ever; wait while the apiserver does not answer (it may be starting). Then the
    pod-certificate APIs the cluster serves: optional, so their absence is only logged."""
    loop = asyncio.get_running_loop()
    pause_seconds = 1.0
    while True:
        try:
            missing = await loop.run_in_executor(None, missing_prerequisites, client, cfg)
            apis = await loop.run_in_executor(None, discover_pod_certificate_apis, client)
            break
        except kube.ApiError as error:
            logger.warning(
                "apiserver not answering (%s); trying again in %.0f s", error, pause_seconds
            )
            await asyncio.sleep(pause_seconds)
            pause_seconds = min(pause_seconds * 2, 30.0)
    if missing:
        raise MissingPrerequisites(missing)
    for sentence in apis.unserved():
        logger.warning("%s", sentence)
    return apis


def kopf_identity(role: str, replica: str) -> Identity:
    """Given to each kopf operator: without one kopf names itself after the OS user, and
    the image's user (uid 65532) has no passwd entry, so that lookup fails at start."""
    return Identity(f"certsmith-{role}@{replica}")


async def lead(
    parts: wiring.Parts, stop: asyncio.Event, replica: str, term_over: asyncio.Event
) -> None:
    """Run the controller until the term is over (the Lease lost) or the process stops."""
    stop_term = asyncio.Event()

    async def relay() -> None:
        await asyncio.wait(
            [asyncio.create_task(stop.wait()), asyncio.create_task(term_over.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        stop_term.set()

    relay_task = asyncio.create_task(relay())
    try:
        with parts.shared.replica.leading_term():
            await kopf.operator(
                registry=parts.controller_handlers,
                clusterwide=True,
                standalone=True,
                identity=kopf_identity("controller", replica),
                stop_flag=stop_term,
            )
    finally:
        relay_task.cancel()


def start_watch_threads(parts: wiring.Parts) -> None:
    """The Lease canary (replicas/watch_health.py) and the CA Secrets' watch, in every
    replica, for the life of the process. A CA Secret written (by the leader) also has
    this replica's webhook certificate follow it at once, not at its next check."""
    shared = parts.shared
    authorities = parts.controller.authorities

    def ca_secret_changed(secret_name: str) -> None:
        authorities.ca_secret_changed(secret_name)
        parts.serving.secret_changed(secret_name)

    def ca_secrets_listed() -> None:
        authorities.ca_secrets_listed()
        parts.serving.secrets_listed()

    threading.Thread(
        target=leadership.follow_lease,
        args=(shared.kube,),
        kwargs={
            "namespace": shared.config.namespace,
            "delivered": shared.replica.watch_health.delivered,
        },
        name="lease-canary",
        daemon=True,
    ).start()
    threading.Thread(
        target=store.follow_ca_secrets,
        args=(shared.kube,),
        kwargs={
            "namespace": shared.config.namespace,
            "changed": ca_secret_changed,
            "listed": ca_secrets_listed,
        },
        name="ca-secrets",
        daemon=True,
    ).start()


def liveness_port(liveness: str | None) -> int:
    """The port of `--liveness` (kopf's probe server), 0 without one; ConfigError when it
    names none."""
    if liveness is None:
        return 0
    try:
        port = urllib.parse.urlsplit(liveness).port
    except ValueError:
        port = None
    if not port:
        raise config.ConfigError(f"--liveness={liveness!r} is not a URL with a port")
    return port


def check_ports(cfg: config.Config, liveness: int) -> None:
    """ConfigError naming the first port given to two servers or already held by another
    process: the webhook server, metrics, /readyz and kopf's liveness probe bind them (every
    address) once the operator runs, where a taken port shows only as a traceback."""
    wanted = [("CERTSMITH_WEBHOOK_LISTEN_PORT", cfg.webhook_port if cfg.webhooks else 0)]
    wanted += [("CERTSMITH_METRICS_PORT", cfg.metrics_port)]
    wanted += [("CERTSMITH_HEALTH_PORT", cfg.health_port), ("--liveness", liveness)]
    seen: dict[int, str] = {}
    for variable, port in wanted:
        if not port:
            continue
        if port in seen:
            raise config.ConfigError(
                f"{variable}={port} is also {seen[port]}: each needs its own port"
            )
        seen[port] = variable
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("0.0.0.0", port))
            except OSError as error:
                raise config.ConfigError(
                    f"{variable}={port}: the port is taken ({error.strerror}); choose another"
                ) from None


async def run(args: argparse.Namespace) -> None:
    settings = config.from_env()
    check_ports(settings, liveness_port(args.liveness))
    client = wiring.new_kube(settings)
    apis = await check_prerequisites(client, settings)
    parts = wiring.build(settings, kube=client, pod_certificate_apis=apis)
    shared = parts.shared
    stop = asyncio.Event()
    # Stable across restarts of the same replica (the pod name in a cluster), so a restarted
    # leader renews its own Lease at once instead of waiting for it to expire.
    replica = os.environ.get("CERTSMITH_IDENTITY") or socket.gethostname()
    serving = asyncio.create_task(
        kopf.operator(
            registry=parts.admission_handlers,
            clusterwide=True,
            standalone=True,
            identity=kopf_identity("webhooks", replica),
            liveness_endpoint=args.liveness,
            stop_flag=stop,
        )
    )
    elector = leadership.Elector(
        kube=shared.kube,
        namespace=shared.config.namespace,
        identity=replica,
        clock=wiring.utc_now,
        lead=functools.partial(lead, parts, stop, replica),
        on_contact=shared.replica.apiserver_answered,
        on_read=shared.replica.watch_health.read,
        on_claim=shared.replica.claim,
    )
    campaign = asyncio.create_task(elector.run())
    start_watch_threads(parts)
    await until_stopped(stop, serving=serving, campaign=campaign)


async def until_stopped(
    stop: asyncio.Event, *, serving: asyncio.Task[None], campaign: asyncio.Task[None]
) -> None:
    """Until a signal, or either operator ends; then stop both. Raises what ended the
    campaign (leadership.NamespaceGone)."""
    loop = asyncio.get_running_loop()
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
        if error is not None:
            raise error


def main(argv: Sequence[str] | None = None) -> None:
    """Exits with EXIT_CANNOT_RUN, the reason logged, when a setting or the cluster cannot
    work; a ConfigError, MissingPrerequisites or NamespaceGone raised anywhere below ends
    up here."""
    parser = argparse.ArgumentParser(prog="certsmith", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    # One handler for every logger, kopf's included (kopf.configure would add a second one,
    # printing each line twice).
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # urllib3 warns of each connection retry; a failed call is reported by the caller
    # (kube.ApiError), and an apiserver restart made hundreds of these lines a minute.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    objects = logging.getLogger("kopf.objects")
    objects.addFilter(AdmissionRefusals(objects))
    if not args.verbose:
        # A line per handler call and per webhook request: 4 lines per issuance, a few per
        # cent of its CPU; certsmith logs each issuance itself, kopf its failures.
        for chatty in QUIET_UNLESS_VERBOSE:
            logging.getLogger(chatty).setLevel(logging.WARNING)
    # Before the first thread: a thread's arena, once made, stays.
    heap = allocator.tune_heap()
    trimmer = allocator.HeapTrimmer.start()
    logger.debug("C heap settings applied: %s; trimmed: %s", heap, trimmer is not None)
    try:
        asyncio.run(run(args))
    except (config.ConfigError, kube.KubeconfigError) as error:
        logger.error("cannot start: %s", error)
    except MissingPrerequisites as error:
        for message in error.missing:
            logger.error("cannot start: %s", message)
    except leadership.NamespaceGone as error:
        logger.error("stopping: %s", error)
    else:
        return
    raise SystemExit(EXIT_CANNOT_RUN)


if __name__ == "__main__":
    main()
