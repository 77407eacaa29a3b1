"""The table of bad inputs: each raises the right exception type, with a message that names the
function and the argument, before any kernel runs."""
from __future__ import annotations

import re

import numpy as np
import pytest

import fastml
from fastml import _backend
from fastml.functional import grad

F = fastml.F
f32, f64 = np.float32, np.float64


def x4(n=2, c=3, h=5, w=5, dtype=f32):
    return np.zeros((n, c, h, w), dtype)


def w4(k=4, c=3, r=3, s=3, dtype=f32):
    return np.zeros((k, c, r, s), dtype)


def m2(rows=3, cols=4, dtype=f32):
    return np.zeros((rows, cols), dtype)


RAGGED = [[[[1.0, 2.0], [3.0]]]]

# (id, call, exception type, function name, phrase the message must contain)
CASES = [
    # --- conv2d ---------------------------------------------------------------------------
    ("conv-input-2d", lambda: F.conv2d(m2(), w4()), ValueError, "conv2d", "`input` must be 3-D or 4-D"),
    ("conv-input-5d", lambda: F.conv2d(np.zeros((1, 2, 3, 5, 5), f32), w4()), ValueError, "conv2d", "`input` must be 3-D or 4-D"),
    ("conv-weight-3d", lambda: F.conv2d(x4(), np.zeros((4, 3, 3), f32)), ValueError, "conv2d", "`weight` must be 4-D"),
    ("conv-channel-mismatch", lambda: F.conv2d(x4(c=3), w4(c=2)), ValueError, "conv2d", "`in_channels` of input (=3) must equal weight.shape[1]*groups (=2)"),
    ("conv-groups-in-channels", lambda: F.conv2d(x4(c=3), w4(c=1), groups=2), ValueError, "conv2d", "`groups` (=2) must divide the input's channels (=3)"),
    ("conv-groups-out-channels", lambda: F.conv2d(x4(c=4), w4(k=3, c=2), groups=2), ValueError, "conv2d", "`out_channels` (weight.shape[0]=3) must be divisible by `groups` (=2)"),
    ("conv-groups-zero", lambda: F.conv2d(x4(), w4(), groups=0), ValueError, "conv2d", "`groups` must be >= 1, got 0"),
    ("conv-groups-float", lambda: F.conv2d(x4(), w4(), groups=1.0), TypeError, "conv2d", "`groups` must be an int"),
    ("conv-stride-zero", lambda: F.conv2d(x4(), w4(), stride=0), ValueError, "conv2d", "`stride` must be >= 1, got 0"),
    ("conv-stride-negative", lambda: F.conv2d(x4(), w4(), stride=(1, -1)), ValueError, "conv2d", "`stride` must be >= 1"),
    ("conv-stride-float", lambda: F.conv2d(x4(), w4(), stride=1.5), TypeError, "conv2d", "`stride` must be an int or a pair of ints"),
    ("conv-stride-bool", lambda: F.conv2d(x4(), w4(), stride=True), TypeError, "conv2d", "`stride` must be an int or a pair of ints"),
    ("conv-stride-triple", lambda: F.conv2d(x4(), w4(), stride=(1, 1, 1)), ValueError, "conv2d", "`stride` must be an int or a pair of ints"),
    ("conv-dilation-zero", lambda: F.conv2d(x4(), w4(), dilation=0), ValueError, "conv2d", "`dilation` must be >= 1, got 0"),
    ("conv-dilation-negative", lambda: F.conv2d(x4(), w4(), dilation=(-1, 1)), ValueError, "conv2d", "`dilation` must be >= 1"),
    ("conv-padding-negative", lambda: F.conv2d(x4(), w4(), padding=-1), ValueError, "conv2d", "`padding` must be >= 0"),
    ("conv-padding-pair-negative", lambda: F.conv2d(x4(), w4(), padding=(0, -2)), ValueError, "conv2d", "`padding` must be >= 0"),
    ("conv-padding-word", lambda: F.conv2d(x4(), w4(), padding="full"), ValueError, "conv2d", "`padding` must be an int, a pair, 'valid' or 'same'"),
    ("conv-padding-float", lambda: F.conv2d(x4(), w4(), padding=1.0), TypeError, "conv2d", "`padding` must be an int or a pair of ints"),
    ("conv-kernel-too-big", lambda: F.conv2d(x4(h=2, w=2), w4()), ValueError, "conv2d", "kernel size of `weight` (3, 3) with `dilation` (1, 1) can't be greater than the padded `input` size (2, 2)"),
    ("conv-dilated-kernel-too-big", lambda: F.conv2d(x4(), w4(), dilation=3, padding=(1, 0)), ValueError, "conv2d", "padded `input` size (7, 5)"),
    ("conv-same-stride-2", lambda: F.conv2d(x4(), w4(), stride=2, padding="same"), ValueError, "conv2d", "`padding`='same' requires `stride` 1, got (2, 2)"),
    ("conv-input-int", lambda: F.conv2d(x4().astype(np.int64), w4()), TypeError, "conv2d", "`input` must have dtype float32 or float64, got int64"),
    ("conv-input-bool", lambda: F.conv2d(x4().astype(bool), w4()), TypeError, "conv2d", "`input` must have dtype float32 or float64, got bool"),
    ("conv-input-complex", lambda: F.conv2d(x4().astype(np.complex64), w4()), TypeError, "conv2d", "`input` must have dtype float32 or float64, got complex64"),
    ("conv-input-float16", lambda: F.conv2d(x4(dtype=np.float16), w4()), TypeError, "conv2d", "`input` must have dtype float32 or float64, got float16"),
    ("conv-input-object", lambda: F.conv2d(x4().astype(object), w4()), TypeError, "conv2d", "`input` must have dtype float32 or float64, got object"),
    ("conv-input-none", lambda: F.conv2d(None, w4()), TypeError, "conv2d", "`input` must be an array, got NoneType"),
    ("conv-input-ragged", lambda: F.conv2d(RAGGED, w4(c=1, dtype=f64)), ValueError, "conv2d", "`input` must be a rectangular numeric array"),
    ("conv-weight-int", lambda: F.conv2d(x4(), w4().astype(np.int32)), TypeError, "conv2d", "`weight` must have dtype float32 or float64, got int32"),
    ("conv-weight-dtype-mismatch", lambda: F.conv2d(x4(), w4(dtype=f64)), TypeError, "conv2d", "`weight` dtype (float64) must equal `input` dtype (float32)"),
    ("conv-empty-batch", lambda: F.conv2d(x4(n=0), w4()), ValueError, "conv2d", "`input` must not be empty, got shape (0, 3, 5, 5)"),
    ("conv-empty-weight", lambda: F.conv2d(x4(), w4(k=0)), ValueError, "conv2d", "`weight` must not be empty"),
    ("conv-bias-shape", lambda: F.conv2d(x4(), w4(), np.zeros(3, f32)), ValueError, "conv2d", "`bias` must have shape (4,), got (3,)"),
    ("conv-bias-2d", lambda: F.conv2d(x4(), w4(), np.zeros((4, 1), f32)), ValueError, "conv2d", "`bias` must have shape (4,), got (4, 1)"),
    ("conv-bias-dtype", lambda: F.conv2d(x4(), w4(), np.zeros(4, f64)), TypeError, "conv2d", "`bias` dtype (float64) must equal `input` dtype (float32)"),
    ("conv-bias-int", lambda: F.conv2d(x4(), w4(), np.zeros(4, np.int64)), TypeError, "conv2d", "`bias` must have dtype float32 or float64"),
    ("conv-backend", lambda: F.conv2d(x4(), w4(), backend="gpu"), ValueError, "conv2d", "`backend` must be one of ['reference', 'cpu', 'cuda'], got 'gpu'"),
    ("conv-backend-case", lambda: F.conv2d(x4(), w4(), backend="CPU"), ValueError, "conv2d", "`backend` must be one of"),
    # --- conv2d_backward ------------------------------------------------------------------
    ("conv-bwd-grad-shape", lambda: grad.conv2d_backward(np.zeros((2, 4, 2, 2), f32), x4(), w4()), ValueError, "conv2d_backward", "`grad_output` must have the output's shape (2, 4, 3, 3), got (2, 4, 2, 2)"),
    ("conv-bwd-grad-unbatched", lambda: grad.conv2d_backward(np.zeros((4, 2, 3), f32), x4()[0], w4()), ValueError, "conv2d_backward", "`grad_output` must have the output's shape (4, 3, 3), got (4, 2, 3)"),
    ("conv-bwd-grad-dtype", lambda: grad.conv2d_backward(np.zeros((2, 4, 3, 3), f64), x4(), w4()), TypeError, "conv2d_backward", "`grad_output` dtype (float64) must equal `input` dtype (float32)"),
    ("conv-bwd-grad-int", lambda: grad.conv2d_backward(np.zeros((2, 4, 3, 3), int), x4(), w4()), TypeError, "conv2d_backward", "`grad_output` must have dtype float32 or float64"),
    ("conv-bwd-stride", lambda: grad.conv2d_backward(np.zeros((2, 4, 3, 3), f32), x4(), w4(), stride=0), ValueError, "conv2d_backward", "`stride` must be >= 1"),
    ("conv-bwd-channels", lambda: grad.conv2d_backward(np.zeros((2, 4, 3, 3), f32), x4(), w4(c=2)), ValueError, "conv2d_backward", "`in_channels` of input"),
    ("conv-bwd-backend", lambda: grad.conv2d_backward(np.zeros((2, 4, 3, 3), f32), x4(), w4(), backend="tpu"), ValueError, "conv2d_backward", "`backend` must be one of"),
    # --- max_pool2d -----------------------------------------------------------------------
    ("max-input-2d", lambda: F.max_pool2d(m2(), 2), ValueError, "max_pool2d", "`input` must be 3-D or 4-D"),
    ("max-input-5d", lambda: F.max_pool2d(np.zeros((1, 1, 1, 4, 4), f32), 2), ValueError, "max_pool2d", "`input` must be 3-D or 4-D"),
    ("max-kernel-zero", lambda: F.max_pool2d(x4(), 0), ValueError, "max_pool2d", "`kernel_size` must be >= 1"),
    ("max-kernel-triple", lambda: F.max_pool2d(x4(), (2, 2, 2)), ValueError, "max_pool2d", "`kernel_size` must be an int or a pair of ints"),
    ("max-kernel-none", lambda: F.max_pool2d(x4(), None), TypeError, "max_pool2d", "`kernel_size` must be an int or a pair of ints"),
    ("max-stride-zero", lambda: F.max_pool2d(x4(), 2, stride=0), ValueError, "max_pool2d", "`stride` must be >= 1"),
    ("max-stride-negative", lambda: F.max_pool2d(x4(), 2, stride=(2, -1)), ValueError, "max_pool2d", "`stride` must be >= 1"),
    ("max-dilation-zero", lambda: F.max_pool2d(x4(), 2, dilation=0), ValueError, "max_pool2d", "`dilation` must be >= 1"),
    ("max-padding-negative", lambda: F.max_pool2d(x4(), 2, padding=-1), ValueError, "max_pool2d", "`padding` must be >= 0"),
    ("max-padding-over-half", lambda: F.max_pool2d(x4(), 3, padding=2), ValueError, "max_pool2d", "`padding` (=2) must be at most half of `kernel_size` (=3)"),
    ("max-padding-over-half-dilated", lambda: F.max_pool2d(x4(h=9, w=9), 3, padding=2, dilation=2), ValueError, "max_pool2d", "`padding` (=2) must be at most half of `kernel_size` (=3)"),
    ("max-padding-string", lambda: F.max_pool2d(x4(), 2, padding="same"), TypeError, "max_pool2d", "`padding` must be an int or a pair of ints"),
    ("max-kernel-too-big", lambda: F.max_pool2d(x4(h=3, w=3), 5), ValueError, "max_pool2d", "`kernel_size` (5, 5) (dilation (1, 1)) can't be greater than the padded input size (3, 3)"),
    ("max-dilated-kernel-too-big", lambda: F.max_pool2d(x4(h=4, w=4), 2, dilation=4), ValueError, "max_pool2d", "can't be greater than the padded input size"),
    ("max-window-only-padding", lambda: F.max_pool2d(x4(h=1, w=1), (2, 1), padding=(1, 0), dilation=2), ValueError, "max_pool2d", "pooling window 0 along H covers only padding"),
    ("max-input-int", lambda: F.max_pool2d(x4().astype(np.int32), 2), TypeError, "max_pool2d", "`input` must have dtype float32 or float64, got int32"),
    ("max-input-float16", lambda: F.max_pool2d(x4(dtype=np.float16), 2), TypeError, "max_pool2d", "`input` must have dtype float32 or float64, got float16"),
    ("max-input-ragged", lambda: F.max_pool2d(RAGGED, 1), ValueError, "max_pool2d", "`input` must be a rectangular numeric array"),
    ("max-empty-batch", lambda: F.max_pool2d(x4(n=0), 2), ValueError, "max_pool2d", "`input` must not be empty"),
    ("max-empty-unbatched", lambda: F.max_pool2d(np.zeros((0, 4, 4), f32), 2), ValueError, "max_pool2d", "`input` must not be empty"),
    ("max-backend", lambda: F.max_pool2d(x4(), 2, backend="numba"), ValueError, "max_pool2d", "`backend` must be one of"),
    ("max-bwd-grad-shape", lambda: grad.max_pool2d_backward(np.zeros((2, 3, 3, 3), f32), x4(), 2), ValueError, "max_pool2d_backward", "`grad_output` must have the output's shape (2, 3, 2, 2), got (2, 3, 3, 3)"),
    ("max-bwd-grad-dtype", lambda: grad.max_pool2d_backward(np.zeros((2, 3, 2, 2), f64), x4(), 2), TypeError, "max_pool2d_backward", "`grad_output` dtype (float64) must equal `input` dtype (float32)"),
    ("max-bwd-indices-float", lambda: grad.max_pool2d_backward(np.zeros((2, 3, 2, 2), f32), x4(), 2, indices=np.zeros((2, 3, 2, 2), f32)), TypeError, "max_pool2d_backward", "`indices` must be an integer array, got dtype float32"),
    ("max-bwd-indices-shape", lambda: grad.max_pool2d_backward(np.zeros((2, 3, 2, 2), f32), x4(), 2, indices=np.zeros((2, 3, 2), np.int64)), ValueError, "max_pool2d_backward", "`indices` must have the output's shape (2, 3, 2, 2)"),
    ("max-bwd-indices-range", lambda: grad.max_pool2d_backward(np.zeros((2, 3, 2, 2), f32), x4(), 2, indices=np.full((2, 3, 2, 2), 25)), ValueError, "max_pool2d_backward", "`indices` must lie in [0, 25)"),
    ("max-bwd-indices-negative", lambda: grad.max_pool2d_backward(np.zeros((2, 3, 2, 2), f32), x4(), 2, indices=np.full((2, 3, 2, 2), -1)), ValueError, "max_pool2d_backward", "`indices` must lie in [0, 25)"),
    # --- avg_pool2d -----------------------------------------------------------------------
    ("avg-input-2d", lambda: F.avg_pool2d(m2(), 2), ValueError, "avg_pool2d", "`input` must be 3-D or 4-D"),
    ("avg-stride-zero", lambda: F.avg_pool2d(x4(), 2, stride=0), ValueError, "avg_pool2d", "`stride` must be >= 1"),
    ("avg-padding-negative", lambda: F.avg_pool2d(x4(), 2, padding=(-1, 0)), ValueError, "avg_pool2d", "`padding` must be >= 0"),
    ("avg-padding-over-half", lambda: F.avg_pool2d(x4(), (2, 4), padding=(1, 3)), ValueError, "avg_pool2d", "`padding` (=3) must be at most half of `kernel_size` (=4)"),
    ("avg-kernel-too-big", lambda: F.avg_pool2d(x4(h=2), 3, padding=0), ValueError, "avg_pool2d", "can't be greater than the padded input size (2, 5)"),
    ("avg-divisor-zero", lambda: F.avg_pool2d(x4(), 2, divisor_override=0), ValueError, "avg_pool2d", "`divisor_override` must be >= 1, got 0"),
    ("avg-divisor-float", lambda: F.avg_pool2d(x4(), 2, divisor_override=2.0), TypeError, "avg_pool2d", "`divisor_override` must be an int"),
    ("avg-input-complex", lambda: F.avg_pool2d(x4().astype(np.complex128), 2), TypeError, "avg_pool2d", "`input` must have dtype float32 or float64, got complex128"),
    ("avg-empty-batch", lambda: F.avg_pool2d(x4(n=0), 2), ValueError, "avg_pool2d", "`input` must not be empty"),
    ("avg-backend", lambda: F.avg_pool2d(x4(), 2, backend=""), ValueError, "avg_pool2d", "`backend` must be one of"),
    ("avg-bwd-grad-shape", lambda: grad.avg_pool2d_backward(np.zeros((2, 3, 5, 5), f32), x4(), 2), ValueError, "avg_pool2d_backward", "`grad_output` must have the output's shape (2, 3, 2, 2)"),
    ("avg-bwd-padding", lambda: grad.avg_pool2d_backward(np.zeros((2, 3, 2, 2), f32), x4(), 2, padding=2), ValueError, "avg_pool2d_backward", "`padding` (=2) must be at most half of `kernel_size` (=2)"),
    # --- adaptive pooling -----------------------------------------------------------------
    ("aavg-input-2d", lambda: F.adaptive_avg_pool2d(m2(), 1), ValueError, "adaptive_avg_pool2d", "`input` must be 3-D or 4-D"),
    ("aavg-size-zero", lambda: F.adaptive_avg_pool2d(x4(), 0), ValueError, "adaptive_avg_pool2d", "`output_size` must be >= 1"),
    ("aavg-size-negative-pair", lambda: F.adaptive_avg_pool2d(x4(), (2, -1)), ValueError, "adaptive_avg_pool2d", "`output_size` must be >= 1"),
    ("aavg-size-triple", lambda: F.adaptive_avg_pool2d(x4(), (1, 2, 3)), ValueError, "adaptive_avg_pool2d", "`output_size` must be an int or a pair of ints"),
    ("aavg-size-none", lambda: F.adaptive_avg_pool2d(x4(), None), TypeError, "adaptive_avg_pool2d", "`output_size` must be an int or a pair of ints"),
    ("aavg-size-float", lambda: F.adaptive_avg_pool2d(x4(), 2.5), TypeError, "adaptive_avg_pool2d", "`output_size` must be an int or a pair of ints"),
    ("aavg-input-bool", lambda: F.adaptive_avg_pool2d(x4().astype(bool), 1), TypeError, "adaptive_avg_pool2d", "`input` must have dtype float32 or float64, got bool"),
    ("aavg-empty", lambda: F.adaptive_avg_pool2d(x4(n=0), 1), ValueError, "adaptive_avg_pool2d", "`input` must not be empty"),
    ("aavg-bwd-grad-shape", lambda: grad.adaptive_avg_pool2d_backward(np.zeros((2, 3, 2, 2), f32), x4(), 3), ValueError, "adaptive_avg_pool2d_backward", "`grad_output` must have the output's shape (2, 3, 3, 3)"),
    ("aavg-bwd-grad-dtype", lambda: grad.adaptive_avg_pool2d_backward(np.zeros((2, 3, 2, 2), f64), x4()), TypeError, "adaptive_avg_pool2d_backward", "`grad_output` dtype (float64) must equal `input` dtype (float32)"),
    ("amax-input-5d", lambda: F.adaptive_max_pool2d(np.zeros((1,) * 5, f32), 1), ValueError, "adaptive_max_pool2d", "`input` must be 3-D or 4-D"),
    ("amax-size-zero", lambda: F.adaptive_max_pool2d(x4(), (0, None)), ValueError, "adaptive_max_pool2d", "`output_size` must be >= 1"),
    ("amax-input-object", lambda: F.adaptive_max_pool2d(x4().astype(object), 1), TypeError, "adaptive_max_pool2d", "`input` must have dtype float32 or float64, got object"),
    ("amax-backend", lambda: F.adaptive_max_pool2d(x4(), 1, backend=1), ValueError, "adaptive_max_pool2d", "`backend` must be one of"),
    ("amax-bwd-grad-shape", lambda: grad.adaptive_max_pool2d_backward(np.zeros((2, 3, 1, 1), f32), x4(), 2), ValueError, "adaptive_max_pool2d_backward", "`grad_output` must have the output's shape (2, 3, 2, 2)"),
    ("amax-bwd-indices-range", lambda: grad.adaptive_max_pool2d_backward(np.zeros((2, 3, 1, 1), f32), x4(), 1, indices=np.full((2, 3, 1, 1), 99)), ValueError, "adaptive_max_pool2d_backward", "`indices` must lie in [0, 25)"),
    # --- linear ---------------------------------------------------------------------------
    ("linear-input-0d", lambda: F.linear(np.float32(1.0), m2(2, 1)), ValueError, "linear", "`input` must be at least 1-D"),
    ("linear-weight-1d", lambda: F.linear(m2(), np.zeros(4, f32)), ValueError, "linear", "`weight` must be 2-D"),
    ("linear-weight-3d", lambda: F.linear(m2(), np.zeros((2, 4, 1), f32)), ValueError, "linear", "`weight` must be 2-D"),
    ("linear-features", lambda: F.linear(m2(3, 4), m2(2, 5)), ValueError, "linear", "last dimension of `input` (=4) must equal weight.shape[1] (in_features=5)"),
    ("linear-bias-shape", lambda: F.linear(m2(3, 4), m2(2, 4), np.zeros(4, f32)), ValueError, "linear", "`bias` must have shape (2,), got (4,)"),
    ("linear-bias-dtype", lambda: F.linear(m2(3, 4), m2(2, 4), np.zeros(2, f64)), TypeError, "linear", "`bias` dtype (float64) must equal `input` dtype (float32)"),
    ("linear-weight-dtype", lambda: F.linear(m2(3, 4), m2(2, 4, f64)), TypeError, "linear", "`weight` dtype (float64) must equal `input` dtype (float32)"),
    ("linear-input-int", lambda: F.linear(np.zeros((3, 4), np.int16), m2(2, 4)), TypeError, "linear", "`input` must have dtype float32 or float64, got int16"),
    ("linear-input-float16", lambda: F.linear(m2(dtype=np.float16), m2(2, 4)), TypeError, "linear", "`input` must have dtype float32 or float64, got float16"),
    ("linear-weight-complex", lambda: F.linear(m2(), m2(2, 4).astype(np.complex64)), TypeError, "linear", "`weight` must have dtype float32 or float64, got complex64"),
    ("linear-input-ragged", lambda: F.linear([[1.0, 2.0], [3.0]], m2(2, 2, f64)), ValueError, "linear", "`input` must be a rectangular numeric array"),
    ("linear-empty-batch", lambda: F.linear(m2(0, 4), m2(2, 4)), ValueError, "linear", "`input` must not be empty"),
    ("linear-backend", lambda: F.linear(m2(), m2(2, 4), backend="blas"), ValueError, "linear", "`backend` must be one of"),
    ("linear-bwd-grad-shape", lambda: grad.linear_backward(np.zeros((3, 3), f32), m2(3, 4), m2(2, 4)), ValueError, "linear_backward", "`grad_output` must have shape (3, 2), got (3, 3)"),
    ("linear-bwd-grad-dtype", lambda: grad.linear_backward(np.zeros((3, 2), f64), m2(3, 4), m2(2, 4)), TypeError, "linear_backward", "`grad_output` dtype (float64) must equal `input` dtype (float32)"),
    # --- activations ----------------------------------------------------------------------
    ("relu-int", lambda: F.relu(np.arange(3)), TypeError, "relu", "`input` must have dtype float32 or float64, got int64"),
    ("relu-list-of-ints", lambda: F.relu([1, 2, 3]), TypeError, "relu", "`input` must have dtype float32 or float64, got int64"),
    ("relu-ragged", lambda: F.relu([[1.0], [2.0, 3.0]]), ValueError, "relu", "`input` must be a rectangular numeric array"),
    ("relu-empty", lambda: F.relu(np.zeros((0, 3), f32)), ValueError, "relu", "`input` must not be empty"),
    ("relu-backend", lambda: F.relu(m2(), backend="gpu"), ValueError, "relu", "`backend` must be one of"),
    ("sigmoid-bool", lambda: F.sigmoid(np.ones(3, bool)), TypeError, "sigmoid", "`input` must have dtype float32 or float64, got bool"),
    ("sigmoid-string", lambda: F.sigmoid("1.0"), TypeError, "sigmoid", "`input` must be an array, got str"),
    ("tanh-complex", lambda: F.tanh(np.ones(3, complex)), TypeError, "tanh", "`input` must have dtype float32 or float64, got complex128"),
    ("tanh-float16", lambda: F.tanh(np.ones(3, np.float16)), TypeError, "tanh", "`input` must have dtype float32 or float64, got float16"),
    ("identity-object", lambda: F.identity(np.array([1.0, None])), TypeError, "identity", "`input` must have dtype float32 or float64, got object"),
    ("identity-backend", lambda: F.identity(m2(), backend="gpu"), ValueError, "identity", "`backend` must be one of"),
    ("softmax-dim-too-big", lambda: F.softmax(m2(), 2), ValueError, "softmax", "`dim` must be in [-2, 1] for a 2-D input, got 2"),
    ("softmax-dim-too-small", lambda: F.softmax(m2(), -3), ValueError, "softmax", "`dim` must be in [-2, 1] for a 2-D input, got -3"),
    ("softmax-dim-float", lambda: F.softmax(m2(), 1.0), TypeError, "softmax", "`dim` must be an int"),
    ("softmax-dim-none", lambda: F.softmax(m2(), None), TypeError, "softmax", "`dim` must be an int"),
    ("softmax-scalar-dim", lambda: F.softmax(np.float32(1.0), 1), ValueError, "softmax", "`dim` must be in [-1, 0] for a 0-D input, got 1"),
    ("softmax-float16", lambda: F.softmax(m2(dtype=np.float16)), TypeError, "softmax", "`input` must have dtype float32 or float64, got float16"),
    ("log-softmax-dim", lambda: F.log_softmax(x4(), 4), ValueError, "log_softmax", "`dim` must be in [-4, 3] for a 4-D input, got 4"),
    ("log-softmax-object", lambda: F.log_softmax(m2().astype(object)), TypeError, "log_softmax", "`input` must have dtype float32 or float64, got object"),
    ("log-softmax-backend", lambda: F.log_softmax(m2(), backend="cuda:0"), ValueError, "log_softmax", "`backend` must be one of"),
    ("relu-bwd-grad-shape", lambda: grad.relu_backward(np.zeros(4, f32), m2()), ValueError, "relu_backward", "`grad_output` must have the output's shape (3, 4), got (4,)"),
    ("sigmoid-bwd-grad-dtype", lambda: grad.sigmoid_backward(m2(dtype=f64), m2()), TypeError, "sigmoid_backward", "`grad_output` dtype (float64) must equal `input` dtype (float32)"),
    ("tanh-bwd-output-int", lambda: grad.tanh_backward(m2(), np.zeros((3, 4), int)), TypeError, "tanh_backward", "`output` must have dtype float32 or float64"),
    ("softmax-bwd-grad-shape", lambda: grad.softmax_backward(m2(4, 3), m2(), 1), ValueError, "softmax_backward", "`grad_output` must have the output's shape (3, 4), got (4, 3)"),
    ("softmax-bwd-dim", lambda: grad.softmax_backward(m2(), m2(), 5), ValueError, "softmax_backward", "`dim` must be in [-2, 1]"),
    ("log-softmax-bwd-grad-shape", lambda: grad.log_softmax_backward(m2(3, 1), m2(), 1), ValueError, "log_softmax_backward", "`grad_output` must have the output's shape (3, 4)"),
    ("identity-bwd-int", lambda: grad.identity_backward(np.zeros(3, int)), TypeError, "identity_backward", "`grad_output` must have dtype float32 or float64"),
    # --- shapes ---------------------------------------------------------------------------
    ("conv-shape-too-big", lambda: fastml.conv_output_shape((2, 2), 3), ValueError, "conv_output_shape", "larger than the padded input"),
    ("conv-shape-stride", lambda: fastml.conv_output_shape(8, 3, stride=0), ValueError, "conv_output_shape", "`stride` must be >= 1"),
    ("conv-shape-same-stride", lambda: fastml.conv_output_shape(8, 3, stride=2, padding="same"), ValueError, "conv_output_shape", "`padding`='same' requires `stride` 1"),
    ("conv-shape-input-size", lambda: fastml.conv_output_shape(0, 3), ValueError, "conv_output_shape", "`input_size` must be >= 1"),
    ("pool-shape-padding", lambda: fastml.pool_output_shape(8, 2, padding=2), ValueError, "pool_output_shape", "`padding` (=2) must be at most half of `kernel_size` (=2)"),
    ("pool-shape-too-big", lambda: fastml.pool_output_shape((3, 3), 4), ValueError, "pool_output_shape", "can't be greater than the padded input size"),
    ("pool-shape-kernel-float", lambda: fastml.pool_output_shape(8, 2.0), TypeError, "pool_output_shape", "`kernel_size` must be an int or a pair of ints"),
    ("rf-layer-too-big", lambda: fastml.receptive_field([(5, 1, 0)], 3), ValueError, "receptive_field", "layer 0 (k5) has a kernel larger than its padded input"),
    ("rf-kernel-zero", lambda: fastml.receptive_field([{"kernel_size": 0}], 8), ValueError, "receptive_field", "`kernel_size` must be >= 1"),
    # --- backends -------------------------------------------------------------------------
    ("set-backend-name", lambda: fastml.set_backend("gpu"), ValueError, "set_backend", "`backend` must be one of ['reference', 'cpu', 'cuda'], got 'gpu'"),
    ("set-backend-none", lambda: fastml.set_backend(None), ValueError, "set_backend", "`backend` must be one of"),
]


