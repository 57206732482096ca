"""The C heap settings applied at start (allocator.py)."""

from __future__ import annotations

import pytest

from certsmith import allocator
from certsmith.allocator import ARENA_MAX, MMAP_THRESHOLD_BYTES, HeapSettings


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, HeapSettings(ARENA_MAX, MMAP_THRESHOLD_BYTES), id="nothing set"),
        pytest.param(
            {"MALLOC_ARENA_MAX": "4"}, HeapSettings(None, MMAP_THRESHOLD_BYTES), id="arena set"
        ),
        pytest.param(
            {"MALLOC_MMAP_THRESHOLD_": "65536"}, HeapSettings(ARENA_MAX, None), id="mmap set"
        ),
        pytest.param(
            {"GLIBC_TUNABLES": "glibc.malloc.arena_max=8:glibc.malloc.mmap_threshold=4096"},
            HeapSettings(None, None),
            id="both by tunables",
        ),
        pytest.param(
            {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"},
            HeapSettings(ARENA_MAX, MMAP_THRESHOLD_BYTES),
            id="another tunable",
        ),
        pytest.param(
            {"MALLOC_ARENA_MAX_X": "1", "GLIBC_TUNABLES": "glibc.malloc.arena_max"},
            HeapSettings(ARENA_MAX, MMAP_THRESHOLD_BYTES),
            id="lookalikes and a tunable without a value",
        ),
    ],
)
def test_settings_to_apply_leaves_what_the_environment_sets(
    environ: dict[str, str], expected: HeapSettings
) -> None:
    assert allocator.settings_to_apply(environ) == expected


def test_tune_heap_applies_them_under_glibc() -> None:
    # The test machines and the image (python:3.11-slim, Debian) run glibc.
    assert allocator.tune_heap({}) == HeapSettings(ARENA_MAX, MMAP_THRESHOLD_BYTES)
    assert allocator.tune_heap({"MALLOC_ARENA_MAX": "2"}) == HeapSettings(
        None, MMAP_THRESHOLD_BYTES
    )
