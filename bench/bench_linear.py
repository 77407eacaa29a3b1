"""Fully connected layer benchmarks: fastml (reference, cpu) against PyTorch.

    pytest bench/bench_linear.py --benchmark-only --benchmark-group-by=group -q

(256, 1024) -> 1024, float32; the cpu backend is one BLAS GEMM (kernels/cpu/linear.py).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastml
from fastml.functional import grad as G

from conftest import PEERS, run, torch_or_skip

BATCH, IN, OUT = 256, 1024, 1024
GROUP = f"linear {{}} ({BATCH}, {IN}) -> {OUT}"


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, IN)).astype(np.float32)
    weight = (rng.standard_normal((OUT, IN)) / np.sqrt(IN)).astype(np.float32)
    bias = rng.standard_normal(OUT).astype(np.float32)
    return x, weight, bias


@pytest.mark.parametrize("peer", PEERS)
def test_linear_forward(benchmark, peer):
    x, weight, bias = _data()
    group = GROUP.format("fwd")
    if peer == "torch":
        torch = torch_or_skip()
        with torch.no_grad():
            run(benchmark, group, x.dtype, torch.nn.functional.linear,
                torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias))
        return
    out = run(benchmark, group, x.dtype, fastml.F.linear, x, weight, bias, backend=peer)
    assert out.shape == (BATCH, OUT) and out.dtype == x.dtype


@pytest.mark.parametrize("peer", PEERS)
def test_linear_forward_backward(benchmark, peer):
    x, weight, bias = _data()
    g = np.ones((BATCH, OUT), np.float32)
    group = GROUP.format("fwd+bwd")
    if peer == "torch":
        torch = torch_or_skip()
        tx, tw, tb = (torch.from_numpy(a).requires_grad_(True) for a in (x, weight, bias))
        tg = torch.from_numpy(g)

        def step():
            return torch.autograd.grad(torch.nn.functional.linear(tx, tw, tb), (tx, tw, tb), tg)

        run(benchmark, group, x.dtype, step)
        return

    def step():
        fastml.F.linear(x, weight, bias, backend=peer)
        return G.linear_backward(g, x, weight, backend=peer)

    grad_x, grad_w, grad_b = run(benchmark, group, x.dtype, step)
    assert grad_x.shape == x.shape and grad_w.shape == weight.shape and grad_b.shape == (OUT,)
