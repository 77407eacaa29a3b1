"""CPU backend: Numba-compiled kernels (and BLAS through NumPy where a GEMM is the work)."""
