"""What the CUDA test modules share: availability, the skip marker, simulator-sized launches.

The CUDA suite runs on a real GPU or under the simulator
(``NUMBA_ENABLE_CUDASIM=1``); with neither it is skipped. Under the
simulator every CUDA thread is a Python thread, so the launch configuration
is shrunk (which also drives the multi-tile / multi-block code paths on the
tiny test shapes); on a GPU the configured values are used unchanged.
"""
from __future__ import annotations

import contextlib

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
    config.CUDA_RECURRENT_THREADS = 4  # fewer threads than gate rows: every thread takes several


def host(array):
    """A kernel result on the host (the tests compare there; kernels never return host arrays)."""
    assert fastml.is_device_array(array), f"expected a device array, got {type(array).__name__}"
    return fastml.to_host(array)


def random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


DTYPES = [np.float32, np.float64]


@contextlib.contextmanager
def count_transfers(monkeypatch):
    """Record every host <-> device copy made inside: ``{"to_host": [sizes], "to_device": [sizes]}``.

    Device -> host copies go through the device array's ``copy_to_host``; host -> device ones through
    ``numba.cuda.to_device`` or a device array's ``copy_to_device``.
    """
    from numba import cuda

    seen = {"to_host": [], "to_device": []}
    array_type = type(fastml.to_device(np.zeros(1, np.float32)))
    to_host, copy_in, to_device = array_type.copy_to_host, array_type.copy_to_device, cuda.to_device

    def counted_to_host(self, *args, **kwargs):
        seen["to_host"].append(int(self.size))
        return to_host(self, *args, **kwargs)

    def counted_copy_in(self, array, *args, **kwargs):
        seen["to_device"].append(int(np.size(array)))
        return copy_in(self, array, *args, **kwargs)

    def counted_to_device(array, *args, **kwargs):
        seen["to_device"].append(int(np.size(array)))
        return to_device(array, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(array_type, "copy_to_host", counted_to_host)
        patch.setattr(array_type, "copy_to_device", counted_copy_in)
        patch.setattr(cuda, "to_device", counted_to_device)
        yield seen
