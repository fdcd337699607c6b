"""Keep freed memory in the process heap during a short command (glibc only).

A DVH samples millions of sub-points through whole-array numpy passes, each allocating
arrays of tens of MB.  glibc serves allocations above its mmap threshold (128 kB, growing
to 32 MB at most) with fresh ``mmap`` pages and returns them with ``munmap`` when freed,
so every pass page-faults its output anew: a fifth of ``brachycryo dvh``'s CPU time was
the kernel zeroing pages (0.55 s system time of 3.3 s).  :func:`keep_freed_memory` raises
the mmap and trim thresholds (``mallopt(3)``: ``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``,
``M_TOP_PAD``; the GNU C Library manual, "Malloc Tunable Parameters"), so freed blocks are
reused from the heap.  Peak memory is unchanged (the same arrays are alive at once);
results are unchanged (only where the bytes come from).  Elsewhere than glibc, or if
``mallopt`` refuses, it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os

#: mallopt parameter numbers (glibc <malloc.h>).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

#: Allocations below this come from the heap (and are reused there once freed).
MMAP_THRESHOLD_BYTES = 1 << 30
#: Free memory at the top of the heap kept, not returned to the system.
TRIM_THRESHOLD_BYTES = 1 << 30
#: Extra heap obtained per growth of the heap.
TOP_PAD_BYTES = 64 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to serve and keep large blocks in the heap; True when it accepted."""
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
        ok &= libc.mallopt(_M_TOP_PAD, TOP_PAD_BYTES) == 1
    except (OSError, AttributeError, ValueError):
        return False
    return bool(ok)


__all__ = ["keep_freed_memory"]
