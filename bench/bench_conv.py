"""conv2d benchmarks: forward, and forward + backward (input, weight and bias gradients).

Shapes a-e are the ones in shared/ANCHORS.md. Compare the peers with::

    pytest bench/bench_conv.py --benchmark-only --benchmark-group-by=group -q

The reference backend is plain NumPy and slow on the big shapes; that is its job.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import PEERS, run, torch_or_skip

from fastml.functional import conv2d
from fastml.functional.grad import conv2d_backward

# name: (input shape, weight shape, stride, padding)
SHAPES = {
    "a": ((64, 1, 28, 28), (32, 1, 5, 5), 1, 0),
    "b": ((32, 3, 32, 32), (64, 3, 3, 3), 1, 1),
    "c": ((32, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    "d": ((32, 64, 32, 32), (128, 64, 3, 3), 2, 1),
    "e": ((1, 64, 56, 56), (64, 64, 3, 3), 1, 1),
}
BACKWARD_SHAPES = ["a", "b", "c"]


def _label(name):
    (n, c, h, w), (k, _, r, s), stride, padding = SHAPES[name]
    extra = "".join([f" stride {stride}" if stride != 1 else "", f" pad {padding}" if padding else ""])
    return f"{name} N{n} C{c} {h}x{w} K{k} {r}x{s}{extra}"


def _data(name, dtype=np.float32):
    x_shape, w_shape, _, _ = SHAPES[name]
    rng = np.random.default_rng(0)
    return (rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype),
            rng.standard_normal(w_shape[0]).astype(dtype))


def _fastml_forward(backend, x, weight, bias, stride, padding):
    return conv2d(x, weight, bias, stride=stride, padding=padding, backend=backend)


def _fastml_forward_backward(backend, x, weight, bias, stride, padding, grad):
    out = conv2d(x, weight, bias, stride=stride, padding=padding, backend=backend)
    return out, conv2d_backward(grad, x, weight, stride, padding, backend=backend)


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("name", list(SHAPES))
def test_conv2d_forward(benchmark, peer, name):
    x, weight, bias = _data(name)
    _, _, stride, padding = SHAPES[name]
    group = f"conv2d fwd {_label(name)}"
    if peer == "torch":
        torch = torch_or_skip()
        tx, tw, tb = (torch.from_numpy(a) for a in (x, weight, bias))

        def forward():
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding)

        run(benchmark, group, x.dtype, forward)
        return
    result = run(benchmark, group, x.dtype, _fastml_forward, peer, x, weight, bias, stride, padding)
    assert result.dtype == x.dtype


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("name", BACKWARD_SHAPES)
def test_conv2d_forward_backward(benchmark, peer, name):
    x, weight, bias = _data(name)
    _, _, stride, padding = SHAPES[name]
    group = f"conv2d fwd+bwd {_label(name)}"
    grad = np.ones((x.shape[0], weight.shape[0]) + _out_size(name), dtype=x.dtype)
    if peer == "torch":
        torch = torch_or_skip()
        tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, weight, bias))
        tgrad = torch.from_numpy(grad)

        def forward_backward():
            tx.grad = tw.grad = tb.grad = None
            out = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding)
            out.backward(tgrad)
            return out

        run(benchmark, group, x.dtype, forward_backward)
        return
    _, (grad_x, grad_w, grad_b) = run(benchmark, group, x.dtype, _fastml_forward_backward,
                                      peer, x, weight, bias, stride, padding, grad)
    assert grad_x.shape == x.shape and grad_w.shape == weight.shape and grad_b.shape == bias.shape


def _out_size(name):
    (_, _, h, w), (_, _, r, s), stride, padding = SHAPES[name]
    return ((h + 2 * padding - r) // stride + 1, (w + 2 * padding - s) // stride + 1)
