"""Layers and models moved with ``.to("cuda")``: parameters, outputs and gradients on the device, matching cpu."""
from __future__ import annotations

import numpy as np
import pytest

import fastml
from _compare import assert_close
from _cuda import host, requires_cuda
from fastml import nn
from fastml.functional import grad as G

pytestmark = requires_cuda


def _pair(build):
    """The same model twice: one on cpu, one moved to cuda (same parameters)."""
    cpu = build()
    gpu = build()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    return cpu.to("cpu"), gpu


def _check_grads(cpu, gpu, reduction=1):
    for key, want in cpu.grads.items():
        got = gpu.grads[key]
        assert fastml.is_device_array(got), key
        assert_close(host(got), want, dtype=want.dtype, reduction=reduction, err_msg=key)


def test_cnn_forward_backward_on_the_device(rng):
    def build():
        return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, seed=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(8, 3, seed=1))

    cpu, gpu = _pair(build)
    for value in list(gpu.params.values()) + list(gpu.grads.values()):
        assert fastml.is_device_array(value)
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    grad_out = rng.standard_normal((2, 3)).astype(np.float32)
    want = cpu(x)
    got = gpu(fastml.to_device(x))
    assert fastml.is_device_array(got) and got.dtype == np.float32
    assert_close(host(got), want)
    want_gx = cpu.backward(grad_out)
    got_gx = gpu.backward(fastml.to_device(grad_out))
    assert fastml.is_device_array(got_gx) and got_gx.dtype == np.float32
    assert_close(host(got_gx), want_gx)
    _check_grads(cpu, gpu, reduction=16)
    # a second backward accumulates on the device, zero_grad clears there
    gpu(fastml.to_device(x))
    gpu.backward(fastml.to_device(grad_out))
    assert_close(host(gpu.grads["0.bias"]), 2 * cpu.grads["0.bias"], reduction=16)
    gpu.zero_grad()
    assert not host(gpu.grads["4.weight"]).any()


def test_state_dict_and_moving_back(rng):
    layer = nn.Linear(3, 2, seed=0)
    weight = layer.weight.copy()
    layer.to("cuda")
    assert fastml.is_device_array(layer.weight) and fastml.is_device_array(layer.grads["weight"])
    state = layer.state_dict()
    assert isinstance(state["weight"], np.ndarray)
    assert_close(state["weight"], weight)
    new = rng.standard_normal((2, 3)).astype(np.float32)
    layer.load_state_dict({"weight": new, "bias": np.zeros(2, np.float32)})
    assert fastml.is_device_array(layer.weight)
    assert_close(host(layer.weight), new)
    layer.params["bias"] = np.ones(2)
    assert fastml.is_device_array(layer.bias) and host(layer.bias).dtype == np.float32
    layer.to("cpu")
    assert isinstance(layer.weight, np.ndarray) and isinstance(layer.grads["bias"], np.ndarray)
    assert_close(layer.weight, new)
    assert_close(layer.bias, np.ones(2, np.float32))


def test_lstm_model_stacked_bidirectional_batch_first_lengths(rng):
    def build():
        return nn.LSTM(3, 2, num_layers=2, batch_first=True, bidirectional=True, seed=0)

    cpu, gpu = _pair(build)
    batch, seq = 2, 3
    x = rng.standard_normal((batch, seq, 3)).astype(np.float32)
    h0 = rng.standard_normal((4, batch, 2)).astype(np.float32)
    c0 = rng.standard_normal((4, batch, 2)).astype(np.float32)
    lengths = np.array([3, 2])
    grad_out = rng.standard_normal((batch, seq, 4)).astype(np.float32)
    grad_h = rng.standard_normal((4, batch, 2)).astype(np.float32)
    want, (want_h, want_c) = cpu(x, (h0, c0), lengths=lengths)
    got, (got_h, got_c) = gpu(fastml.to_device(x), (fastml.to_device(h0), c0), lengths=lengths)
    for name, a, b in (("output", got, want), ("h_n", got_h, want_h), ("c_n", got_c, want_c)):
        assert fastml.is_device_array(a), name
        assert_close(host(a), b, err_msg=name)
    want_gx = cpu.backward(grad_out, grad_h)
    got_gx = gpu.backward(fastml.to_device(grad_out), fastml.to_device(grad_h))
    assert fastml.is_device_array(got_gx) and fastml.is_device_array(gpu.grad_h0)
    assert_close(host(got_gx), want_gx)
    assert_close(host(gpu.grad_h0), cpu.grad_h0)
    assert_close(host(gpu.grad_c0), cpu.grad_c0)
    _check_grads(cpu, gpu, reduction=6)


def test_gru_unbatched_reverse_direction(rng):
    cpu, gpu = _pair(lambda: nn.GRU(2, 2, bidirectional=True, bias=False, seed=3))
    x = rng.standard_normal((3, 2)).astype(np.float32)
    want, want_h = cpu(x)
    got, got_h = gpu(x)  # a host input is copied once; the results are device arrays
    assert_close(host(got), want)
    assert_close(host(got_h), want_h)
    grad_out = rng.standard_normal(want.shape).astype(np.float32)
    assert_close(host(gpu.backward(grad_out)), cpu.backward(grad_out))
    _check_grads(cpu, gpu)


def test_device_max_pool_indices_are_range_checked(rng):
    x = fastml.to_device(rng.standard_normal((1, 1, 4, 4)).astype(np.float32))
    out, idx = fastml.F.max_pool2d(x, 2, return_indices=True, backend="cuda")
    grad = G.max_pool2d_backward(fastml.to_device(np.ones((1, 1, 2, 2), np.float32)), x, 2, indices=idx,
                                 backend="cuda")
    assert fastml.is_device_array(grad)
    bad = fastml.to_device(np.array([[[[0, 1], [16, 3]]]], dtype=np.int64))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: `indices` must lie in \[0, 16\).*1 entries"):
        G.max_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), x, 2, indices=bad, backend="cuda")


def test_optimizer_refuses_device_parameters():
    layer = nn.Linear(2, 2, seed=0).to("cuda")
    with pytest.raises(TypeError, match=r"SGD.step: parameter 'weight' is a CUDA device array"):
        fastml.optim.SGD(layer, lr=0.1).step()
