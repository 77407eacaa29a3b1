"""The cuda backend through fastml.functional: device arrays in and out, host inputs copied, validation on the device."""
from __future__ import annotations

import numpy as np
import pytest
from _compare import assert_close
from _cuda import AVAILABLE, host, random, requires_cuda

import fastml
from fastml.functional import grad

F = fastml.F


def test_import_and_status_without_cuda():
    ok, reason = fastml.cuda_status()
    assert ok == AVAILABLE and reason
    assert not fastml.is_device_array(np.zeros(3))


@requires_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pipeline_stays_on_the_device(rng, dtype):
    x, w = random(rng, (2, 2, 6, 6), dtype), random(rng, (3, 2, 3, 3), dtype)
    lw = random(rng, (4, 27), dtype)
    xd = fastml.to_device(x)
    assert fastml.to_device(xd) is xd  # device arrays are never copied
    conv = F.conv2d(xd, w, padding=1, backend="cuda")
    act = F.relu(conv, backend="cuda")
    pooled, idx = F.max_pool2d(act, 2, return_indices=True, backend="cuda")
    flat = pooled.reshape(2, 27)
    out = F.softmax(F.linear(flat, lw, backend="cuda"), dim=0, backend="cuda")
    for array in (conv, act, pooled, idx, out):
        assert fastml.is_device_array(array)
    with fastml.backend("cpu"):
        ref_conv = F.conv2d(x, w, padding=1)
        ref_pooled = F.max_pool2d(F.relu(ref_conv), 2)
        ref_out = F.softmax(F.linear(ref_pooled.reshape(2, 27), lw), dim=0)
    assert_close(host(out), ref_out, dtype=dtype)
    g = grad.max_pool2d_backward(fastml.to_device(np.ones(pooled.shape, dtype)), act, 2, indices=idx, backend="cuda")
    g = grad.relu_backward(g, conv, backend="cuda")
    grads = grad.conv2d_backward(g, xd, w, padding=1, backend="cuda")
    ref_g = grad.relu_backward(grad.max_pool2d_backward(np.ones(pooled.shape, dtype), F.relu(ref_conv), 2), ref_conv)
    for got, want in zip(grads, grad.conv2d_backward(ref_g, x, w, padding=1)):
        assert_close(host(got), want, dtype=dtype, reduction=72)


@requires_cuda
def test_host_inputs_are_copied_and_outputs_are_device_arrays(rng):
    x = random(rng, (3, 4), np.float32)
    y = F.tanh(x, backend="cuda")
    assert fastml.is_device_array(y) and y.shape == (3, 4)
    assert_close(fastml.to_host(y), np.tanh(x))
    assert isinstance(fastml.to_host(x), np.ndarray)


@requires_cuda
def test_validation_reads_dtype_and_shape_on_the_device():
    bad = fastml.to_device(np.ones((1, 1, 4, 4), dtype=np.int32))
    with pytest.raises(TypeError, match=r"conv2d: `input` must have dtype float32 or float64, got int32"):
        F.conv2d(bad, np.ones((1, 1, 2, 2), np.float32), backend="cuda")
    x = fastml.to_device(np.ones((1, 2, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"conv2d: `in_channels` of input \(=2\)"):
        F.conv2d(x, np.ones((1, 3, 2, 2), np.float32), backend="cuda")
    with pytest.raises(ValueError, match=r"max_pool2d: `input` must be 3-D or 4-D"):
        F.max_pool2d(fastml.to_device(np.ones((4, 4), np.float32)), 2, backend="cuda")


@requires_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_gather_and_scatter_add(rng, dtype):
    weight = random(rng, (5, 3), dtype)
    idx = np.array([[1, 4, 1], [0, 1, 3]])  # row 1 three times: the atomic adds must all land
    grad_out = random(rng, (2, 3, 3), dtype)
    for padding_idx in (None, 1):
        want = F.embedding(idx, weight, padding_idx, backend="reference")
        got = F.embedding(idx, fastml.to_device(weight), padding_idx, backend="cuda")
        assert fastml.is_device_array(got) and got.shape == (2, 3, 3)
        assert_close(host(got), want, dtype=dtype)
        want_gw = grad.embedding_backward(grad_out, idx, weight, padding_idx, backend="reference")
        got_gw = grad.embedding_backward(fastml.to_device(grad_out), fastml.to_device(idx.astype(np.int32)),
                                         weight, padding_idx, backend="cuda")
        assert fastml.is_device_array(got_gw)
        assert_close(host(got_gw), want_gw, dtype=dtype)
    assert not host(got_gw)[1].any()  # the padding row gets no gradient


@requires_cuda
def test_embedding_device_indices_are_checked_before_the_kernel():
    weight = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match=r"embedding: indices in `input` must lie in \[0, 5\), got values in \[0, 5\]"):
        F.embedding(fastml.to_device(np.array([0, 5])), weight, backend="cuda")
    with pytest.raises(TypeError, match=r"embedding: `input` must be an integer array of indices, got dtype float32"):
        F.embedding(fastml.to_device(np.array([0.0], np.float32)), weight, backend="cuda")
    with pytest.raises(ValueError, match=r"embedding_backward: `grad_output` must have shape \(2, 2\)"):
        grad.embedding_backward(np.zeros((2, 3), np.float32), np.array([0, 1]), weight, backend="cuda")
