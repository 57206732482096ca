"""The C heap of the process: at most 2 glibc malloc arenas and a fixed mmap threshold, set
once at start (`tune_heap`), before any thread exists.

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
import os
from collections.abc import Mapping
from dataclasses import dataclass

ARENA_MAX = 2
"""Malloc arenas: the event loop's (main) and one shared by the worker threads."""
MMAP_THRESHOLD_BYTES = 128 * 1024
"""Blocks this large or larger get their own mapping, returned to the system when freed
(glibc's initial value; setting it stops glibc from raising it)."""

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
