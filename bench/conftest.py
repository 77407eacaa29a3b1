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

PEERS = ["reference", "cpu", "torch"]


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


def run(benchmark, group: str, dtype, func, *args, **kwargs):
    """Time ``func(*args, **kwargs)`` in ``group``; one untimed call first compiles/warms up."""
    benchmark.group = group
    func(*args, **kwargs)
    benchmark.extra_info.update(environment(dtype))
    return benchmark(func, *args, **kwargs)
