"""Keep BLAS single-threaded while the small reference models train.

Their matrices are small (batches of 32-64): a multi-threaded BLAS gains nothing there, and on a busy
machine its spinning threads fight Numba's for the cores. Measured on the 2-core CI machine under load:
one Seq2Seq epoch on 2,000 dates took 26.8 s with OpenBLAS at 2 threads and 2.5 s at 1 thread.
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn; without it, run as configured
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
