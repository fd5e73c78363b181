"""glibc allocator settings for the analytics process.

Why: every step, ADIOS2's SST reader receives the step's data into freshly
allocated buffers (megabytes) and frees them at ``EndStep``.  With glibc's
defaults such buffers are served by ``mmap`` (or the heap is trimmed back to
the OS after each free), so every step pays page faults and zeroing for its
whole payload again: at 1024² float64 this halved the ingest rate (about 100
vs 220 steps/s, docs/performance.md).  Keeping blocks up to 512 MiB in the
heap and not trimming it makes those buffers reused memory.  The cost is that freed
memory stays with the process (bounded by its peak), which is what a
long-running service wants anyway.

Only the analytics process is tuned; a user who sets ``MALLOC_MMAP_THRESHOLD_``
or ``MALLOC_TRIM_THRESHOLD_`` keeps their choice, and non-glibc systems are
left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

#: mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Blocks below this stay in the heap.  Older glibc refuses more than 32 MiB
#: (HEAP_MAX_SIZE / 2 on 64-bit): then that is used.
MMAP_THRESHOLD_BYTES = 512 * 1024 * 1024
MMAP_THRESHOLD_FALLBACK_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024

USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_for_streaming() -> bool:
    """Keep large per-step buffers in the heap; True when the settings were applied."""
    if any(name in os.environ for name in USER_SETTINGS):
        log.debug("allocator: the environment sets malloc tunables; left as they are")
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.debug("allocator: no glibc mallopt here; left as it is")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    threshold = MMAP_THRESHOLD_BYTES
    if not mallopt(M_MMAP_THRESHOLD, threshold):
        threshold = MMAP_THRESHOLD_FALLBACK_BYTES
        if not mallopt(M_MMAP_THRESHOLD, threshold):
            log.debug("allocator: mallopt refused an mmap threshold; left as it is")
            return False
    ok = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    log.debug("allocator: mmap threshold %d MiB, trim threshold %d MiB: %s", threshold >> 20,
              TRIM_THRESHOLD_BYTES >> 20, "applied" if ok else "trim threshold refused")
    return ok
