"""A connection to the apiserver that dies silently mid-watch is noticed, and what the
operator missed meanwhile is caught up within 30 s (kopf's watches have had reconnect bugs;
this is the proof for ours), and /readyz reports the leader degraded meanwhile."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.integration import certs
from tests.integration.conftest import OperatorProcess
from tests.integration.freezing_proxy import FreezingProxy
from tests.support import wait_for

pytestmark = pytest.mark.integration
CATCH_UP_LIMIT = 30.0


def _proxied(kubeconfig: str, path: Path) -> FreezingProxy:
    """A proxy to the apiserver, and at `path` a copy of `kubeconfig` that goes through it."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    real = urlsplit(cluster["server"])
    proxy = FreezingProxy((real.hostname or "127.0.0.1", real.port or 443))
    # Same host name as before, so the apiserver's certificate still matches.
    cluster["server"] = f"https://{real.hostname}:{proxy.port}"
    path.write_text(yaml.safe_dump(config))
    return proxy


def test_missed_changes_are_caught_up_after_a_silent_disconnect(
    api_client, kubeconfig, namespace, running_operator, tmp_path
):
    running_operator.stop()  # this test runs its own replica, behind the proxy
    proxied = tmp_path / "kubeconfig"
    proxy = _proxied(kubeconfig, proxied)
    replica = OperatorProcess(kubeconfig, tmp_path / "operator.log", connect_via=str(proxied))
    replica.start()
    not_ready: list[float] = []
    watching = threading.Event()
    try:
        replica.wait_ready(timeout=60, what="the replica ready")
        certs.create(api_client, namespace, certs.certificate("before", dnsNames=["b.example.com"]))
        wait_for(lambda: certs.is_ready(api_client, namespace, "before"), timeout=30, what="before")
        time.sleep(5)  # the watch streams are mid-flight now

        frozen = proxy.freeze()
        frozen_at = time.monotonic()

        def watch_readiness() -> None:
            while not watching.is_set():
                if replica.readyz() != 200:
                    not_ready.append(time.monotonic() - frozen_at)
                time.sleep(0.5)

        threading.Thread(target=watch_readiness, daemon=True).start()
        certs.create(api_client, namespace, certs.certificate("after", dnsNames=["a.example.com"]))
        created_at = time.monotonic()
        wait_for(
            lambda: certs.is_ready(api_client, namespace, "after"),
            timeout=90,
            what="the Certificate created after the disconnect",
        )
        caught_up = time.monotonic() - created_at
        replica.wait_ready(timeout=60, what="readiness back after catching up")
        ready_again = time.monotonic() - frozen_at
        watching.set()
        print(
            f"\nsilent disconnect: {frozen} connections frozen; the Certificate created "
            f"{created_at - frozen_at:.1f} s later was Ready {caught_up:.1f} s after creation; "
            f"/readyz not ready from {not_ready[0] if not_ready else float('nan'):.1f} s "
            f"to {ready_again:.1f} s after the freeze"
        )
        assert caught_up <= CATCH_UP_LIMIT, replica.log_tail()
        # Readiness said so from shortly after the disconnect until past the catch-up.
        assert not_ready and not_ready[0] <= 15, not_ready
        assert ready_again >= created_at - frozen_at + caught_up
    finally:
        watching.set()
        replica.stop()
        proxy.close()
