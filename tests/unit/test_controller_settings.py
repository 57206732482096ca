"""The kopf settings the controller runs with (controller/handlers.py configure)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import kopf
import pytest

from certsmith.controller import handlers


@pytest.mark.parametrize(
    ("workers", "expected"),
    [(1, 256), (16, 256), (17, 272), (64, 1024), (256, 4096)],
)
def test_object_tasks_keep_the_threads_busy_and_bounded(workers: int, expected: int) -> None:
    assert handlers.object_tasks(workers) == expected


def test_configure_bounds_kopfs_object_tasks_and_their_idle_time() -> None:
    settings = kopf.OperatorSettings()
    with ThreadPoolExecutor(max_workers=1) as executor:
        handlers.configure(settings, executor, 16)
    assert settings.queueing.worker_limit == 256
    assert settings.queueing.idle_timeout == 0.1
    assert settings.execution.max_workers == 16
