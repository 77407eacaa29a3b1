"""Max, average and adaptive pooling, Numba; parallel over the N*C planes.

Semantics are those of kernels/reference/pool.py (PyTorch's): max scans the
in-bounds part of each window in row order, taking a value if it is greater
than the best so far or NaN; indices are flat positions h*W + w in the plane.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import njit


@njit(parallel=True)
def _max_pool(x, kh, kw, sh, sw, ph, pw, dh, dw, out, idx):
    planes, height, width = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for p in prange(planes):
        for i in range(oh):
            h0 = i * sh - ph
            for j in range(ow):
                w0 = j * sw - pw
                best = x.dtype.type(-np.inf)
                best_at = -1
                for a in range(kh):
                    h = h0 + a * dh
                    if h < 0 or h >= height:
                        continue
                    for b in range(kw):
                        w = w0 + b * dw
                        if w < 0 or w >= width:
                            continue
                        v = x[p, h, w]
                        if best_at < 0 or v > best or np.isnan(v):
                            best = v
                            best_at = h * width + w
                out[p, i, j] = best
                idx[p, i, j] = best_at


@njit(parallel=True)
def _scatter_add(g, idx, grad_x):
    planes, count = g.shape
    for p in prange(planes):
        for o in range(count):
            grad_x[p, idx[p, o]] += g[p, o]


@njit
def _avg_divisor(h0, w0, kh, kw, height, width, ph, pw, count_include_pad, divisor):
    if divisor > 0:
        return divisor
    h1 = min(h0 + kh, height + ph)
    w1 = min(w0 + kw, width + pw)
    if count_include_pad:
        return (h1 - h0) * (w1 - w0)
    return (min(h1, height) - max(h0, 0)) * (min(w1, width) - max(w0, 0))


@njit(parallel=True)
def _avg_pool(x, kh, kw, sh, sw, ph, pw, count_include_pad, divisor, out):
    planes, height, width = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for p in prange(planes):
        for i in range(oh):
            h0 = i * sh - ph
            for j in range(ow):
                w0 = j * sw - pw
                total = x.dtype.type(0)
                for h in range(max(h0, 0), min(h0 + kh, height)):
                    for w in range(max(w0, 0), min(w0 + kw, width)):
                        total += x[p, h, w]
                count = _avg_divisor(h0, w0, kh, kw, height, width, ph, pw, count_include_pad, divisor)
                out[p, i, j] = total / x.dtype.type(count)


@njit(parallel=True)
def _avg_pool_backward(g, kh, kw, sh, sw, ph, pw, count_include_pad, divisor, grad_x):
    planes, height, width = grad_x.shape
    oh, ow = g.shape[1], g.shape[2]
    for p in prange(planes):
        for i in range(oh):
            h0 = i * sh - ph
            for j in range(ow):
                w0 = j * sw - pw
                count = _avg_divisor(h0, w0, kh, kw, height, width, ph, pw, count_include_pad, divisor)
                share = g[p, i, j] / g.dtype.type(count)
                for h in range(max(h0, 0), min(h0 + kh, height)):
                    for w in range(max(w0, 0), min(w0 + kw, width)):
                        grad_x[p, h, w] += share


@njit
def _adaptive_start(i, size, out):
    return (i * size) // out


@njit
def _adaptive_end(i, size, out):
    return -((-(i + 1) * size) // out)


@njit(parallel=True)
def _adaptive_avg(x, out, backward):
    """Forward: x is the input, out the result. Backward: x is grad_out, out is grad_x (zeroed)."""
    if backward:
        planes, height, width = out.shape
        oh, ow = x.shape[1], x.shape[2]
    else:
        planes, height, width = x.shape
        oh, ow = out.shape[1], out.shape[2]
    for p in prange(planes):
        for i in range(oh):
            h0, h1 = _adaptive_start(i, height, oh), _adaptive_end(i, height, oh)
            for j in range(ow):
                w0, w1 = _adaptive_start(j, width, ow), _adaptive_end(j, width, ow)
                area = x.dtype.type((h1 - h0) * (w1 - w0))
                if backward:
                    share = x[p, i, j] / area
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            out[p, h, w] += share
                else:
                    total = x.dtype.type(0)
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            total += x[p, h, w]
                    out[p, i, j] = total / area


@njit(parallel=True)
def _adaptive_max(x, out, idx):
    planes, height, width = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for p in prange(planes):
        for i in range(oh):
            h0, h1 = _adaptive_start(i, height, oh), _adaptive_end(i, height, oh)
            for j in range(ow):
                w0, w1 = _adaptive_start(j, width, ow), _adaptive_end(j, width, ow)
                best = x[p, h0, w0]
                best_at = h0 * width + w0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        v = x[p, h, w]
                        if v > best or np.isnan(v):
                            best = v
                            best_at = h * width + w
                out[p, i, j] = best
                idx[p, i, j] = best_at


def _planes(x):
    return x.reshape((-1,) + x.shape[2:])


def max_pool2d_forward(x, kernel, stride, padding, dilation, out_size):
    n, c = x.shape[:2]
    out = np.empty((n, c) + tuple(out_size), dtype=x.dtype)
    idx = np.empty((n, c) + tuple(out_size), dtype=np.int64)
    _max_pool(_planes(x), *kernel, *stride, *padding, *dilation, _planes(out), _planes(idx))
    return out, idx


def max_pool2d_backward(grad_out, indices, in_size):
    n, c = grad_out.shape[:2]
    grad_x = np.zeros((n * c, in_size[0] * in_size[1]), dtype=grad_out.dtype)
    _scatter_add(grad_out.reshape(n * c, -1), indices.reshape(n * c, -1), grad_x)
    return grad_x.reshape((n, c) + tuple(in_size))


def avg_pool2d_forward(x, kernel, stride, padding, out_size, count_include_pad, divisor):
    n, c = x.shape[:2]
    out = np.empty((n, c) + tuple(out_size), dtype=x.dtype)
    _avg_pool(_planes(x), *kernel, *stride, *padding, count_include_pad, divisor, _planes(out))
    return out


def avg_pool2d_backward(grad_out, in_size, kernel, stride, padding, count_include_pad, divisor):
    n, c = grad_out.shape[:2]
    grad_x = np.zeros((n, c) + tuple(in_size), dtype=grad_out.dtype)
    _avg_pool_backward(_planes(grad_out), *kernel, *stride, *padding, count_include_pad, divisor, _planes(grad_x))
    return grad_x


def adaptive_avg_pool2d_forward(x, out_size):
    out = np.empty(x.shape[:2] + tuple(out_size), dtype=x.dtype)
    _adaptive_avg(_planes(x), _planes(out), False)
    return out


def adaptive_avg_pool2d_backward(grad_out, in_size):
    grad_x = np.zeros(grad_out.shape[:2] + tuple(in_size), dtype=grad_out.dtype)
    _adaptive_avg(_planes(grad_out), _planes(grad_x), True)
    return grad_x


def adaptive_max_pool2d_forward(x, out_size):
    out = np.empty(x.shape[:2] + tuple(out_size), dtype=x.dtype)
    idx = np.empty(x.shape[:2] + tuple(out_size), dtype=np.int64)
    _adaptive_max(_planes(x), _planes(out), _planes(idx))
    return out, idx
