"""Allocator tuning for the kernels' large temporaries (glibc only).

glibc hands out every allocation above ``M_MMAP_THRESHOLD`` (128 KiB at first)
as a fresh ``mmap`` and returns it to the OS on ``free``; heap memory above
``M_TRIM_THRESHOLD`` is returned as well. A kernel that allocates a few MiB
of scratch and output per call then pays for zero-filled page faults on every
call, inside its parallel region, where the threads faulting at once contend
for the process's memory map. Measured on 2 cores, float32, B32 T50 I128 H256,
each figure the best of 30 calls:

    RNN forward  5.97 ms -> 3.41 ms      RNN forward + backward  16.1 -> 9.2 ms
    LSTM forward 18.9 ms -> 12.7 ms      LSTM forward + backward 56.3 -> 32.4 ms

(PyTorch in the same conditions: unchanged.) So at import fastml raises both
thresholds: blocks up to 32 MiB (glibc's ceiling for the mmap threshold) come
from the heap, and up to 256 MiB of freed heap stays with the process for the
next call instead of going back to the OS. Set ``FASTML_TUNE_MALLOC=0`` to keep
glibc's defaults; ``fastml info`` reports what was done.
"""
from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 256 * 2**20


def tune_malloc() -> str:
    """Raise glibc's mmap and trim thresholds (see the module docstring); returns what was done, in words."""
    if os.environ.get("FASTML_TUNE_MALLOC", "1").strip().lower() in ("0", "false", "no", "off"):
        return "glibc defaults (FASTML_TUNE_MALLOC=0)"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system defaults (not glibc)"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "system defaults (mallopt not found)"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)):
        return "glibc defaults (mallopt refused the thresholds)"
    return (f"glibc mmap threshold {MMAP_THRESHOLD_BYTES >> 20} MiB, trim threshold {TRIM_THRESHOLD_BYTES >> 20} MiB "
            f"(FASTML_TUNE_MALLOC=0 keeps the defaults)")


MALLOC = tune_malloc()
