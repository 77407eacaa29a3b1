"""Run the small reference models single-threaded (Numba and BLAS) while they train.

Their arrays are small (batches of 32-64 images of 8x8, or 64 sequences of ~10 steps): splitting each op
over threads gains little, and when the machine is busy the waiting threads cost far more than they save.
Measured on the shared 2-core machine under load (load average ~4):
- 3 LeNet epochs on the digits: 0.6 s with 1 Numba thread, 17.9 s with 2;
- one Seq2Seq epoch on 2,000 dates: 26.8 s with OpenBLAS at 2 threads, 2.5 s at 1, 1.0 s with Numba at 1 too.
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def single_threaded():
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # threadpoolctl comes with scikit-learn; without it BLAS runs as configured
            yield
            return
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(previous)
