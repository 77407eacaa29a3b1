"""Shared pieces of the benchmark suites (pytest-benchmark).

Each benchmark is parametrised by ``peer`` (``reference``, ``cpu``, ``torch``;
``cuda`` joins with the CUDA backend) and grouped by op and shape, so one run
prints the peers side by side::

    pytest bench --benchmark-only --benchmark-group-by=group --benchmark-sort=name

Run without ``--benchmark-only`` and with ``--benchmark-disable`` (as CI does),
every benchmark runs once as a plain test.
"""
from __future__ import annotations

import os

import numba
import numpy as np
import pytest

PEERS = ["reference", "cpu", "torch", "cuda"]


@pytest.fixture(autouse=True)
def _cuda_peer_needs_a_gpu(request):
    """The ``cuda`` peer runs only on a real GPU: skipped without one, and under the simulator
    (``NUMBA_ENABLE_CUDASIM=1``), whose timings mean nothing."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("peer") != "cuda":
        return
    import fastml

    ok, reason = fastml.cuda_status()
    if not ok:
        pytest.skip(f"cuda peer: {reason}")
    if "simulator" in reason:
        pytest.skip("cuda peer: the CUDA simulator's timings are meaningless")


def torch_or_skip():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(numba.get_num_threads())
    return torch


def environment(dtype) -> dict:
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not initialised"
    info = {
        "numba": numba.__version__,
        "threading_layer": layer,
        "threads": numba.get_num_threads(),
        "dtype": np.dtype(dtype).name,
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def _synchronize_cuda():
    from numba.core import config as numba_config

    if not numba_config.ENABLE_CUDASIM:
        try:
            from numba import cuda

            if cuda.is_available():
                cuda.synchronize()
        except Exception:  # noqa: BLE001 - no driver: nothing to wait for
            pass


def run(benchmark, group: str, dtype, func, *args, **kwargs):
    """Time ``func(*args, **kwargs)`` in ``group``; one untimed call first compiles/warms up."""
    benchmark.group = group
    func(*args, **kwargs)
    _synchronize_cuda()
    benchmark.extra_info.update(environment(dtype))
    if "cuda" in group or benchmark.name.endswith("cuda]") or "-cuda" in benchmark.name:
        # CUDA launches are asynchronous: time until the device is done.
        def synchronised(*a, **k):
            result = func(*a, **k)
            _synchronize_cuda()
            return result

        return benchmark(synchronised, *args, **kwargs)
    return benchmark(func, *args, **kwargs)
