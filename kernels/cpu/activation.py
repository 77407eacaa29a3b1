"""Activations, Numba. One fused loop per op, parallel over elements for large arrays.

Constants are built with ``x.dtype.type(...)`` so float32 stays float32 inside
the loop (a bare Python float literal would promote every operation to float64).
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
        out[i] = g[i] if x[i] > zero else zero


@njit(parallel=True)
def _sigmoid(x, out):
    one = x.dtype.type(1)
    for i in prange(x.size):
        v = x[i]
        if v >= 0:
            out[i] = one / (one + np.exp(-v))
        else:
            z = np.exp(v)
            out[i] = z / (one + z)


@njit(parallel=True)
def _sigmoid_backward(g, y, out):
    one = y.dtype.type(1)
    for i in prange(y.size):
        out[i] = g[i] * y[i] * (one - y[i])


@njit(parallel=True)
def _tanh(x, out):
    for i in prange(x.size):
        out[i] = np.tanh(x[i])


@njit(parallel=True)
def _tanh_backward(g, y, out):
    one = y.dtype.type(1)
    for i in prange(y.size):
        out[i] = g[i] * (one - y[i] * y[i])


@njit(parallel=True)
def _softmax_rows(x, out, log):
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
    return _unary(_sigmoid, x)


def sigmoid_backward(grad_out, y):
    return _binary(_sigmoid_backward, grad_out, y)


def tanh(x):
    return _unary(_tanh, x)


def tanh_backward(grad_out, y):
    return _binary(_tanh_backward, grad_out, y)


def softmax(x):
    out = np.empty_like(x)
    _softmax_rows(x, out, False)
    return out


def log_softmax(x):
    out = np.empty_like(x)
    _softmax_rows(x, out, True)
    return out


def softmax_backward(grad_out, y):
    out = np.empty_like(y)
    _softmax_rows_backward(grad_out, y, out, False)
    return out


def log_softmax_backward(grad_out, y):
    out = np.empty_like(y)
    _softmax_rows_backward(grad_out, y, out, True)
    return out
