"""CUDA backend (numba.cuda): the same kernel modules and signatures as ``kernels/reference``.

Kernels take and return numba device arrays; ``fastml.functional`` moves host
inputs to the device before calling them. Importing this package does not
touch the driver: kernels compile on first launch.
"""
