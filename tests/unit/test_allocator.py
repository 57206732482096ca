"""The C heap settings applied at start (allocator.py)."""

from __future__ import annotations

import ctypes
from pathlib import Path

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


MIB = 1024 * 1024


def rss_bytes() -> int:
    """This process's resident set (VmRSS of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(
    ("free", "after_last_trim", "expected"),
    [
        (0, 0, False),
        (31 * MIB, 0, False),
        (32 * MIB, 0, True),
        (40 * MIB, 10 * MIB, False),
        (42 * MIB, 10 * MIB, True),
        (5 * MIB, 10 * MIB, False),
    ],
)
def test_should_trim_when_free_heap_grew_by_32_mib(
    free: int, after_last_trim: int, expected: bool
) -> None:
    assert allocator.should_trim(free, after_last_trim) is expected


def test_trimmer_gives_freed_heap_back() -> None:
    trimmer = allocator.HeapTrimmer(ctypes.CDLL(None))
    before = trimmer.free_bytes()
    assert trimmer.trim_if_grown(before) == before  # nothing grew: no trim
    assert trimmer.trims == 0
    # 64 MiB in 64 KiB blocks (under the mmap threshold: in the heap), each followed by a
    # small block that stays: freed, they are free heap that glibc does not trim by itself.
    blocks, kept = [], []
    for _ in range(1024):
        blocks.append(ctypes.create_string_buffer(64 * 1024))
        kept.append(ctypes.create_string_buffer(1024))
    del blocks
    grown = trimmer.free_bytes()
    assert grown - before >= allocator.TRIM_FREED_BYTES
    resident = rss_bytes()
    left = trimmer.trim_if_grown(before)
    assert trimmer.trims == 1
    # The pages went back (madvise); glibc still counts the blocks as free heap, so the
    # next trim waits for another TRIM_FREED_BYTES.
    assert resident - rss_bytes() >= allocator.TRIM_FREED_BYTES
    assert left >= grown - MIB
    assert trimmer.trim_if_grown(left) <= left
    assert trimmer.trims == 1
    assert len(kept) == 1024
