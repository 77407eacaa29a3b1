"""The table of bad inputs: each raises the right exception type, with a message that names the
function and the argument, before any kernel runs."""
from __future__ import annotations

import re
import types
from collections import OrderedDict

import numpy as np
import pytest

import fastml
from fastml import _backend, nn, optim
from fastml import losses as L
from fastml.functional import grad

# Also run under NUMBA_BOUNDSCHECK=1 in CI (`pytest -m boundscheck`): no case may reach compiled code.
pytestmark = pytest.mark.boundscheck

F = fastml.F
f32, f64 = np.float32, np.float64
H, I, T, N = 3, 4, 5, 2  # recurrent cases: hidden size, input size, sequence length, batch


def x4(n=2, c=3, h=5, w=5, dtype=f32):
    return np.zeros((n, c, h, w), dtype)


def w4(k=4, c=3, r=3, s=3, dtype=f32):
    return np.zeros((k, c, r, s), dtype)


def m2(rows=3, cols=4, dtype=f32):
    return np.zeros((rows, cols), dtype)


RAGGED = [[[[1.0, 2.0], [3.0]]]]


def seq(t=T, n=N, i=I, dtype=f32):
    return np.zeros((t, n, i), dtype)


def cell_w(gates=1, dtype=f32):
    """(w_ih, w_hh, b_ih, b_hh) of a cell with ``gates`` gates (1 RNN, 3 GRU, 4 LSTM)."""
    return m2(gates * H, I, dtype), m2(gates * H, H, dtype), np.zeros(gates * H, dtype), np.zeros(gates * H, dtype)


def seq_w(gates=1):
    """The weights list of a one-layer, one-direction :func:`rnn_sequence`."""
    return [cell_w(gates)]


def params():
    return [np.zeros(3, f32)]


# Some bad calls need a good call first (a forward pass before a bad backward). `after` runs that
# setup on the reference backend with the kernels allowed; the tripwire arms again for the bad call.
_SETUP = {"running": False}


def after(setup, action):
    def call():
        _SETUP["running"] = True
        try:
            with fastml.backend("reference"):
                state = setup()
        finally:
            _SETUP["running"] = False
        return action(state)
    return call


def forward(layer, x):
    layer.to("reference")(x)
    return layer


def loss_forward(loss, pred, target):
    loss(pred, target)
    return loss


def seq_forward():
    return F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", keep=True)[3]

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

