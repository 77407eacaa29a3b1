"""Layers and models moved with ``.to("cuda")``: parameters, outputs and gradients on the device, matching cpu."""
from __future__ import annotations

import numpy as np
import pytest
from _compare import assert_close
from _cuda import count_transfers, host, requires_cuda

import fastml
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


OPTIMIZERS = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.5, "dampening": 0.3}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {"lr": 0.01}),
]


@pytest.mark.parametrize("name,hyper", OPTIMIZERS, ids=["sgd-nesterov", "sgd-dampening", "adam-amsgrad", "adamw"])
def test_optimizer_steps_on_the_device_match_the_host(rng, name, hyper):
    cpu, gpu = _pair(lambda: nn.Linear(3, 2, seed=0))
    opt_cpu, opt_gpu = getattr(fastml.optim, name)(cpu, **hyper), getattr(fastml.optim, name)(gpu, **hyper)
    for _ in range(3):
        for key in cpu.grads:
            g = rng.standard_normal(cpu.grads[key].shape).astype(np.float32)
            cpu.grads[key] = g
            gpu.grads[key] = g
        opt_cpu.step()
        opt_gpu.step()
        for key, want in cpu.params.items():
            got = gpu.params[key]
            assert fastml.is_device_array(got), key
            assert_close(host(got), want, rtol=1e-6, atol=1e-6, err_msg=key)
    for key, state in opt_gpu.state.items():
        for buffer, value in state.items():
            if buffer != "step":
                assert fastml.is_device_array(value), (key, buffer)
    saved = opt_gpu.state_dict()  # host copies, equal to the host optimizer's state
    for key, state in opt_cpu.state_dict()["state"].items():
        for buffer, want in state.items():
            got = saved["state"][key][buffer]
            if isinstance(want, np.ndarray):
                assert isinstance(got, np.ndarray)
                assert_close(got, want, rtol=1e-6, atol=1e-6, err_msg=f"{key} {buffer}")


@pytest.mark.parametrize("norm_type", [2.0, 3.0, float("inf")])
def test_clip_grad_norm_on_the_device(rng, norm_type):
    grads = [rng.standard_normal(shape).astype(np.float32) for shape in [(37,), (3, 4)]]
    host_grads = [g.copy() for g in grads]
    device_grads = [fastml.to_device(g) for g in grads]
    want = fastml.optim.clip_grad_norm_(host_grads, 1.0, norm_type)
    got = fastml.optim.clip_grad_norm_(device_grads, 1.0, norm_type)
    assert got == pytest.approx(want, rel=1e-6)
    for a, b in zip(device_grads, host_grads):
        assert_close(host(a), b, rtol=1e-6, atol=1e-6)


def test_training_step_makes_no_host_round_trip(rng, monkeypatch):
    """Forward, backward and the optimizer step of a model on cuda copy nothing between host and device,
    except the range check of device embedding indices (one int back per check)."""
    def build():
        return nn.Sequential(nn.Embedding(6, 3, padding_idx=0, seed=0), nn.Flatten(), nn.Linear(6, 4, seed=1),
                             nn.Tanh(), nn.Linear(4, 2, seed=2))

    cpu, gpu = _pair(build)
    opt_cpu, opt_gpu = fastml.optim.Adam(cpu, lr=0.01), fastml.optim.Adam(gpu, lr=0.01)
    idx = np.array([[1, 0], [5, 1]])
    grad_out = rng.standard_normal((2, 2)).astype(np.float32)
    idx_d, grad_out_d = fastml.to_device(idx), fastml.to_device(grad_out)
    for _ in range(2):
        with count_transfers(monkeypatch) as seen:
            gpu.zero_grad()
            out = gpu(idx_d)
            gpu.backward(grad_out_d)
            opt_gpu.step()
        assert seen == {"to_host": [1, 1], "to_device": []}  # the forward's and backward's index range checks
        cpu.zero_grad()
        want = cpu(idx)
        cpu.backward(grad_out)
        opt_cpu.step()
        assert_close(host(out), want)
    _check_grads(cpu, gpu)
    for key, want in cpu.params.items():
        assert_close(host(gpu.params[key]), want, rtol=1e-6, atol=1e-6, err_msg=key)


def test_recurrent_training_step_makes_no_host_copies(rng, monkeypatch):
    cpu, gpu = _pair(lambda: nn.GRU(2, 2, seed=0))
    opt_cpu, opt_gpu = fastml.optim.SGD(cpu, lr=0.1, momentum=0.9), fastml.optim.SGD(gpu, lr=0.1, momentum=0.9)
    x = rng.standard_normal((2, 1, 2)).astype(np.float32)
    grad_out = rng.standard_normal((2, 1, 2)).astype(np.float32)
    x_d, grad_out_d = fastml.to_device(x), fastml.to_device(grad_out)
    with count_transfers(monkeypatch) as seen:
        out, _ = gpu(x_d)
        gpu.backward(grad_out_d)
        opt_gpu.step()
    assert seen == {"to_host": [], "to_device": []}
    want, _ = cpu(x)
    cpu.backward(grad_out)
    opt_cpu.step()
    assert_close(host(out), want)
    for key, value in cpu.params.items():
        assert_close(host(gpu.params[key]), value, rtol=1e-6, atol=1e-6, err_msg=key)


def test_cnn_training_step_makes_no_host_round_trip(rng, monkeypatch):
    """Conv, ReLU, max pooling (its own indices: no range check), Linear and SGD on cuda: nothing crosses."""
    def build():
        return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, seed=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(8, 3, seed=1))

    cpu, gpu = _pair(build)
    opt_cpu, opt_gpu = fastml.optim.SGD(cpu, lr=0.1), fastml.optim.SGD(gpu, lr=0.1)
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    grad_out = rng.standard_normal((2, 3)).astype(np.float32)
    x_d, grad_out_d = fastml.to_device(x), fastml.to_device(grad_out)
    with count_transfers(monkeypatch) as seen:
        out = gpu(x_d)
        gpu.backward(grad_out_d)
        opt_gpu.step()
    assert seen == {"to_host": [], "to_device": []}
    want = cpu(x)
    cpu.backward(grad_out)
    opt_cpu.step()
    assert_close(host(out), want)
    for key, value in cpu.params.items():
        assert_close(host(gpu.params[key]), value, rtol=1e-6, atol=1e-6, err_msg=key)


def test_fit_trains_a_model_moved_to_cuda(rng):
    cpu, gpu = _pair(lambda: nn.Sequential(nn.Linear(3, 4, seed=0), nn.ReLU(), nn.Linear(4, 2, seed=1)))
    x = rng.standard_normal((6, 3)).astype(np.float32)
    y = rng.integers(0, 2, size=6)
    histories = [fastml.train.fit(model, fastml.losses.CrossEntropyLoss(), fastml.optim.SGD(model, lr=0.1,
                                                                                            momentum=0.9),
                                  (x, y), epochs=1, batch_size=3, clip_grad_norm=1.0, progress=False)
                 for model in (cpu, gpu)]
    assert histories[1]["loss"] == pytest.approx(histories[0]["loss"], rel=1e-5)
    for key, want in cpu.params.items():
        assert fastml.is_device_array(gpu.params[key])
        assert_close(host(gpu.params[key]), want, err_msg=key)
