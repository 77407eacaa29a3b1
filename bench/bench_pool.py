"""Pooling benchmarks: fastml (reference, cpu) against PyTorch NCHW and channels_last.

    pytest bench/bench_pool.py --benchmark-only --benchmark-group-by=group -q

Shapes from shared/ANCHORS.md (N32 C64 32x32, float32). The channels_last
peer gets its input converted outside the timed region; it is the fast
PyTorch path the cpu backend is measured against (kernels/config.py).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastml
from fastml.functional import grad as G

from conftest import PEERS, run, torch_or_skip

POOL_PEERS = PEERS + ["torch_channels_last"]
SHAPE = (32, 64, 32, 32)
# (op, kernel, stride, padding)
CASES = [("max", 2, 2, 0), ("avg", 2, 2, 0), ("max", 3, 1, 1)]


def _input(dtype=np.float32):
    return np.random.default_rng(0).standard_normal(SHAPE).astype(dtype)


def _torch_input(torch, x, peer, requires_grad=False):
    t = torch.from_numpy(x)
    if peer == "torch_channels_last":
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(requires_grad)


def _name(op, k, s, p):
    return f"{op}_pool2d {{}} N32 C64 32x32 k{k} s{s}" + (f" p{p}" if p else "")


@pytest.mark.parametrize("peer", POOL_PEERS)
@pytest.mark.parametrize("op,k,s,p", CASES)
def test_pool_forward(benchmark, peer, op, k, s, p):
    x = _input()
    group = _name(op, k, s, p).format("fwd")
    if peer.startswith("torch"):
        torch = torch_or_skip()
        fn = torch.nn.functional.max_pool2d if op == "max" else torch.nn.functional.avg_pool2d
        t = _torch_input(torch, x, peer)
        with torch.no_grad():
            run(benchmark, group, x.dtype, fn, t, k, s, p)
        return
    fn = fastml.F.max_pool2d if op == "max" else fastml.F.avg_pool2d
    out = run(benchmark, group, x.dtype, fn, x, k, s, p, backend=peer)
    assert out.dtype == x.dtype


@pytest.mark.parametrize("peer", POOL_PEERS)
@pytest.mark.parametrize("op,k,s,p", CASES)
def test_pool_forward_backward(benchmark, peer, op, k, s, p):
    if peer == "reference" and op == "max" and s == 1:
        pytest.skip("the reference max-pool backward (np.add.at) is too slow to time")
    x = _input()
    group = _name(op, k, s, p).format("fwd+bwd")
    if peer.startswith("torch"):
        torch = torch_or_skip()
        fn = torch.nn.functional.max_pool2d if op == "max" else torch.nn.functional.avg_pool2d
        t = _torch_input(torch, x, peer, requires_grad=True)

        def step():
            out = fn(t, k, s, p)
            (grad,) = torch.autograd.grad(out, t, torch.ones_like(out))
            return grad

        run(benchmark, group, x.dtype, step)
        return
    out_shape = fastml.F.max_pool2d(x, k, s, p).shape
    g = np.ones(out_shape, dtype=x.dtype)
    if op == "max":
        def step():
            _, indices = fastml.F.max_pool2d(x, k, s, p, return_indices=True, backend=peer)
            return G.max_pool2d_backward(g, x, k, s, p, indices=indices, backend=peer)
    else:
        def step():
            fastml.F.avg_pool2d(x, k, s, p, backend=peer)
            return G.avg_pool2d_backward(g, x, k, s, p, backend=peer)
    grad = run(benchmark, group, x.dtype, step)
    assert grad.shape == x.shape and grad.dtype == x.dtype


@pytest.mark.parametrize("peer", POOL_PEERS)
def test_global_avg_pool(benchmark, peer):
    x = _input()
    group = "adaptive_avg_pool2d fwd N32 C64 32x32 -> 1"
    if peer.startswith("torch"):
        torch = torch_or_skip()
        with torch.no_grad():
            run(benchmark, group, x.dtype, torch.nn.functional.adaptive_avg_pool2d, _torch_input(torch, x, peer), 1)
        return
    out = run(benchmark, group, x.dtype, fastml.F.adaptive_avg_pool2d, x, 1, backend=peer)
    assert out.shape == (32, 64, 1, 1)
