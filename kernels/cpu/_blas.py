"""BLAS from compiled CPU kernels: a raw-pointer GEMM and the switch that makes it single-threaded.

Shared by ``conv.py`` and ``recurrent.py``. Parallelism is one kind at a time
(ANCHORS.md: mixing prange with threaded BLAS thrashes 2 cores): a prange
driver whose workers each call :func:`gemm` runs under :func:`run_parallel`,
which sets the OpenBLAS behind :func:`gemm` to one thread for the duration.

Which OpenBLAS: NumPy's wheels bundle a newer one (``scipy_openblas64_``,
ILP64) than SciPy's (what Numba's own ``numba_xxgemm`` helper calls). In the
kernels' shapes NumPy's ran 81-85 GFLOP/s on one core against 63-69 for
SciPy's (64x576x2048 sgemm; conv c forward 27.2 -> 22.6 ms at 2 threads), so
:func:`gemm` calls ``scipy_sgemm_64_``/``scipy_dgemm_64_`` from NumPy's
library, loaded into the process's symbol table and resolved by name, so
``cache=True`` keeps working (no function pointer is baked into the compiled
code). Without that library (another NumPy build) it falls back to
``numba_xxgemm`` and SciPy's OpenBLAS.
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading

import numba
import numpy as np
from numba import types
from numba.extending import overload
from numba.np.linalg import ensure_blas


def _bundled_openblas(package, pattern):
    """(path, library) of each OpenBLAS a wheel bundles in ``<site-packages>/<package>.libs``, that loads."""
    libs = os.path.join(os.path.dirname(os.path.dirname(package.__file__)), package.__name__ + ".libs")
    for path in sorted(glob.glob(os.path.join(libs, pattern))):
        try:
            yield path, ctypes.CDLL(path)
        except OSError:
            continue


def _numpy_openblas():
    """Path of NumPy's bundled ILP64 OpenBLAS with the symbols :func:`gemm` needs, or None."""
    for path, lib in _bundled_openblas(np, "*openblas64*"):
        if all(hasattr(lib, name) for name in ("scipy_sgemm_64_", "scipy_dgemm_64_",
                                                "scipy_openblas_set_num_threads64_",
                                                "scipy_openblas_get_num_threads64_")):
            return path
    return None


NUMPY_OPENBLAS = _numpy_openblas()
if NUMPY_OPENBLAS is not None:
    import llvmlite.binding

    llvmlite.binding.load_library_permanently(NUMPY_OPENBLAS)


def _fortran_gemm(name, dtype):
    i64, ptr, char = types.CPointer(types.int64), types.CPointer(dtype), types.CPointer(types.uint8)
    return types.ExternalFunction(name, types.void(char, char, i64, i64, i64, ptr, ptr, i64, ptr, i64, ptr, ptr, i64))


def _xxgemm_signature(dtype):
    ptr = types.CPointer(dtype)
    return types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
                      ptr, ptr, types.intp, ptr, types.intp, ptr, ptr, types.intp)


_FORTRAN_GEMM = {
    types.float32: _fortran_gemm("scipy_sgemm_64_", types.float32),
    types.float64: _fortran_gemm("scipy_dgemm_64_", types.float64),
}
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
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a
    # row-major matrix read column-major is its transpose: swap the operands.
    if NUMPY_OPENBLAS is not None:
        fortran_gemm = _FORTRAN_GEMM[a.dtype]

        def impl(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
            flags = np.empty(2, np.uint8)  # Fortran passes everything by reference
            flags[0], flags[1] = trans_b, trans_a
            sizes = np.empty(6, np.int64)
            sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5] = n, m, k, ldb, lda, ldc
            scalars = np.empty(2, a.dtype)
            scalars[0], scalars[1] = 1, beta
            fortran_gemm(flags[0:].ctypes, flags[1:].ctypes, sizes[0:].ctypes, sizes[1:].ctypes, sizes[2:].ctypes,
                         scalars[0:].ctypes, b.ctypes, sizes[3:].ctypes, a.ctypes, sizes[4:].ctypes,
                         scalars[1:].ctypes, c.ctypes, sizes[5:].ctypes)

        return impl
    kind, xxgemm = _XXGEMM[a.dtype]

    def impl(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
        one = np.ones(1, a.dtype)
        beta_slot = np.full(1, beta, a.dtype)
        xxgemm(kind, trans_b, trans_a, n, m, k, one.ctypes, b.ctypes, ldb, a.ctypes, lda,
               beta_slot.ctypes, c.ctypes, ldc)

    return impl


class BlasThreads:
    """Get and set the thread count of the OpenBLAS behind :func:`gemm`.

    The parallel drivers call BLAS from every prange worker; with OpenBLAS
    itself multi-threaded that would run 2x2 threads on 2 cores. Found by
    symbol in NumPy's (or, on the fallback, SciPy's) bundled OpenBLAS; when it
    isn't there (another BLAS), the serial drivers with BLAS's own threading
    are used instead.
    """

    def __init__(self):
        self.get = self.set = None
        if NUMPY_OPENBLAS is not None:
            self._bind(ctypes.CDLL(NUMPY_OPENBLAS), "scipy_openblas_get_num_threads64_",
                       "scipy_openblas_set_num_threads64_")
            return
        # SciPy's BLAS is imported here, on the first GEMM-path call, not at
        # import time: the direct conv kernel never needs it (0.4 s of startup).
        ensure_blas()
        import scipy

        for _, lib in _bundled_openblas(scipy, "*openblas*"):
            for prefix in ("scipy_openblas", "openblas"):
                if self._bind(lib, prefix + "_get_num_threads", prefix + "_set_num_threads"):
                    return

    def _bind(self, lib, get_name, set_name):
        getter, setter = getattr(lib, get_name, None), getattr(lib, set_name, None)
        if getter is None or setter is None:
            return False
        getter.restype, setter.argtypes = ctypes.c_int, [ctypes.c_int]
        self.get, self.set = getter, setter
        return True

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