# --- recurrent functional API (cells: H=3, I=4; sequences: T=5, N=2) -----------------------------------
# A sixth entry names the public function or layer a case covers when the message names another one
# (a layer's forward reports the functional op that checks its arguments).
RECURRENT_CASES = [
    ("rnn-cell-input-3d", lambda: F.rnn_cell(seq(), None, *cell_w()), ValueError, "rnn_cell", "`input` must be 1-D (input_size,) or 2-D (N, input_size), got shape (5, 2, 4)"),
    ("rnn-cell-input-int", lambda: F.rnn_cell(np.zeros((N, I), int), None, *cell_w()), TypeError, "rnn_cell", "`input` must have dtype float32 or float64, got int64"),
    ("rnn-cell-input-empty", lambda: F.rnn_cell(m2(0, I), None, *cell_w()), ValueError, "rnn_cell", "`input` must not be empty"),
    ("rnn-cell-input-ragged", lambda: F.rnn_cell([[1.0, 2.0], [3.0]], None, *cell_w(dtype=f64)), ValueError, "rnn_cell", "`input` must be a rectangular numeric array"),
    ("rnn-cell-input-none", lambda: F.rnn_cell(None, None, *cell_w()), TypeError, "rnn_cell", "`input` must be an array, got NoneType"),
    ("rnn-cell-weight-ih-shape", lambda: F.rnn_cell(m2(N, I), None, m2(H, I + 1), m2(H, H)), ValueError, "rnn_cell", "`weight_ih` must have shape (3, 4), got (3, 5)"),
    ("rnn-cell-weight-hh-1d", lambda: F.rnn_cell(m2(N, I), None, m2(H, I), np.zeros(H, f32)), ValueError, "rnn_cell", "`weight_hh` must be 2-D (1*hidden_size, hidden_size), got shape (3,)"),
    ("rnn-cell-weight-hh-gates", lambda: F.rnn_cell(m2(N, I), None, m2(H, I), m2(4, H)), ValueError, "rnn_cell", "`weight_hh` must have shape (3, 3), got (4, 3)"),
    ("rnn-cell-weight-dtype", lambda: F.rnn_cell(m2(N, I), None, m2(H, I, f64), m2(H, H)), TypeError, "rnn_cell", "`weight_ih` dtype (float64) must equal `input` dtype (float32)"),
    ("rnn-cell-weight-float16", lambda: F.rnn_cell(m2(N, I), None, m2(H, I), m2(H, H, np.float16)), TypeError, "rnn_cell", "`weight_hh` must have dtype float32 or float64, got float16"),
    ("rnn-cell-hx-shape", lambda: F.rnn_cell(m2(N, I), m2(N, H + 1), *cell_w()), ValueError, "rnn_cell", "`hx` must have shape (2, 3), got (2, 4)"),
    ("rnn-cell-hx-unbatched", lambda: F.rnn_cell(np.zeros(I, f32), m2(N, H), *cell_w()), ValueError, "rnn_cell", "`hx` must have shape (3,), got (2, 3)"),
    ("rnn-cell-hx-dtype", lambda: F.rnn_cell(m2(N, I), m2(N, H, f64), *cell_w()), TypeError, "rnn_cell", "`hx` dtype (float64) must equal `input` dtype (float32)"),
    ("rnn-cell-one-bias", lambda: F.rnn_cell(m2(N, I), None, m2(H, I), m2(H, H), np.zeros(H, f32)), ValueError, "rnn_cell", "`bias_ih` and `bias_hh` must both be given or both be None"),
    ("rnn-cell-bias-shape", lambda: F.rnn_cell(m2(N, I), None, m2(H, I), m2(H, H), np.zeros(H, f32), np.zeros(H + 1, f32)), ValueError, "rnn_cell", "`bias_hh` must have shape (3,), got (4,)"),
    ("rnn-cell-nonlinearity", lambda: F.rnn_cell(m2(N, I), None, *cell_w(), nonlinearity="sigmoid"), ValueError, "rnn_cell", "`nonlinearity` must be one of ['tanh', 'relu'], got 'sigmoid'"),
    ("rnn-cell-backend", lambda: F.rnn_cell(m2(N, I), None, *cell_w(), backend="gpu"), ValueError, "rnn_cell", "`backend` must be one of"),
    ("lstm-cell-hx-not-pair", lambda: F.lstm_cell(m2(N, I), m2(N, H), *cell_w(4)), TypeError, "lstm_cell", "`hx` must be a pair (h, c) or None, got ndarray"),
    ("lstm-cell-cx-shape", lambda: F.lstm_cell(m2(N, I), (m2(N, H), m2(N, H + 1)), *cell_w(4)), ValueError, "lstm_cell", "`cx` must have shape (2, 3), got (2, 4)"),
    ("lstm-cell-gates", lambda: F.lstm_cell(m2(N, I), None, *cell_w(3)), ValueError, "lstm_cell", "`weight_ih` must have shape (12, 4), got (9, 4)"),
    ("lstm-cell-input-bool", lambda: F.lstm_cell(np.ones((N, I), bool), None, *cell_w(4)), TypeError, "lstm_cell", "`input` must have dtype float32 or float64, got bool"),
    ("gru-cell-gates", lambda: F.gru_cell(m2(N, I), None, *cell_w(4)), ValueError, "gru_cell", "`weight_ih` must have shape (9, 4), got (12, 4)"),
    ("gru-cell-hx-ragged", lambda: F.gru_cell(m2(N, I, f64), [[0.0, 0.0, 0.0], [0.0]], *cell_w(3, dtype=f64)), ValueError, "gru_cell", "`hx` must be a rectangular numeric array"),
    ("gru-cell-input-complex", lambda: F.gru_cell(m2(N, I).astype(complex), None, *cell_w(3)), TypeError, "gru_cell", "`input` must have dtype float32 or float64, got complex128"),
    ("rnn-cell-bwd-grad-shape", lambda: F.rnn_cell_backward(m2(N, H + 1), m2(N, I), None, *cell_w()), ValueError, "rnn_cell_backward", "`grad_h` must have shape (2, 3), got (2, 4)"),
    ("rnn-cell-bwd-grad-int", lambda: F.rnn_cell_backward(np.zeros((N, H), int), m2(N, I), None, *cell_w()), TypeError, "rnn_cell_backward", "`grad_h` must have dtype float32 or float64, got int64"),
    ("rnn-cell-bwd-nonlinearity", lambda: F.rnn_cell_backward(m2(N, H), m2(N, I), None, *cell_w(), nonlinearity=None), ValueError, "rnn_cell_backward", "`nonlinearity` must be one of"),
    ("lstm-cell-bwd-grad-c-shape", lambda: F.lstm_cell_backward(m2(N, H), m2(N, H - 1), m2(N, I), None, *cell_w(4)), ValueError, "lstm_cell_backward", "`grad_c` must have shape (2, 3), got (2, 2)"),
    ("lstm-cell-bwd-hx", lambda: F.lstm_cell_backward(m2(N, H), None, m2(N, I), (m2(N, H),), *cell_w(4)), TypeError, "lstm_cell_backward", "`hx` must be a pair (h, c) or None"),
    ("gru-cell-bwd-grad-dtype", lambda: F.gru_cell_backward(m2(N, H, f64), m2(N, I), None, *cell_w(3)), TypeError, "gru_cell_backward", "`grad_h` dtype (float64) must equal `input` dtype (float32)"),
    ("gru-cell-bwd-backend", lambda: F.gru_cell_backward(m2(N, H), m2(N, I), None, *cell_w(3), backend="tpu"), ValueError, "gru_cell_backward", "`backend` must be one of"),
    # whole sequences
    ("seq-mode", lambda: F.rnn_sequence(seq(), None, seq_w(), "lstm2"), ValueError, "rnn_sequence", "`mode` must be one of ['rnn_tanh', 'rnn_relu', 'lstm', 'gru', 'gru_reset_before'], got 'lstm2'"),
    ("seq-num-layers-zero", lambda: F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", num_layers=0), ValueError, "rnn_sequence", "`num_layers` must be >= 1, got 0"),
    ("seq-weights-count", lambda: F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", bidirectional=True), ValueError, "rnn_sequence", "`weights` must hold num_layers*num_directions (=2) tuples, got 1"),
    ("seq-weights-none", lambda: F.rnn_sequence(seq(), None, None, "rnn_tanh"), TypeError, "rnn_sequence", "`weights` must be a list of (w_ih, w_hh, b_ih, b_hh) tuples, got NoneType"),
    ("seq-weights-tuple-length", lambda: F.rnn_sequence(seq(), None, [seq_w()[0][:3]], "rnn_tanh"), ValueError, "rnn_sequence", "`weights[0]` must be a tuple (w_ih, w_hh, b_ih, b_hh), got 3 entries"),
    ("seq-weight-ih-1d", lambda: F.rnn_sequence(seq(), None, [(np.zeros(H, f32), m2(H, H), None, None)], "rnn_tanh"), ValueError, "rnn_sequence", "`weight_ih_l0` and `weight_hh_l0` must be 2-D"),
    ("seq-input-4d", lambda: F.rnn_sequence(x4(), None, seq_w(), "rnn_tanh"), ValueError, "rnn_sequence", "`input` must be 2-D (T, input_size) or 3-D (T, N, input_size)"),
    ("seq-input-features", lambda: F.rnn_sequence(seq(i=I + 1), None, seq_w(), "rnn_tanh"), ValueError, "rnn_sequence", "last dimension of `input` (=5) must equal `input_size` (=4)"),
    ("seq-input-object", lambda: F.rnn_sequence(seq().astype(object), None, seq_w(), "rnn_tanh"), TypeError, "rnn_sequence", "`input` must have dtype float32 or float64, got object"),
    ("seq-empty-time", lambda: F.rnn_sequence(seq(t=0), None, seq_w(), "rnn_tanh"), ValueError, "rnn_sequence", "sequence length T must be >= 1 in `input`, got shape (0, 2, 4)"),
    ("seq-empty-time-batch-first", lambda: F.rnn_sequence(seq(t=N, n=0), None, seq_w(), "gru", batch_first=True), ValueError, "rnn_sequence", "sequence length T must be >= 1 in `input`, got shape (2, 0, 4)"),
    ("seq-empty-batch", lambda: F.rnn_sequence(seq(n=0), None, seq_w(), "rnn_tanh"), ValueError, "rnn_sequence", "`input` must not be empty: the batch size N is 0 (input shape (5, 0, 4))"),
    ("seq-h0-shape", lambda: F.rnn_sequence(seq(), m2(N, H), seq_w(), "rnn_tanh"), ValueError, "rnn_sequence", "`h0` must have shape (1, 2, 3), got (2, 3)"),
    ("seq-h0-dtype", lambda: F.rnn_sequence(seq(), np.zeros((1, N, H)), seq_w(), "rnn_tanh"), TypeError, "rnn_sequence", "`h0` dtype (float64) must equal `input` dtype (float32)"),
    ("seq-lstm-hx-not-pair", lambda: F.rnn_sequence(seq(), np.zeros((1, N, H), f32), seq_w(4), "lstm"), TypeError, "rnn_sequence", "`hx` must be a pair (h, c) or None"),
    ("seq-c0-shape", lambda: F.rnn_sequence(seq(), (np.zeros((1, N, H), f32), np.zeros((2, N, H), f32)), seq_w(4), "lstm"), ValueError, "rnn_sequence", "`c0` must have shape (1, 2, 3), got (2, 2, 3)"),
    ("seq-lengths-too-long", lambda: F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", lengths=[T + 1, 1]), ValueError, "rnn_sequence", "`lengths` must be at most the sequence length T (=5), got 6"),
    ("seq-lengths-zero", lambda: F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", lengths=[0, 1]), ValueError, "rnn_sequence", "`lengths` must be positive, got minimum 0"),
    ("seq-lengths-batch", lambda: F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", lengths=[1, 2, 3]), ValueError, "rnn_sequence", "`lengths` must have shape (2,) (one per sequence in the batch), got (3,)"),
    ("seq-lengths-float", lambda: F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", lengths=np.array([1.0, 2.0])), TypeError, "rnn_sequence", "`lengths` must be integers, got dtype float64"),
    ("seq-lengths-nan", lambda: F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", lengths=[1.0, np.nan]), TypeError, "rnn_sequence", "`lengths` must be integers, got dtype float64"),
    ("seq-lengths-ragged", lambda: F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", lengths=[[1, 2], [3]]), ValueError, "rnn_sequence", "`lengths` must be a rectangular integer array"),
    ("seq-dropout-range", lambda: F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", dropout=1.5), ValueError, "rnn_sequence", "`dropout` must be in [0, 1], got 1.5"),
    ("seq-dropout-none", lambda: F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", dropout=None), TypeError, "rnn_sequence", "`dropout` must be a number in [0, 1], got None"),
    ("seq-layer1-weight-shape", lambda: F.rnn_sequence(seq(), None, seq_w() * 2, "rnn_tanh", num_layers=2), ValueError, "rnn_sequence", "`weight_ih_l1` must have shape (3, 3), got (3, 4)"),
    ("seq-reverse-bias-shape", lambda: F.rnn_sequence(seq(), None, seq_w() + [(m2(H, I), m2(H, H), np.zeros(H, f32), np.zeros(1, f32))], "rnn_tanh", bidirectional=True), ValueError, "rnn_sequence", "`bias_hh_l0_reverse` must have shape (3,), got (1,)"),
    ("seq-backend", lambda: F.rnn_sequence(seq(), None, seq_w(), "rnn_tanh", backend="gpu"), ValueError, "rnn_sequence", "`backend` must be one of"),
    ("seq-bwd-no-context", lambda: F.rnn_sequence_backward(None, seq(i=H)), ValueError, "rnn_sequence_backward", "`ctx` is None: no forward context"),
    ("seq-bwd-grad-shape", after(seq_forward, lambda ctx: F.rnn_sequence_backward(ctx, seq(i=H + 1))), ValueError, "rnn_sequence_backward", "`grad_output` must have shape (5, 2, 3), got (5, 2, 4)"),
    ("seq-bwd-grad-dtype", after(seq_forward, lambda ctx: F.rnn_sequence_backward(ctx, seq(i=H, dtype=f64))), TypeError, "rnn_sequence_backward", "`grad_output` dtype (float64) must equal `input` dtype (float32)"),
    ("seq-bwd-grad-h-n", after(seq_forward, lambda ctx: F.rnn_sequence_backward(ctx, seq(i=H), m2(N, H))), ValueError, "rnn_sequence_backward", "`grad_h_n` must have shape (1, 2, 3), got (2, 3)"),
    ("seq-bwd-bptt-zero", after(seq_forward, lambda ctx: F.rnn_sequence_backward(ctx, seq(i=H), bptt_steps=0)), ValueError, "rnn_sequence_backward", "`bptt_steps` must be >= 1, got 0"),
]

LAYER_CASES = [
    ("Conv2d-in-channels-zero", lambda: nn.Conv2d(0, 4, 3), ValueError, "Conv2d", "`in_channels` must be >= 1, got 0"),
    ("Conv2d-out-channels-negative", lambda: nn.Conv2d(3, -4, 3), ValueError, "Conv2d", "`out_channels` must be >= 1, got -4"),
    ("Conv2d-in-channels-float", lambda: nn.Conv2d(3.0, 4, 3), TypeError, "Conv2d", "`in_channels` must be an int, got 3.0"),
    ("Conv2d-kernel-zero", lambda: nn.Conv2d(3, 4, 0), ValueError, "Conv2d", "`kernel_size` must be >= 1, got 0"),
    ("Conv2d-kernel-float", lambda: nn.Conv2d(3, 4, 2.5), TypeError, "Conv2d", "`kernel_size` must be an int or a pair of ints, got 2.5"),
    ("Conv2d-stride-zero", lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, "Conv2d", "`stride` must be >= 1, got 0"),
    ("Conv2d-dilation-negative", lambda: nn.Conv2d(3, 4, 3, dilation=(1, -1)), ValueError, "Conv2d", "`dilation` must be >= 1"),
    ("Conv2d-padding-negative", lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, "Conv2d", "`padding` must be >= 0, got -1"),
    ("Conv2d-padding-word", lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, "Conv2d", "`padding` must be an int, a pair, 'valid' or 'same', got 'full'"),
    ("Conv2d-padding-same-strided", lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, "Conv2d", "`padding`='same' requires `stride` 1, got (2, 2)"),
    ("Conv2d-groups-divide", lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "Conv2d", "`groups` (=2) must divide `in_channels` (=3) and `out_channels` (=4)"),
    ("Conv2d-groups-zero", lambda: nn.Conv2d(3, 4, 3, groups=0), ValueError, "Conv2d", "`groups` must be >= 1, got 0"),
    ("Conv2d-padding-mode", lambda: nn.Conv2d(3, 4, 3, padding_mode="reflect"), ValueError, "Conv2d", "`padding_mode` must be 'zeros'"),
    ("Conv2d-dtype-int", lambda: nn.Conv2d(3, 4, 3, dtype=np.int32), TypeError, "Conv2d", "`dtype` must be float32 or float64, got int32"),
    ("Conv2d-dtype-float16", lambda: nn.Conv2d(3, 4, 3, dtype=np.float16), TypeError, "Conv2d", "`dtype` must be float32 or float64, got float16"),
    ("Conv2d-bias-int", lambda: nn.Conv2d(3, 4, 3, bias=1), TypeError, "Conv2d", "`bias` must be a bool, got 1"),
    ("Conv2d-fwd-channels", lambda: nn.Conv2d(3, 4, 3)(x4(c=2)), ValueError, "conv2d", "`in_channels` of input (=2) must equal weight.shape[1]*groups (=3)", "Conv2d"),
    ("Conv2d-fwd-too-small", lambda: nn.Conv2d(3, 4, 3)(x4(h=2, w=2)), ValueError, "conv2d", "kernel size of `weight` (3, 3)", "Conv2d"),
    ("Conv2d-fwd-2d", lambda: nn.Conv2d(3, 4, 3)(m2()), ValueError, "conv2d", "`input` must be 3-D or 4-D", "Conv2d"),
    ("Conv2d-fwd-dtype", lambda: nn.Conv2d(3, 4, 3)(x4(dtype=f64)), TypeError, "Conv2d.forward", "`input` dtype (float64) must equal the layer's dtype (float32)"),
    ("Conv2d-fwd-int", lambda: nn.Conv2d(3, 4, 3)(x4().astype(int)), TypeError, "Conv2d.forward", "`input` must have dtype float32 or float64, got int64"),
    ("Conv2d-bwd-grad-shape", after(lambda: forward(nn.Conv2d(3, 4, 3), x4()), lambda layer: layer.backward(x4(c=4))), ValueError, "conv2d_backward", "`grad_output` must have the output's shape (2, 4, 3, 3), got (2, 4, 5, 5)", "Conv2d"),
    ("Linear-in-zero", lambda: nn.Linear(0, 3), ValueError, "Linear", "`in_features` must be >= 1, got 0"),
    ("Linear-out-float", lambda: nn.Linear(3, 2.0), TypeError, "Linear", "`out_features` must be an int, got 2.0"),
    ("Linear-dtype-complex", lambda: nn.Linear(3, 2, dtype=complex), TypeError, "Linear", "`dtype` must be float32 or float64, got complex128"),
    ("Linear-fwd-features", lambda: nn.Linear(5, 2)(m2(3, 4)), ValueError, "linear", "last dimension of `input` (=4) must equal weight.shape[1] (in_features=5)", "Linear"),
    ("Linear-fwd-0d", lambda: nn.Linear(1, 2)(np.float32(1.0)), ValueError, "linear", "`input` must be at least 1-D", "Linear"),
    ("Linear-fwd-empty", lambda: nn.Linear(4, 2)(m2(0, 4)), ValueError, "linear", "`input` must not be empty", "Linear"),
    ("Linear-fwd-none", lambda: nn.Linear(4, 2)(None), TypeError, "Linear.forward", "`input` must be an array, got NoneType"),
    ("Linear-bwd-grad-shape", after(lambda: forward(nn.Linear(4, 2), m2(3, 4)), lambda layer: layer.backward(m2(3, 3))), ValueError, "linear_backward", "`grad_output` must have shape (3, 2), got (3, 3)", "Linear"),
    ("MaxPool2d-kernel-zero", lambda: nn.MaxPool2d(0), ValueError, "MaxPool2d", "`kernel_size` must be >= 1, got 0"),
    ("MaxPool2d-stride-negative", lambda: nn.MaxPool2d(2, stride=-1), ValueError, "MaxPool2d", "`stride` must be >= 1, got -1"),
    ("MaxPool2d-padding-negative", lambda: nn.MaxPool2d(2, padding=-1), ValueError, "MaxPool2d", "`padding` must be >= 0, got -1"),
    ("MaxPool2d-fwd-padding-over-half", lambda: nn.MaxPool2d(2, padding=2)(x4()), ValueError, "max_pool2d", "`padding` (=2) must be at most half of `kernel_size` (=2)", "MaxPool2d"),
    ("MaxPool2d-dilation-zero", lambda: nn.MaxPool2d(2, dilation=0), ValueError, "MaxPool2d", "`dilation` must be >= 1, got 0"),
    ("MaxPool2d-ceil-mode-int", lambda: nn.MaxPool2d(2, ceil_mode=1), TypeError, "MaxPool2d", "`ceil_mode` must be a bool, got 1"),
    ("MaxPool2d-fwd-too-small", lambda: nn.MaxPool2d(4)(x4(h=3, w=3)), ValueError, "max_pool2d", "`kernel_size` (4, 4) (dilation (1, 1)) can't be greater than the padded input size (3, 3)", "MaxPool2d"),
    ("MaxPool2d-fwd-float16", lambda: nn.MaxPool2d(2)(x4(dtype=np.float16)), TypeError, "MaxPool2d.forward", "`input` must have dtype float32 or float64, got float16"),
    ("MaxPool2d-bwd-grad-shape", after(lambda: forward(nn.MaxPool2d(2), x4()), lambda layer: layer.backward(x4())), ValueError, "max_pool2d_backward", "`grad_output` must have the output's shape (2, 3, 2, 2), got (2, 3, 5, 5)", "MaxPool2d"),
    ("AvgPool2d-kernel-negative", lambda: nn.AvgPool2d(-2), ValueError, "AvgPool2d", "`kernel_size` must be >= 1, got -2"),
    ("AvgPool2d-fwd-padding-over-half", lambda: nn.AvgPool2d(3, padding=2)(x4()), ValueError, "avg_pool2d", "`padding` (=2) must be at most half of `kernel_size` (=3)", "AvgPool2d"),
    ("AvgPool2d-count-include-pad-str", lambda: nn.AvgPool2d(2, count_include_pad="yes"), TypeError, "AvgPool2d", "`count_include_pad` must be a bool, got 'yes'"),
    ("AvgPool2d-fwd-divisor-zero", lambda: nn.AvgPool2d(2, divisor_override=0)(x4()), ValueError, "avg_pool2d", "`divisor_override` must be >= 1, got 0", "AvgPool2d"),
    ("AvgPool2d-fwd-5d", lambda: nn.AvgPool2d(2)(np.zeros((1, 1, 1, 4, 4), f32)), ValueError, "avg_pool2d", "`input` must be 3-D or 4-D", "AvgPool2d"),
    ("AvgPool2d-bwd-grad-dtype", after(lambda: forward(nn.AvgPool2d(2), x4()), lambda layer: layer.backward(np.zeros((2, 3, 2, 2)))), TypeError, "avg_pool2d_backward", "`grad_output` dtype (float64) must equal `input` dtype (float32)", "AvgPool2d"),
    ("AdaptiveAvgPool2d-fwd-size-zero", lambda: nn.AdaptiveAvgPool2d(0)(x4()), ValueError, "adaptive_avg_pool2d", "`output_size` must be >= 1, got 0", "AdaptiveAvgPool2d"),
    ("AdaptiveAvgPool2d-fwd-size-float", lambda: nn.AdaptiveAvgPool2d(1.5)(x4()), TypeError, "adaptive_avg_pool2d", "`output_size` must be an int or a pair of ints, got 1.5", "AdaptiveAvgPool2d"),
    ("AdaptiveAvgPool2d-fwd-2d", lambda: nn.AdaptiveAvgPool2d(1)(m2()), ValueError, "adaptive_avg_pool2d", "`input` must be 3-D or 4-D", "AdaptiveAvgPool2d"),
    ("AdaptiveAvgPool2d-bwd-grad-shape", after(lambda: forward(nn.AdaptiveAvgPool2d(2), x4()), lambda layer: layer.backward(np.zeros((2, 3, 1, 1), f32))), ValueError, "adaptive_avg_pool2d_backward", "`grad_output` must have the output's shape (2, 3, 2, 2), got (2, 3, 1, 1)", "AdaptiveAvgPool2d"),
    ("Flatten-start-float", lambda: nn.Flatten(1.0), TypeError, "Flatten", "`start_dim` must be an int, got 1.0"),
    ("Flatten-fwd-start-range", lambda: nn.Flatten(4)(m2()), ValueError, "Flatten.forward", "`start_dim` (=4) is out of range for a 2-D input of shape (3, 4)"),
    ("Flatten-fwd-start-after-end", lambda: nn.Flatten(1, 0)(x4()), ValueError, "Flatten.forward", "`start_dim` (=1) must not come after `end_dim` (=0)"),
    ("Flatten-fwd-ragged", lambda: nn.Flatten()(RAGGED), ValueError, "Flatten.forward", "`input` must be a rectangular numeric array"),
    ("Flatten-bwd-grad-shape", after(lambda: forward(nn.Flatten(), x4()), lambda layer: layer.backward(m2(2, 74))), ValueError, "Flatten.backward", "`grad_output` must have the output's shape (2, 75), got (2, 74)"),
    ("ReLU-inplace-str", lambda: nn.ReLU(inplace="no"), TypeError, "ReLU", "`inplace` must be a bool, got 'no'"),
    ("ReLU-fwd-int", lambda: nn.ReLU()(np.arange(3)), TypeError, "ReLU.forward", "`input` must have dtype float32 or float64, got int64"),
    ("ReLU-bwd-grad-shape", after(lambda: forward(nn.ReLU(), m2()), lambda layer: layer.backward(m2(4, 3))), ValueError, "relu_backward", "`grad_output` must have the output's shape (3, 4), got (4, 3)", "ReLU"),
    ("Sigmoid-fwd-str", lambda: nn.Sigmoid()("x"), TypeError, "Sigmoid.forward", "`input` must be an array, got str"),
    ("Sigmoid-bwd-grad-dtype", after(lambda: forward(nn.Sigmoid(), m2()), lambda layer: layer.backward(m2(dtype=f64))), TypeError, "sigmoid_backward", "`grad_output` dtype (float64) must equal `input` dtype (float32)", "Sigmoid"),
    ("Tanh-fwd-complex", lambda: nn.Tanh()(m2().astype(np.complex64)), TypeError, "Tanh.forward", "`input` must have dtype float32 or float64, got complex64"),
    ("Tanh-bwd-grad-shape", after(lambda: forward(nn.Tanh(), m2()), lambda layer: layer.backward(m2(3, 5))), ValueError, "tanh_backward", "`grad_output` must have the output's shape (3, 4), got (3, 5)", "Tanh"),
    ("Softmax-dim-float", lambda: nn.Softmax(dim=1.0), TypeError, "Softmax", "`dim` must be an int, got 1.0"),
    ("Softmax-fwd-dim", lambda: nn.Softmax(dim=2)(m2()), ValueError, "softmax", "`dim` must be in [-2, 1] for a 2-D input, got 2", "Softmax"),
    ("Softmax-fwd-empty", lambda: nn.Softmax(dim=1)(m2(0, 4)), ValueError, "softmax", "`input` must not be empty", "Softmax"),
    ("LogSoftmax-dim-str", lambda: nn.LogSoftmax(dim="1"), TypeError, "LogSoftmax", "`dim` must be an int, got '1'"),
    ("LogSoftmax-fwd-dim", lambda: nn.LogSoftmax(dim=-3)(m2()), ValueError, "log_softmax", "`dim` must be in [-2, 1] for a 2-D input, got -3", "LogSoftmax"),
    ("Identity-fwd-object", lambda: nn.Identity()(np.array([1.0, None])), TypeError, "Identity.forward", "`input` must have dtype float32 or float64, got object"),
    ("Identity-bwd-int", lambda: nn.Identity().backward(np.zeros(3, int)), TypeError, "identity_backward", "`grad_output` must have dtype float32 or float64, got int64", "Identity"),
    ("Dropout-p-high", lambda: nn.Dropout(1.5), ValueError, "Dropout", "`p` must be in [0, 1], got 1.5"),
    ("Dropout-p-negative", lambda: nn.Dropout(-0.1), ValueError, "Dropout", "`p` must be in [0, 1], got -0.1"),
    ("Dropout-p-nan", lambda: nn.Dropout(float("nan")), ValueError, "Dropout", "`p` must be in [0, 1], got nan"),
    ("Dropout-p-str", lambda: nn.Dropout("0.5"), TypeError, "Dropout", "`p` must be a number in [0, 1], got '0.5'"),
    ("Dropout-fwd-bool", lambda: nn.Dropout()(np.ones(3, bool)), TypeError, "Dropout.forward", "`input` must have dtype float32 or float64, got bool"),
    ("Dropout-bwd-grad-shape", after(lambda: forward(nn.Dropout(seed=0), m2()), lambda layer: layer.backward(m2(3, 1))), ValueError, "Dropout.backward", "`grad_output` must have the output's shape (3, 4), got (3, 1)"),
    ("Embedding-num-zero", lambda: nn.Embedding(0, 3), ValueError, "Embedding", "`num_embeddings` must be >= 1, got 0"),
    ("Embedding-dim-negative", lambda: nn.Embedding(5, -1), ValueError, "Embedding", "`embedding_dim` must be >= 1, got -1"),
    ("Embedding-padding-idx", lambda: nn.Embedding(5, 3, padding_idx=5), ValueError, "Embedding", "`padding_idx` must be within num_embeddings (=5), got 5"),
    ("Embedding-dtype-str", lambda: nn.Embedding(5, 3, dtype="int8"), TypeError, "Embedding", "`dtype` must be float32 or float64, got int8"),
    ("Embedding-fwd-float", lambda: nn.Embedding(5, 3)(np.array([0.0, 1.0])), TypeError, "Embedding.forward", "`input` must be an integer array of indices, got dtype float64"),
    ("Embedding-fwd-nan", lambda: nn.Embedding(5, 3)(np.array([0.0, np.nan])), TypeError, "Embedding.forward", "`input` must be an integer array of indices, got dtype float64"),
    ("Embedding-fwd-bool", lambda: nn.Embedding(5, 3)(np.array([True])), TypeError, "Embedding.forward", "`input` must be an integer array of indices, got dtype bool"),
    ("Embedding-fwd-too-big", lambda: nn.Embedding(5, 3)(np.array([0, 5])), ValueError, "Embedding.forward", "indices in `input` must lie in [0, 5), got values in [0, 5]"),
    ("Embedding-fwd-negative", lambda: nn.Embedding(5, 3)(np.array([[-1, 2]])), ValueError, "Embedding.forward", "indices in `input` must lie in [0, 5), got values in [-1, 2]"),
    ("Embedding-fwd-ragged", lambda: nn.Embedding(5, 3)([[0, 1], [2]]), ValueError, "Embedding.forward", "`input` must be a rectangular integer array"),
    ("Embedding-fwd-none", lambda: nn.Embedding(5, 3)(None), TypeError, "Embedding.forward", "`input` must be an integer array of indices, got NoneType"),
    ("embedding-float-indices", lambda: F.embedding(np.array([0.5]), m2(5, 3)), TypeError, "embedding", "`input` must be an integer array of indices, got dtype float64"),
    ("embedding-index-range", lambda: F.embedding(np.array([7]), m2(5, 3)), ValueError, "embedding", "indices in `input` must lie in [0, 5), got values in [7, 7]"),
    ("embedding-padding-idx", lambda: F.embedding(np.array([0]), m2(5, 3), padding_idx=9), ValueError, "embedding", "`padding_idx` must be within num_embeddings (=5), got 9"),
    ("embedding-bwd-grad-shape", lambda: grad.embedding_backward(m2(2, 4), np.array([0, 1]), m2(5, 3)), ValueError, "embedding_backward", "`grad_output` must have shape (2, 3), got (2, 4)"),
    ("embedding-bwd-grad-dtype", lambda: grad.embedding_backward(m2(2, 3, f64), np.array([0, 1]), m2(5, 3)), TypeError, "embedding_backward", "`grad_output` dtype (float64) must equal `weight` dtype (float32)"),
    ("Embedding-bwd-grad-shape", after(lambda: forward(nn.Embedding(5, 3), np.array([0, 1])), lambda layer: layer.backward(m2(2, 4))), ValueError, "Embedding.backward", "`grad_output` must have shape (2, 3), got (2, 4)"),
    ("Sequential-entry", lambda: nn.Sequential(nn.ReLU(), 3), TypeError, "Sequential", "every entry must be a fastml Module, got int for '1'"),
    ("Sequential-name", lambda: nn.Sequential(OrderedDict([("a.b", nn.ReLU())])), ValueError, "Sequential", "module `name` must be a non-empty str without '.', got 'a.b'"),
    ("Sequential-fwd", lambda: nn.Sequential(nn.Linear(4, 2))(m2(3, 5)), ValueError, "linear", "last dimension of `input` (=5) must equal weight.shape[1] (in_features=4)", "Sequential"),
    ("Module-load-state-dict-shape", lambda: nn.Linear(2, 3).load_state_dict({"weight": m2(3, 3), "bias": np.zeros(3, f32)}), ValueError, "Linear.load_state_dict", "size mismatch for weight", "Module"),
    ("Module-load-state-dict-type", lambda: nn.Linear(2, 3).load_state_dict([1, 2]), TypeError, "Linear.load_state_dict", "`state_dict` must be a mapping, got list", "Module"),
    ("Module-to-backend", lambda: nn.Linear(2, 3).to("gpu"), ValueError, "Linear.to", "`backend` must be one of", "Module"),
    ("save-obj", lambda: nn.save(3, "unused.npz"), TypeError, "save", "`obj` must be a fastml Module or a dict of arrays, got int"),
    ("load-missing-file", lambda: nn.load("/nonexistent/fastml-model.npz"), FileNotFoundError, "load", "no file at `path`"),
    # recurrent layers (I=4, H=3; input (T=5, N=2, 4))
    ("RNN-input-size-zero", lambda: nn.RNN(0, H), ValueError, "RNN", "`input_size` must be >= 1, got 0"),
    ("RNN-hidden-negative", lambda: nn.RNN(I, -3), ValueError, "RNN", "`hidden_size` must be >= 1, got -3"),
    ("RNN-num-layers-zero", lambda: nn.RNN(I, H, num_layers=0), ValueError, "RNN", "`num_layers` must be >= 1, got 0"),
    ("RNN-nonlinearity", lambda: nn.RNN(I, H, nonlinearity="sigmoid"), ValueError, "RNN", "`nonlinearity` must be one of ['tanh', 'relu'], got 'sigmoid'"),
    ("RNN-dropout", lambda: nn.RNN(I, H, dropout=2), ValueError, "RNN", "`dropout` must be in [0, 1], got 2"),
    ("RNN-batch-first-str", lambda: nn.RNN(I, H, batch_first="yes"), TypeError, "RNN", "`batch_first` must be a bool, got 'yes'"),
    ("RNN-dtype-int", lambda: nn.RNN(I, H, dtype=np.int64), TypeError, "RNN", "`dtype` must be float32 or float64, got int64"),
    ("RNN-dtype-junk", lambda: nn.RNN(I, H, dtype="floaty"), TypeError, "RNN", "`dtype` must be float32 or float64, got 'floaty'"),
    ("RNN-fwd-features", lambda: nn.RNN(I, H)(seq(i=5)), ValueError, "RNN.forward", "last dimension of `input` (=5) must equal `input_size` (=4)"),
    ("RNN-fwd-4d", lambda: nn.RNN(I, H)(x4()), ValueError, "RNN.forward", "`input` must be 2-D (T, input_size) or 3-D"),
    ("RNN-fwd-dtype", lambda: nn.RNN(I, H)(seq(dtype=f64)), TypeError, "RNN.forward", "`weight_ih_l0` dtype (float32) must equal `input` dtype (float64)"),
    ("RNN-fwd-h0-shape", lambda: nn.RNN(I, H)(seq(), m2(N, H)), ValueError, "RNN.forward", "`h0` must have shape (1, 2, 3), got (2, 3)"),
    ("RNN-fwd-h0-layers", lambda: nn.RNN(I, H, num_layers=2)(seq(), np.zeros((1, N, H), f32)), ValueError, "RNN.forward", "`h0` must have shape (2, 2, 3), got (1, 2, 3)"),
    ("RNN-fwd-h0-int", lambda: nn.RNN(I, H)(seq(), np.zeros((1, N, H), int)), TypeError, "RNN.forward", "`h0` must have dtype float32 or float64, got int64"),
    ("RNN-fwd-T0", lambda: nn.RNN(I, H)(seq(t=0)), ValueError, "RNN.forward", "sequence length T must be >= 1 in `input`, got shape (0, 2, 4)"),
    ("RNN-fwd-lengths-range", lambda: nn.RNN(I, H)(seq(), lengths=[6, 1]), ValueError, "RNN.forward", "`lengths` must be at most the sequence length T (=5), got 6"),
    ("RNN-fwd-lengths-batch", lambda: nn.RNN(I, H)(seq(), lengths=[5]), ValueError, "RNN.forward", "`lengths` must have shape (2,) (one per sequence in the batch), got (1,)"),
    ("RNN-bwd-grad-shape", after(lambda: forward(nn.RNN(I, H), seq()), lambda layer: layer.backward(seq(i=H + 1))), ValueError, "RNN.backward", "`grad_output` must have shape (5, 2, 3), got (5, 2, 4)"),
    ("RNN-bwd-bptt-zero", after(lambda: forward(nn.RNN(I, H), seq()), lambda layer: layer.backward(seq(i=H), bptt_steps=0)), ValueError, "RNN.backward", "`bptt_steps` must be >= 1, got 0"),
    ("LSTM-hidden-zero", lambda: nn.LSTM(I, 0), ValueError, "LSTM", "`hidden_size` must be >= 1, got 0"),
    ("LSTM-bidirectional-int", lambda: nn.LSTM(I, H, bidirectional=1), TypeError, "LSTM", "`bidirectional` must be a bool, got 1"),
    ("LSTM-dropout-str", lambda: nn.LSTM(I, H, dropout="0.1"), TypeError, "LSTM", "`dropout` must be a number in [0, 1], got '0.1'"),
    ("LSTM-fwd-hx-not-pair", lambda: nn.LSTM(I, H)(seq(), np.zeros((1, N, H), f32)), TypeError, "LSTM.forward", "`hx` must be a pair (h, c) or None, got ndarray"),
    ("LSTM-fwd-c0-shape", lambda: nn.LSTM(I, H)(seq(), (np.zeros((1, N, H), f32), np.zeros((1, N, H + 1), f32))), ValueError, "LSTM.forward", "`c0` must have shape (1, 2, 3), got (1, 2, 4)"),
    ("LSTM-fwd-h0-bidirectional", lambda: nn.LSTM(I, H, bidirectional=True)(seq(), (np.zeros((1, N, H), f32), np.zeros((2, N, H), f32))), ValueError, "LSTM.forward", "`h0` must have shape (2, 2, 3), got (1, 2, 3)"),
    ("LSTM-fwd-lengths-float", lambda: nn.LSTM(I, H)(seq(), lengths=np.array([5.0, 3.0])), TypeError, "LSTM.forward", "`lengths` must be integers, got dtype float64"),
    ("LSTM-fwd-batch-first-T0", lambda: nn.LSTM(I, H, batch_first=True)(np.zeros((N, 0, I), f32)), ValueError, "LSTM.forward", "sequence length T must be >= 1 in `input`, got shape (2, 0, 4)"),
    ("LSTM-bwd-grad-c-shape", after(lambda: forward(nn.LSTM(I, H), seq()), lambda layer: layer.backward(seq(i=H), None, m2(N, H))), ValueError, "LSTM.backward", "`grad_c_n` must have shape (1, 2, 3), got (2, 3)"),
    ("GRU-reset-after-int", lambda: nn.GRU(I, H, reset_after=0), TypeError, "GRU", "`reset_after` must be a bool, got 0"),
    ("GRU-num-layers-float", lambda: nn.GRU(I, H, num_layers=2.0), TypeError, "GRU", "`num_layers` must be an int, got 2.0"),
    ("GRU-fwd-h0-dtype", lambda: nn.GRU(I, H)(seq(), np.zeros((1, N, H))), TypeError, "GRU.forward", "`h0` dtype (float64) must equal `input` dtype (float32)"),
    ("GRU-fwd-lengths-zero", lambda: nn.GRU(I, H)(seq(), lengths=[0, 5]), ValueError, "GRU.forward", "`lengths` must be positive, got minimum 0"),
    ("GRU-fwd-lengths-2d", lambda: nn.GRU(I, H)(seq(), lengths=[[5, 5]]), ValueError, "GRU.forward", "`lengths` must have shape (2,) (one per sequence in the batch), got (1, 2)"),
    ("GRU-fwd-unbatched-h0", lambda: nn.GRU(I, H)(m2(T, I), np.zeros((1, N, H), f32)), ValueError, "GRU.forward", "`h0` must have shape (1, 3), got (1, 2, 3)"),
    ("GRU-fwd-empty-batch", lambda: nn.GRU(I, H, batch_first=True)(np.zeros((0, T, I), f32)), ValueError, "GRU.forward", "`input` must not be empty: the batch size N is 0"),
    ("GRU-bwd-grad-h-n", after(lambda: forward(nn.GRU(I, H), seq()), lambda layer: layer.backward(seq(i=H), np.zeros((2, N, H), f32))), ValueError, "GRU.backward", "`grad_h_n` must have shape (1, 2, 3), got (2, 2, 3)"),
]

LOSS_CASES = [
    ("MSELoss-reduction", lambda: L.MSELoss(reduction="avg"), ValueError, "MSELoss", "`reduction` must be one of ['mean', 'sum', 'none'], got 'avg'"),
    ("MSELoss-shape", lambda: L.MSELoss()(m2(3, 4), m2(4, 3)), ValueError, "MSELoss", "`target` shape (4, 3) must equal `input` shape (3, 4)"),
    ("MSELoss-input-int", lambda: L.MSELoss()(np.zeros(3, int), np.zeros(3)), TypeError, "MSELoss", "`input` must have dtype float32 or float64, got int64"),
    ("MSELoss-target-complex", lambda: L.MSELoss()(m2(), m2().astype(complex)), TypeError, "MSELoss", "`target` must have dtype float32 or float64, got complex128"),
    ("MSELoss-empty", lambda: L.MSELoss()(np.zeros(0, f32), np.zeros(0, f32)), ValueError, "MSELoss", "`input` must not be empty"),
    ("MSELoss-bwd-grad", after(lambda: loss_forward(L.MSELoss(), m2(), m2()), lambda loss: loss.backward(np.ones(2))), ValueError, "MSELoss.backward", "`grad_output` must be a scalar, got shape (2,)"),
    ("MAELoss-shape", lambda: L.MAELoss()(m2(3, 4), np.zeros(4, f32)), ValueError, "MAELoss", "`target` shape (4,) must equal `input` shape (3, 4)"),
    ("MAELoss-target-str", lambda: L.MAELoss()(m2(), "a"), TypeError, "MAELoss", "`target` must be an array, got str"),
    ("MAELoss-input-ragged", lambda: L.MAELoss()([[1.0], [2.0, 3.0]], m2(2, 1)), ValueError, "MAELoss", "`input` must be a rectangular numeric array"),
    ("MAELoss-input-float16", lambda: L.MAELoss()(m2(dtype=np.float16), m2()), TypeError, "MAELoss", "`input` must have dtype float32 or float64, got float16"),
    ("MAELoss-bwd-none-shape", after(lambda: loss_forward(L.MAELoss(reduction="none"), m2(), m2()), lambda loss: loss.backward(np.ones(4))), ValueError, "MAELoss.backward", "`grad_output` must have the loss's shape (3, 4), got (4,)"),
    ("BCELoss-input-range", lambda: L.BCELoss()(np.array([1.5], f32), np.array([1.0], f32)), ValueError, "BCELoss", "every entry of `input` must lie in [0, 1], got values in [1.5, 1.5]"),
    ("BCELoss-target-range", lambda: L.BCELoss()(np.array([0.5], f32), np.array([-0.5], f32)), ValueError, "BCELoss", "every entry of `target` must lie in [0, 1]"),
    ("BCELoss-shape", lambda: L.BCELoss()(np.full((2, 2), 0.5, f32), np.ones(2, f32)), ValueError, "BCELoss", "`target` shape (2,) must equal `input` shape (2, 2)"),
    ("BCELoss-weight-shape", lambda: L.BCELoss(weight=np.ones(3))(np.full((2, 2), 0.5, f32), np.ones((2, 2), f32)), ValueError, "BCELoss", "`weight` shape (3,) must broadcast to `input` shape (2, 2)"),
    ("BCEWithLogitsLoss-shape", lambda: L.BCEWithLogitsLoss()(m2(), m2(4, 3)), ValueError, "BCEWithLogitsLoss", "`target` shape (4, 3) must equal `input` shape (3, 4)"),
    ("BCEWithLogitsLoss-pos-weight-shape", lambda: L.BCEWithLogitsLoss(pos_weight=np.ones(3))(m2(2, 2), m2(2, 2)), ValueError, "BCEWithLogitsLoss", "`pos_weight` shape (3,) must broadcast to `input` shape (2, 2)"),
    ("BCEWithLogitsLoss-weight-shape", lambda: L.BCEWithLogitsLoss(weight=np.ones((3, 1, 1)))(m2(2, 2), m2(2, 2)), ValueError, "BCEWithLogitsLoss", "`weight` shape (3, 1, 1) must broadcast to `input` shape (2, 2)"),
    ("BCEWithLogitsLoss-input-object", lambda: L.BCEWithLogitsLoss()(m2().astype(object), m2()), TypeError, "BCEWithLogitsLoss", "`input` must have dtype float32 or float64, got object"),
    ("BCEWithLogitsLoss-reduction", lambda: L.BCEWithLogitsLoss(reduction=None), ValueError, "BCEWithLogitsLoss", "`reduction` must be one of"),
    ("CrossEntropyLoss-label-range", lambda: L.CrossEntropyLoss()(m2(2, 3), np.array([0, 3])), ValueError, "CrossEntropyLoss", "class labels in `target` must lie in [0, 3) (or equal ignore_index=-100), got 3"),
    ("CrossEntropyLoss-label-negative", lambda: L.CrossEntropyLoss()(m2(2, 3), np.array([-1, 0])), ValueError, "CrossEntropyLoss", "class labels in `target` must lie in [0, 3)"),
    ("CrossEntropyLoss-label-nan", lambda: L.CrossEntropyLoss()(m2(2, 3), np.array([0.0, np.nan])), ValueError, "CrossEntropyLoss", "`target` holds NaN or Inf where integer class labels are expected"),
    ("CrossEntropyLoss-label-float", lambda: L.CrossEntropyLoss()(m2(2, 3), np.array([0.0, 2.0])), TypeError, "CrossEntropyLoss", "`target` class labels must have an integer dtype, got float64"),
    ("CrossEntropyLoss-target-bool", lambda: L.CrossEntropyLoss()(m2(2, 3), np.array([True, False])), TypeError, "CrossEntropyLoss", "`target` must be integer class labels or float class probabilities, got dtype bool"),
    ("CrossEntropyLoss-target-shape", lambda: L.CrossEntropyLoss()(m2(2, 3), np.array([0, 1, 2])), ValueError, "CrossEntropyLoss", "`target` shape (3,) must be (2,)"),
    ("CrossEntropyLoss-prob-shape", lambda: L.CrossEntropyLoss()(m2(2, 3), np.full((2, 4), 0.25)), ValueError, "CrossEntropyLoss", "float `target` (class probabilities) shape (2, 4) must equal `input` shape (2, 3)"),
    ("CrossEntropyLoss-prob-range", lambda: L.CrossEntropyLoss()(m2(2, 3), np.full((2, 3), 1.5, f32)), ValueError, "CrossEntropyLoss", "every entry of `target` must lie in [0, 1]"),
    ("CrossEntropyLoss-input-0d", lambda: L.CrossEntropyLoss()(np.float32(1.0), np.array(0)), ValueError, "CrossEntropyLoss", "`input` must be 1-D (C,) or at least 2-D (N, C, ...), got shape ()"),
    ("CrossEntropyLoss-input-int", lambda: L.CrossEntropyLoss()(np.zeros((2, 3), int), np.array([0, 1])), TypeError, "CrossEntropyLoss", "`input` must have dtype float32 or float64, got int64"),
    ("CrossEntropyLoss-unbatched-target", lambda: L.CrossEntropyLoss()(np.zeros(3, f32), np.array([0, 1])), ValueError, "CrossEntropyLoss", "`target` must be a scalar label for an unbatched (C,) input, got shape (2,)"),
    ("CrossEntropyLoss-weight-shape", lambda: L.CrossEntropyLoss(weight=np.ones(4))(m2(2, 3), np.array([0, 1])), ValueError, "CrossEntropyLoss", "`weight` must have shape (3,), got (4,)"),
    ("CrossEntropyLoss-smoothing-range", lambda: L.CrossEntropyLoss(label_smoothing=1.5), ValueError, "CrossEntropyLoss", "`label_smoothing` must be in [0, 1], got 1.5"),
    ("CrossEntropyLoss-smoothing-str", lambda: L.CrossEntropyLoss(label_smoothing="0.1"), TypeError, "CrossEntropyLoss", "`label_smoothing` must be a number in [0, 1], got '0.1'"),
    ("CrossEntropyLoss-from-logits-int", lambda: L.CrossEntropyLoss(from_logits=1), TypeError, "CrossEntropyLoss", "`from_logits` must be a bool, got 1"),
    ("CrossEntropyLoss-ignore-index-str", lambda: L.CrossEntropyLoss(ignore_index="pad"), TypeError, "CrossEntropyLoss", "`ignore_index` must be an int, got 'pad'"),
    ("CrossEntropyLoss-probs-input-range", lambda: L.CrossEntropyLoss(from_logits=False)(np.full((2, 3), 1.5, f32), np.array([0, 1])), ValueError, "CrossEntropyLoss", "every entry of `input` must lie in [0, 1]"),
]

OPTIM_CASES = [
    ("SGD-lr-negative", lambda: optim.SGD(params(), lr=-0.1), ValueError, "SGD", "`lr` must be >= 0.0, got -0.1"),
    ("SGD-lr-nan", lambda: optim.SGD(params(), lr=float("nan")), ValueError, "SGD", "`lr` must be >= 0.0, got nan"),
    ("SGD-lr-str", lambda: optim.SGD(params(), lr="0.1"), TypeError, "SGD", "`lr` must be a number, got '0.1'"),
    ("SGD-momentum-negative", lambda: optim.SGD(params(), lr=0.1, momentum=-0.5), ValueError, "SGD", "`momentum` must be >= 0.0, got -0.5"),
    ("SGD-dampening-high", lambda: optim.SGD(params(), lr=0.1, dampening=1.5), ValueError, "SGD", "`dampening` must be in [0.0, 1.0], got 1.5"),
    ("SGD-weight-decay-negative", lambda: optim.SGD(params(), lr=0.1, weight_decay=-1), ValueError, "SGD", "`weight_decay` must be >= 0.0, got -1.0"),
    ("SGD-nesterov-without-momentum", lambda: optim.SGD(params(), lr=0.1, nesterov=True), ValueError, "SGD", "`nesterov` needs momentum > 0 and dampening = 0"),
    ("SGD-params-empty", lambda: optim.SGD([], lr=0.1), ValueError, "SGD", "`params` is empty"),
    ("SGD-params-int", lambda: optim.SGD([np.zeros(3, int)], lr=0.1), TypeError, "SGD", "`params` must hold float ndarrays", "Optimizer"),
    ("Adam-beta1-one", lambda: optim.Adam(params(), betas=(1.0, 0.999)), ValueError, "Adam", "`betas[0]` must be in [0.0, 1.0), got 1.0"),
    ("Adam-beta2-negative", lambda: optim.Adam(params(), betas=(0.9, -0.1)), ValueError, "Adam", "`betas[1]` must be in [0.0, 1.0), got -0.1"),
    ("Adam-betas-scalar", lambda: optim.Adam(params(), betas=0.9), TypeError, "Adam", "`betas` must be a pair (beta1, beta2), got 0.9"),
    ("Adam-lr-negative", lambda: optim.Adam(params(), lr=-1e-3), ValueError, "Adam", "`lr` must be >= 0.0, got -0.001"),
    ("Adam-eps-negative", lambda: optim.Adam(params(), eps=-1e-8), ValueError, "Adam", "`eps` must be >= 0.0"),
    ("Adam-amsgrad-str", lambda: optim.Adam(params(), amsgrad="yes"), TypeError, "Adam", "`amsgrad` must be a bool, got 'yes'"),
    ("AdamW-weight-decay-negative", lambda: optim.AdamW(params(), weight_decay=-0.01), ValueError, "AdamW", "`weight_decay` must be >= 0.0, got -0.01"),
    ("clip-grad-norm-type", lambda: optim.clip_grad_norm_([np.ones(3)], 1.0, norm_type=0), ValueError, "clip_grad_norm_", "`norm_type` must be > 0, got 0.0"),
    ("clip-grad-int", lambda: optim.clip_grad_norm_([np.ones(3, int)], 1.0), TypeError, "clip_grad_norm_", "every gradient must be a float ndarray"),
    ("StepLR-step-size-zero", lambda: optim.StepLR(optim.SGD(params(), lr=0.1), 0), ValueError, "StepLR", "`step_size` must be >= 1, got 0"),
    ("StepLR-optimizer", lambda: optim.StepLR(3, 1), TypeError, "StepLR", "`optimizer` must be a fastml optimizer, got int"),
    ("CosineAnnealingLR-t-max-zero", lambda: optim.CosineAnnealingLR(optim.SGD(params(), lr=0.1), 0), ValueError, "CosineAnnealingLR", "`T_max` must be >= 1, got 0"),
]

CASES += RECURRENT_CASES + LAYER_CASES + LOSS_CASES + OPTIM_CASES


@pytest.fixture
def no_kernels(monkeypatch):
    """Fail the test if any kernel is looked up *and called*: errors must come first."""
    real = _backend.kernels

    class Tripwire:
        def __init__(self, module):
            self._module = module

        def __getattr__(self, name):
            def kernel(*args, **kwargs):
                if _SETUP["running"]:
                    return getattr(self._module, name)(*args, **kwargs)
                raise AssertionError(f"kernel {self._module.__name__}.{name} ran before the error was raised")
            return kernel

    monkeypatch.setattr(_backend, "kernels", lambda family, name, fn: Tripwire(real(family, name, fn)))


@pytest.mark.parametrize("call,exc,fn,phrase", [pytest.param(*case[1:5], id=case[0]) for case in CASES])
def test_bad_input_raises(call, exc, fn, phrase, no_kernels):
    with pytest.raises(exc, match="(?s)^" + re.escape(f"{fn}: ") + ".*" + re.escape(phrase)):
        call()


FOUNDATION_OPS = ["conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "linear",
                  "relu", "sigmoid", "tanh", "softmax", "log_softmax", "identity"]
# Public names with no arguments to check: the named tuple that load_state_dict returns.
NOTHING_TO_CHECK = {"IncompatibleKeys"}


def _public_callables(module):
    # fastml.functional.grad has no __all__: its public names are the <op>_backward functions
    names = getattr(module, "__all__", None) or [name for name in dir(module)
                                                       if name.endswith("_backward") and not name.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if callable(obj) and not isinstance(obj, types.ModuleType):
            yield name, obj


def test_table_covers_every_public_function_and_layer():
    covered = {case[5] if len(case) > 5 else case[3] for case in CASES}
    missing = []
    for module in (F, grad, nn, L, optim):
        for name, obj in _public_callables(module):
            # an alias (L1Loss = MAELoss) is covered under either name
            if not {name, getattr(obj, "__name__", name)} & covered and name not in NOTHING_TO_CHECK:
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"no error case for {missing}"
    wanted = set(FOUNDATION_OPS) | {f"{op}_backward" for op in FOUNDATION_OPS}
    wanted |= {"conv_output_shape", "pool_output_shape", "receptive_field", "set_backend"}
    assert wanted <= covered, f"no error case for {sorted(wanted - covered)}"
    assert len(CASES) >= 60 + 155


def test_failed_set_backend_keeps_the_old_default():
    before = fastml.get_backend()
    with pytest.raises(ValueError):
        fastml.set_backend("gpu")
    assert fastml.get_backend() == before


def test_context_manager_rejects_bad_name_on_entry():
    with pytest.raises(ValueError, match=r"^backend: `backend` must be one of"), fastml.backend("gpu"):
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
