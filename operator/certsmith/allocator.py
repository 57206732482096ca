"""The C heap of the process: at most 2 glibc malloc arenas and a fixed mmap threshold, set
once at start (`tune_heap`), before any thread exists; and free heap given back to the
system after a burst (`HeapTrimmer`).

Why: glibc gives threads their own arenas (up to 8 per core) and raises its mmap threshold
each time a large block is freed (mallopt(3), M_MMAP_THRESHOLD), so the transient buffers
of a burst (16 workers' API responses, TLS records, JSON texts) stay in many heaps that are
rarely given back. Measured with 2,000 Certificates (bench/scale.py's apiserver profile):
the heap held ~400 MiB of which ~130 MiB in use, RSS 189 MiB after the burst and 277 MiB
after a second one and a deletion; with 2 arenas and a 128 KiB threshold the heap holds
~50 MiB and RSS is 155 MiB and 183 MiB. These are glibc's documented knobs (the
MALLOC_ARENA_MAX and MALLOC_MMAP_THRESHOLD_ environment variables set the same); one that
the environment sets (also through GLIBC_TUNABLES) is left as set. Other C libraries
(musl, macOS) are left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

ARENA_MAX = 2
"""Malloc arenas: the event loop's (main) and one shared by the worker threads."""
MMAP_THRESHOLD_BYTES = 128 * 1024
"""Blocks this large or larger get their own mapping, returned to the system when freed
(glibc's initial value; setting it stops glibc from raising it)."""

TRIM_CHECK_SECONDS = 10.0
"""How often `HeapTrimmer` asks glibc how much of its heap is free (mallinfo2(3): a walk of
2 arenas' free lists, microseconds)."""
TRIM_FREED_BYTES = 32 * 1024 * 1024
"""Free heap grown by this much since the last trim is given back (malloc_trim(3)). After
10,000 Certificates applied at once the heap held 81 MiB, 45 MiB of it free; a burst's
last transient buffers sit above long-lived blocks, so glibc's own trimming (at the top of
the heap only) keeps them."""

logger = logging.getLogger(__name__)

# mallopt(3) parameters, from glibc's <malloc.h>.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_ENVIRONMENT = {
    _M_ARENA_MAX: ("MALLOC_ARENA_MAX", "glibc.malloc.arena_max"),
    _M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
}


@dataclass(frozen=True)
class HeapSettings:
    """What `tune_heap` sets: each value, or None where the environment decides."""

    arena_max: int | None
    mmap_threshold_bytes: int | None


def settings_to_apply(environ: Mapping[str, str]) -> HeapSettings:
    """ARENA_MAX and MMAP_THRESHOLD_BYTES, each None when `environ` already sets it: by its
    glibc variable (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_) or a GLIBC_TUNABLES entry
    (glibc.malloc.arena_max, glibc.malloc.mmap_threshold; colon-separated name=value)."""
    tunables = {
        entry.split("=", 1)[0].strip()
        for entry in environ.get("GLIBC_TUNABLES", "").split(":")
        if "=" in entry
    }

    def unset(parameter: int) -> bool:
        variable, tunable = _ENVIRONMENT[parameter]
        return variable not in environ and tunable not in tunables

    return HeapSettings(
        arena_max=ARENA_MAX if unset(_M_ARENA_MAX) else None,
        mmap_threshold_bytes=MMAP_THRESHOLD_BYTES if unset(_M_MMAP_THRESHOLD) else None,
    )


def tune_heap(environ: Mapping[str, str] = os.environ) -> HeapSettings | None:
    """Apply `settings_to_apply(environ)` with glibc's mallopt; returns what glibc accepted
    (a value it refused is None), or None (nothing done) under another C library. Call it
    before starting threads: an arena made before stays."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    wanted = settings_to_apply(environ)

    def applied(parameter: int, value: int | None) -> int | None:
        # mallopt returns 1 on success, 0 on error.
        if value is None or libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) != 1:
            return None
        return value

    return HeapSettings(
        arena_max=applied(_M_ARENA_MAX, wanted.arena_max),
        mmap_threshold_bytes=applied(_M_MMAP_THRESHOLD, wanted.mmap_threshold_bytes),
    )


def should_trim(free_bytes: int, free_after_last_trim: int) -> bool:
    """Whether the heap's free bytes (mallinfo2 fordblks) grew by TRIM_FREED_BYTES since
    the last trim, which left `free_after_last_trim`: glibc still counts the blocks whose
    pages a trim gave back as free, so only what was freed since counts."""
    return free_bytes - free_after_last_trim >= TRIM_FREED_BYTES


class _MallInfo2(ctypes.Structure):
    # struct mallinfo2 of glibc's <malloc.h> (glibc 2.33+): every field a size_t.
    _fields_ = tuple(
        (field, ctypes.c_size_t)
        for field in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    )


class HeapTrimmer:
    """Every TRIM_CHECK_SECONDS, gives free heap back to the system (malloc_trim) once it
    grew by TRIM_FREED_BYTES: the RSS after a burst is what the process still uses."""

    def __init__(self, libc: ctypes.CDLL) -> None:
        self._libc = libc
        libc.mallinfo2.restype = _MallInfo2
        self.trims = 0

    @classmethod
    def start(cls) -> HeapTrimmer | None:
        """A trimmer running in a daemon thread; None under a C library without mallinfo2
        and malloc_trim (not glibc 2.33+)."""
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "mallinfo2") or not hasattr(libc, "malloc_trim"):
            return None
        trimmer = cls(libc)
        threading.Thread(target=trimmer.run, name="certsmith-heap-trim", daemon=True).start()
        return trimmer

    def free_bytes(self) -> int:
        """Free bytes in the heap's arenas (mallinfo2 fordblks; mmapped blocks not counted)."""
        return int(self._libc.mallinfo2().fordblks)

    def trim_if_grown(self, free_after_last_trim: int) -> int:
        """Trim when `should_trim`; returns the free bytes to compare with next time."""
        free = self.free_bytes()
        if not should_trim(free, free_after_last_trim):
            return min(free, free_after_last_trim)
        started = time.monotonic()
        self._libc.malloc_trim(ctypes.c_size_t(0))
        left = self.free_bytes()
        self.trims += 1
        logger.debug(
            "gave free heap back: %d MiB free before, %d MiB after, in %.1f ms",
            free >> 20,
            left >> 20,
            1000 * (time.monotonic() - started),
        )
        return left

    def run(self) -> None:
        free_after_last_trim = self.free_bytes()
        while True:
            time.sleep(TRIM_CHECK_SECONDS)
            free_after_last_trim = self.trim_if_grown(free_after_last_trim)
