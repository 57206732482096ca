"""Helpers shared by the cluster test tiers: polling with deadlines, the project's kubectl."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(probe: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except Exception as error:  # a probe may fail while the state converges
            last_error = error
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error})"
    )


@cache
def kubectl_path() -> str:
    """The project's own kubectl (v1.34.4), not whatever kubectl the machine has on PATH."""
    output = subprocess.run(
        [str(REPO_ROOT / "hack" / "build-binaries")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return str(Path(output.strip().splitlines()[-1]) / "kubectl")


def kubectl(kubeconfig: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_path(), "--kubeconfig", kubeconfig, *args],
        check=check,
        capture_output=True,
        text=True,
    )
