"""BLAS from compiled CPU kernels: a raw-pointer GEMM and the switch that makes it single-threaded.

Shared by ``conv.py`` and ``recurrent.py``. Parallelism is one kind at a time
(ANCHORS.md: mixing prange with threaded BLAS thrashes 2 cores): a prange
driver whose workers each call :func:`gemm` runs under :func:`run_parallel`,
which sets SciPy's OpenBLAS (what Numba's ``numba_xxgemm`` calls) to one thread
for the duration. BLAS is reached through Numba's own ``numba_xxgemm`` helper,
resolved by symbol name, so ``cache=True`` keeps working (no function pointer
is baked into the compiled code).
"""
from __future__ import annotations

import threading

import numba
import numpy as np
from numba import types
from numba.extending import overload
from numba.np.linalg import ensure_blas


def _xxgemm_signature(dtype):
    ptr = types.CPointer(dtype)
    return types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
                      ptr, ptr, types.intp, ptr, types.intp, ptr, ptr, types.intp)


_XXGEMM = {
    types.float32: (ord("s"), types.ExternalFunction("numba_xxgemm", _xxgemm_signature(types.float32))),
    types.float64: (ord("d"), types.ExternalFunction("numba_xxgemm", _xxgemm_signature(types.float64))),
}
N = ord("n")
T = ord("t")


def gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """Row-major ``C(m, n) = op(A) @ op(B) + beta*C``; a, b, c are 1-D views starting at the operands."""


@overload(gemm)
def _gemm_impl(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    kind, xxgemm = _XXGEMM[a.dtype]

    def impl(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
        one = np.ones(1, a.dtype)
        beta_slot = np.full(1, beta, a.dtype)
        # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a
        # row-major matrix read column-major is its transpose: swap the operands.
        xxgemm(kind, trans_b, trans_a, n, m, k, one.ctypes, b.ctypes, ldb, a.ctypes, lda,
               beta_slot.ctypes, c.ctypes, ldc)

    return impl


class BlasThreads:
    """Set the thread count of the OpenBLAS behind scipy.linalg.cython_blas (what numba_xxgemm calls).

    The parallel drivers call BLAS from every prange worker; with OpenBLAS
    itself multi-threaded that would run 2x2 threads on 2 cores. Found by
    symbol in SciPy's bundled OpenBLAS; when it isn't there (another BLAS),
    the serial drivers with BLAS's own threading are used instead.
    """

    def __init__(self):
        # SciPy's BLAS is imported here, on the first GEMM-path call, not at
        # import time: the direct kernel never needs it (0.4 s of startup).
        ensure_blas()
        self.get = self.set = None
        import ctypes
        import glob
        import os

        import scipy

        libs = os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs")
        for path in sorted(glob.glob(os.path.join(libs, "*openblas*"))):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix in ("scipy_openblas", "openblas"):
                getter = getattr(lib, prefix + "_get_num_threads", None)
                setter = getattr(lib, prefix + "_set_num_threads", None)
                if getter is not None and setter is not None:
                    getter.restype, setter.argtypes = ctypes.c_int, [ctypes.c_int]
                    self.get, self.set = getter, setter
                    return

    @property
    def available(self):
        return self.set is not None


_BLAS_THREADS = None


def blas_threads():
    global _BLAS_THREADS
    if _BLAS_THREADS is None:
        _BLAS_THREADS = BlasThreads()
    return _BLAS_THREADS


# The BLAS thread count is process-global: concurrent callers take turns, so
# one caller's restore can't leave BLAS single-threaded for good or resize its
# pool while another caller's GEMMs run. (The drivers use every core anyway.)
_BLAS_THREADS_LOCK = threading.Lock()


def run_parallel(driver, *args):
    """Run a prange driver with BLAS single-threaded inside it (one kind of parallelism at a time)."""
    blas = blas_threads()
    with _BLAS_THREADS_LOCK:
        before = blas.get()
        blas.set(1)
        try:
            driver(*args)
        finally:
            blas.set(before)


def parallel_workers() -> int:
    """prange workers a BLAS-calling driver may use: the thread count, or 1 when BLAS can't be made serial."""
    threads = numba.get_num_threads()
    return threads if threads > 1 and blas_threads().available else 1