@pytest.fixture
def no_kernels(monkeypatch):
    """Fail the test if any kernel is looked up *and called*: errors must come first."""
    real = _backend.kernels

    class Tripwire:
        def __init__(self, module):
            self._module = module

        def __getattr__(self, name):
            def kernel(*args, **kwargs):
                raise AssertionError(f"kernel {self._module.__name__}.{name} ran before the error was raised")
            return kernel

    monkeypatch.setattr(_backend, "kernels", lambda family, name, fn: Tripwire(real(family, name, fn)))


@pytest.mark.parametrize("call,exc,fn,phrase", [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_bad_input_raises(call, exc, fn, phrase, no_kernels):
    with pytest.raises(exc, match="^" + re.escape(f"{fn}: ") + ".*" + re.escape(phrase)):
        call()


FOUNDATION_OPS = ["conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "linear",
                  "relu", "sigmoid", "tanh", "softmax", "log_softmax", "identity"]


def test_table_covers_every_foundation_function():
    named = {case[3] for case in CASES}
    wanted = set(FOUNDATION_OPS) | {f"{op}_backward" for op in FOUNDATION_OPS}
    wanted |= {"conv_output_shape", "pool_output_shape", "receptive_field", "set_backend"}
    assert wanted <= named, f"no error case for {sorted(wanted - named)}"
    assert all(hasattr(grad, f"{op}_backward") for op in FOUNDATION_OPS)


def test_failed_set_backend_keeps_the_old_default():
    before = fastml.get_backend()
    with pytest.raises(ValueError):
        fastml.set_backend("gpu")
    assert fastml.get_backend() == before


def test_context_manager_rejects_bad_name_on_entry():
    with pytest.raises(ValueError, match=r"^backend: `backend` must be one of"):
        with fastml.backend("gpu"):
            pass  # pragma: no cover


def test_bad_backend_with_valid_data_raises_before_running(no_kernels):
    """The backend name is checked even when every other argument is fine."""
    x = np.ones((1, 1, 4, 4), f32)
    for call in (lambda: F.conv2d(x, np.ones((1, 1, 2, 2), f32), backend="x"),
                 lambda: F.max_pool2d(x, 2, backend="x"),
                 lambda: grad.relu_backward(x, x, backend="x")):
        with pytest.raises(ValueError, match=r"`backend` must be one of"):
            call()


def test_nan_and_inf_are_data_not_errors():
    x = np.array([[[[np.nan, np.inf], [-np.inf, 1.0]]]], f32)
    with np.errstate(invalid="ignore"):  # NumPy warns about inf - inf; that is data too
        _run_every_op(x)


def _run_every_op(x):
    F.conv2d(x, np.ones((1, 1, 1, 1), f32))
    F.max_pool2d(x, 2)
    F.avg_pool2d(x, 2)
    F.softmax(x, 1)
    F.linear(x, np.ones((3, 2), f32))
