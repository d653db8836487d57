"""The C allocator's settings for a process that is one party (or the dealer) of a session.

A party works on a few large arrays again and again: a product of 10^6 elements makes a dozen fresh 8 MB tensors
and frees them.  glibc's malloc by default serves blocks over a threshold (128 KiB at first, raised as blocks are
freed, up to 32 MiB) with their own mmap and gives the heap's free top back to the system past a trim threshold;
so a tensor often lands on fresh pages, and every 4 KiB page costs a page fault on its first write.  On the
virtual machines we measure on a fault costs about 10 us: 2,000 of them for one 8 MB tensor, 20 ms, more than the
product itself.  ``keep_freed_memory`` asks malloc to serve such blocks from its heap and to keep what is freed,
so the next call reuses pages that are already mapped.

The price is memory that is not returned: a party process keeps the heap of its largest step (up to
``KEEP_BYTES`` of free memory at the top of the heap, and blocks larger than ``DIRECT_MAP_BYTES`` still get their
own mapping and are returned at once).  What is kept was in use at some moment, so it stays below the process's
peak, unless blocks that used to get their own mapping now fragment the heap (``benchmarks.scale`` reports each
party's peak).

``run_local``'s party and dealer processes and ``smpc party`` / ``smpc dealer`` call it first thing.  A program
that embeds smpc in its own process (``Session.connect``) may call it too; it changes that whole process's
allocator, so smpc never calls it on a caller's behalf.  Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes

#: mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (glibc's own default caps its moving threshold at 32 MiB).
DIRECT_MAP_BYTES = 256 << 20
#: What older glibc accepts at most for the same setting (half its 64 MiB heap size), tried when it refuses.
_OLD_GLIBC_DIRECT_MAP_BYTES = 32 << 20
#: Free memory at the top of the heap kept for reuse rather than given back.
KEEP_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory for reuse in this process (the module docstring says why and at
    what price); True when both settings took, False where there is no glibc ``mallopt`` (nothing changes
    there) or glibc refused one of them (the other still applies)."""
    try:
        libc = ctypes.CDLL(None)  # the C library this process already uses (no ldconfig, no compiler)
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    gnu_version = getattr(libc, "gnu_get_libc_version", None)
    if mallopt is None or gnu_version is None:  # not glibc: musl's mallopt is a stub, macOS has none
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Both, whatever the first answers.  Older glibc refuses a direct-map threshold above 32 MiB (its manual
    # page's limit); 2.36 here takes 256 MiB.
    direct = bool(mallopt(_M_MMAP_THRESHOLD, DIRECT_MAP_BYTES)) or bool(
        mallopt(_M_MMAP_THRESHOLD, _OLD_GLIBC_DIRECT_MAP_BYTES))
    kept = bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
    return direct and kept
