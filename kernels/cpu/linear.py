"""Fully connected layer on the CPU.

The whole op is one GEMM, which BLAS (multi-threaded OpenBLAS through NumPy,
~140 GFLOP/s on the machine of record) does faster than any Numba loop, so the
CPU backend uses the reference formulation as it is.
"""
from ..reference.linear import linear_backward, linear_forward

__all__ = ["linear_forward", "linear_backward"]
