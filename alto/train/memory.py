"""Keep freed memory in the process, so that a CPU step reuses pages instead of faulting them in again.

glibc hands every allocation above its mmap threshold (128 KiB, raised on the fly up to 32 MiB)
to the kernel on free, and trims the top of its heap once more than a little of it is free. A
CPU training step frees and re-allocates its activations every step (hundreds of MB at a large
batch), so each step faulted every page of them in again: on Fashion-MNIST at batch 8192 the
run spent more time in the kernel than computing.

keep_freed_memory() tells glibc, with mallopt(3) at run time, to serve large allocations from the
heap (M_MMAP_MAX = 0), never to trim it (M_TRIM_THRESHOLD = -1), and to grow it 1 GiB at a
time (M_TOP_PAD). mallopt is used instead of the MALLOC_*_ environment variables because glibc
reads those only when a process starts, and M_MMAP_MAX instead of a raised M_MMAP_THRESHOLD
because mallopt documents that threshold's ceiling as 32 MiB. Every engine process calls it
first (`python -m alto.train`, `alto run`, flatness jobs, the fork server); freed memory then
stays with the process until it exits.
"""
from __future__ import annotations

import ctypes
import os

OFF_ENV = "ALTO_KEEP_FREED_MEMORY"  # "0": leave glibc's defaults (to measure the old behaviour)

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc's <malloc.h>
SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1), (M_TOP_PAD, 1 << 30))


def keep_freed_memory() -> bool:
    """Apply SETTINGS to glibc's allocator in this process; True if they took effect.

    False, changing nothing, where the C library is not glibc or OFF_ENV is "0".
    """
    if os.environ.get(OFF_ENV) == "0" or not _is_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)


def _is_glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):  # no confstr, or a C library that lacks the name
        return False
