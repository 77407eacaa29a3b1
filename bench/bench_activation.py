"""Activation benchmarks: fastml (reference, cpu) against PyTorch.

    pytest bench/bench_activation.py --benchmark-only --benchmark-group-by=group -q

Elementwise ops on the pooling tensor of shared/ANCHORS.md (N32 C64 32x32),
softmax/log_softmax on (4096, 1000) logits, float32.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastml
from fastml.functional import grad as G

from conftest import PEERS, run, torch_or_skip

ELEMENTWISE = ["relu", "sigmoid", "tanh"]
ALONG_DIM = ["softmax", "log_softmax"]
IMAGE = (32, 64, 32, 32)
LOGITS = (4096, 1000)


def _data(shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _torch_op(torch, op):
    return {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "softmax": lambda t: torch.softmax(t, -1), "log_softmax": lambda t: torch.log_softmax(t, -1)}[op]


def _group(op, shape, what):
    return f"{op} {what} " + ("N32 C64 32x32" if len(shape) == 4 else "x".join(map(str, shape)))


def _fastml_backward(op, g, x, y, peer):
    if op == "relu":
        return G.relu_backward(g, x, backend=peer)
    if op in ALONG_DIM:
        return getattr(G, f"{op}_backward")(g, y, -1, backend=peer)
    return getattr(G, f"{op}_backward")(g, y, backend=peer)


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("op", ELEMENTWISE + ALONG_DIM)
def test_activation_forward(benchmark, peer, op):
    shape = IMAGE if op in ELEMENTWISE else LOGITS
    x = _data(shape)
    group = _group(op, shape, "fwd")
    if peer == "torch":
        torch = torch_or_skip()
        with torch.no_grad():
            run(benchmark, group, x.dtype, _torch_op(torch, op), torch.from_numpy(x))
        return
    kwargs = {"dim": -1} if op in ALONG_DIM else {}
    out = run(benchmark, group, x.dtype, getattr(fastml.F, op), x, backend=peer, **kwargs)
    assert out.dtype == x.dtype


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("op", ELEMENTWISE + ALONG_DIM)
def test_activation_forward_backward(benchmark, peer, op):
    shape = IMAGE if op in ELEMENTWISE else LOGITS
    x = _data(shape)
    g = np.ones(shape, np.float32)
    group = _group(op, shape, "fwd+bwd")
    if peer == "torch":
        torch = torch_or_skip()
        t = torch.from_numpy(x).requires_grad_(True)
        fn = _torch_op(torch, op)
        tg = torch.from_numpy(g)

        def step():
            (grad,) = torch.autograd.grad(fn(t), t, tg)
            return grad

        run(benchmark, group, x.dtype, step)
        return
    kwargs = {"dim": -1} if op in ALONG_DIM else {}

    def step():
        y = getattr(fastml.F, op)(x, backend=peer, **kwargs)
        return _fastml_backward(op, g, x, y, peer)

    grad = run(benchmark, group, x.dtype, step)
    assert grad.shape == x.shape and grad.dtype == x.dtype
