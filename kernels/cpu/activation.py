"""Activations, Numba. Fused loops, parallel over elements (or rows).

Constants are built with ``x.dtype.type(...)`` so float32 stays float32 inside
the loop (a bare Python float literal would promote every operation to float64).

Numba compiles ``np.exp``/``np.tanh`` to scalar libm calls (no SIMD math
library here), 3-6x slower than NumPy's vectorized ufuncs; so the ops built on
exp/tanh run NumPy's ufunc in place for that one step and Numba loops for the
rest (measurements in kernels/config.py). relu and the backward formulas are
pure Numba.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import njit


@njit(parallel=True)
def _relu(x, out):
    zero = x.dtype.type(0)
    for i in prange(x.size):
        v = x[i]
        # `v < 0` is False for NaN, so NaN passes through like in PyTorch.
        out[i] = zero if v < zero else v


@njit(parallel=True)
def _relu_backward(g, x, out):
    zero = x.dtype.type(0)
    for i in prange(x.size):
        # zero where x <= 0 (PyTorch's threshold_backward), so NaN inputs pass the gradient.
        out[i] = zero if x[i] <= zero else g[i]


@njit(parallel=True)
def _neg_abs(x, out):
    for i in prange(x.size):
        out[i] = -abs(x[i])


@njit(parallel=True)
def _sigmoid_from_exp(x, z):
    """z holds exp(-|x|) on entry, sigmoid(x) on exit (the stable two-branch form)."""
    one = x.dtype.type(1)
    for i in prange(x.size):
        e = z[i]
        numerator = one if x[i] >= 0 else e
        z[i] = numerator / (one + e)


@njit(parallel=True)
def _sigmoid_backward(g, y, out):
    one = y.dtype.type(1)
    for i in prange(y.size):
        out[i] = g[i] * y[i] * (one - y[i])


@njit(parallel=True)
def _tanh_backward(g, y, out):
    one = y.dtype.type(1)
    for i in prange(y.size):
        out[i] = g[i] * (one - y[i] * y[i])


@njit(parallel=True)
def _shift_rows(x, out):
    """out = x - (row max), NaN-propagating max; returns nothing, out is filled."""
    rows, n = x.shape
    for r in prange(rows):
        top = x[r, 0]
        for j in range(1, n):
            if x[r, j] > top or np.isnan(x[r, j]):
                top = x[r, j]
                if np.isnan(top):
                    break
        for j in range(n):
            out[r, j] = x[r, j] - top


@njit(parallel=True)
def _normalize_rows(e):
    """e (exp of the shifted rows) divided by its row sums, in place."""
    rows, n = e.shape
    for r in prange(rows):
        total = e.dtype.type(0)
        for j in range(n):
            total += e[r, j]
        inv = e.dtype.type(1) / total
        for j in range(n):
            e[r, j] *= inv


@njit(parallel=True)
def _subtract_log_sum(shifted, e):
    """e (exp of the shifted rows) becomes shifted - log(row sum of e)."""
    rows, n = e.shape
    for r in prange(rows):
        total = e.dtype.type(0)
        for j in range(n):
            total += e[r, j]
        lse = np.log(total)
        for j in range(n):
            e[r, j] = shifted[r, j] - lse


@njit(parallel=True)
def _softmax_rows(x, out, log):
    """All-Numba softmax (one libm exp per element): the serial check for the NumPy-exp path."""
    rows, n = x.shape
    for r in prange(rows):
        top = x[r, 0]
        for j in range(1, n):
            # NaN-propagating max: once top is NaN it stays NaN.
            if x[r, j] > top or np.isnan(x[r, j]):
                top = x[r, j]
                if np.isnan(top):
                    break
        total = x.dtype.type(0)
        for j in range(n):
            total += np.exp(x[r, j] - top)
        if log:
            shift = top + np.log(total)
            for j in range(n):
                out[r, j] = x[r, j] - shift
        else:
            inv = x.dtype.type(1) / total
            for j in range(n):
                out[r, j] = np.exp(x[r, j] - top) * inv


@njit(parallel=True)
def _softmax_rows_backward(g, y, out, log):
    rows, n = y.shape
    for r in prange(rows):
        total = y.dtype.type(0)
        if log:
            for j in range(n):
                total += g[r, j]
            for j in range(n):
                out[r, j] = g[r, j] - np.exp(y[r, j]) * total
        else:
            for j in range(n):
                total += g[r, j] * y[r, j]
            for j in range(n):
                out[r, j] = y[r, j] * (g[r, j] - total)


def _unary(kernel, x):
    out = np.empty_like(x)
    kernel(x, out)
    return out


def _binary(kernel, g, saved):
    out = np.empty_like(saved)
    kernel(g, saved, out)
    return out


def relu(x):
    return _unary(_relu, x)


def relu_backward(grad_out, x):
    return _binary(_relu_backward, grad_out, x)


def sigmoid(x):
    out = np.empty_like(x)
    _neg_abs(x, out)
    np.exp(out, out=out)
    _sigmoid_from_exp(x, out)
    return out


def sigmoid_backward(grad_out, y):
    return _binary(_sigmoid_backward, grad_out, y)


def tanh(x):
    # NumPy's SIMD tanh; Numba's loop calls scalar tanhf (6x slower, kernels/config.py).
    return np.tanh(x)


def tanh_backward(grad_out, y):
    return _binary(_tanh_backward, grad_out, y)


def softmax(x):
    out = np.empty_like(x)
    _shift_rows(x, out)
    np.exp(out, out=out)
    _normalize_rows(out)
    return out


def log_softmax(x):
    shifted = np.empty_like(x)
    _shift_rows(x, shifted)
    out = np.exp(shifted)
    _subtract_log_sum(shifted, out)
    return out


def softmax_backward(grad_out, y):
    out = np.empty_like(y)
    _softmax_rows_backward(grad_out, y, out, False)
    return out


def log_softmax_backward(grad_out, y):
    out = np.empty_like(y)
    _softmax_rows_backward(grad_out, y, out, True)
    return out
