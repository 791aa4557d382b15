"""Keeping freed host memory in the process, so that big NumPy arrays do not page-fault every update.

A training update allocates and frees the same large arrays every time (at the main job's size, the
(T, B, 4H) gate buffers of 2 MB, the outputs, the logits and their gradients: about 7 MB). glibc's
allocator serves arrays above its threshold (128 KB at first, raised as big blocks are freed) from
fresh pages and gives memory at the top of its heap back to the system once more than twice that
threshold is free. So an update's big arrays can land on pages the kernel must map and zero again:
run as ``benchmarks/bench_charlm.py``'s update in a process of its own, the main job's LSTM took
about 1,500-1,750 page faults and 2-5 ms of system time per 40 ms update, and about 10 % less time
per update without them (the hand-written NumPy BPTT likewise; PyTorch's CPU LSTM takes about 70).
How often the heap is trimmed depends on the whole process's allocations: in the main job itself the
switch saved much less (see docs/performance.md, "Page faults").

:func:`retain_freed_memory` is the application-level switch, like ``OPENBLAS_NUM_THREADS=1``: it
raises the two thresholds once, so freed blocks stay in the process and are reused. It is not called
on import (it changes the whole process's allocator, which a library should not do behind the
user's back); the main job (``examples/char_lstm.py``) calls it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2): arrays above it
# still get their own mapping, returned to the system when freed.
MMAP_THRESHOLD = 32 * 1024 * 1024


def retain_freed_memory(trim_threshold: int = 512 * 1024 * 1024) -> bool:
    """Make the C allocator keep freed memory for reuse instead of returning it to the system.

    Sets glibc's ``M_MMAP_THRESHOLD`` to 32 MB (blocks up to that size come from the heap, where a
    freed block is reused) and ``M_TRIM_THRESHOLD`` to ``trim_threshold`` bytes (free memory at the
    top of the heap is given back to the system only beyond that). The process then keeps up to
    about ``trim_threshold`` bytes of freed memory it may need again. Returns True when applied,
    False where the C library has no ``mallopt`` (not Linux, or a C library other than glibc): there
    it does nothing.
    """
    if not isinstance(trim_threshold, int) or isinstance(trim_threshold, bool) or trim_threshold < 0:
        raise ValueError(
            f"retain_freed_memory: trim_threshold must be a non-negative int, got {trim_threshold!r}"
        )
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    limit = min(trim_threshold, 2**31 - 1)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, limit))
