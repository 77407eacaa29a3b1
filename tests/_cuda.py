"""What the CUDA test modules share: availability, the skip marker, simulator-sized launches.

The CUDA suite runs on a real GPU or under the simulator
(``NUMBA_ENABLE_CUDASIM=1``); with neither it is skipped. Under the
simulator every CUDA thread is a Python thread, so the launch configuration
is shrunk (which also drives the multi-tile / multi-block code paths on the
tiny test shapes); on a GPU the configured values are used unchanged.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba.core import config as numba_config

import fastml
from fastml.kernels import config

AVAILABLE, REASON = fastml.cuda_status()
SIMULATOR = bool(numba_config.ENABLE_CUDASIM)

requires_cuda = pytest.mark.skipif(
    not AVAILABLE, reason=f"CUDA backend unavailable ({REASON}); NUMBA_ENABLE_CUDASIM=1 runs it on the simulator")

if SIMULATOR:
    config.CUDA_THREADS_PER_BLOCK = 32
    config.CUDA_REDUCE_THREADS = 8
    config.CUDA_GEMM_TILE = 4
    config.CUDA_CONV_DIRECT_THREADS = 16


def host(array):
    """A kernel result on the host (the tests compare there; kernels never return host arrays)."""
    assert fastml.is_device_array(array), f"expected a device array, got {type(array).__name__}"
    return fastml.to_host(array)


def random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


DTYPES = [np.float32, np.float64]
