"""Max, average and adaptive pooling on the CUDA device, one thread per output (forward) or input (backward).

Same functions and signatures as ``kernels/reference/pool.py`` and the same
rules: max pooling scans each window in row order over in-bounds positions,
taking a value when it is greater than the best so far or NaN (ties keep the
first index, NaN propagates); indices are flat ``h*W + w`` positions within
the plane (int64). Average pooling uses PyTorch's divisor. Backward passes
gather over the windows that cover an input pixel (no atomics), except max
pooling's, which scatters to the recorded indices with atomic adds.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from numba import cuda

from .. import config
from ._util import blocks_for, empty, per_dtype, to_device, zeros


def _launch(kernel, count, *args):
    threads = config.CUDA_THREADS_PER_BLOCK
    kernel[blocks_for(count, threads), threads](*args)


# Integer min/max as conditionals: builtin min()/max() of two ints fail to compile for the CUDA
# target in numba 0.68 ("Signature mismatch"), though the simulator runs them.
@cuda.jit(device=True)
def _smaller(a, b):
    return a if a < b else b


@cuda.jit(device=True)
def _larger(a, b):
    return a if a > b else b




@per_dtype
def _kernels(nb_type):
    """The pooling kernels for one dtype: constants and divisors typed as the data (no float64 promotion)."""
    zero = nb_type(0)

    @cuda.jit
    def _max_pool(x, kh, kw, sh, sw, ph, pw, dh, dw, out, indices):
        i = cuda.grid(1)
        n_planes, out_h, out_w = out.shape[0] * out.shape[1], out.shape[2], out.shape[3]
        if i >= n_planes * out_h * out_w:
            return
        oj = i % out_w
        oi = (i // out_w) % out_h
        plane = i // (out_w * out_h)
        n, c = plane // out.shape[1], plane % out.shape[1]
        height, width = x.shape[2], x.shape[3]
        best = nb_type(-math.inf)
        best_index = -1
        for a in range(kh):
            r = oi * sh - ph + a * dh
            if r < 0 or r >= height:
                continue
            for b in range(kw):
                q = oj * sw - pw + b * dw
                if q < 0 or q >= width:
                    continue
                v = x[n, c, r, q]
                # The first in-bounds value is taken whatever it is (PyTorch starts at -inf
                # with that index); after it, greater or NaN wins.
                if best_index < 0 or v > best or v != v:
                    best = v
                    best_index = r * width + q
        out[n, c, oi, oj] = best
        indices[n, c, oi, oj] = best_index

    @cuda.jit
    def _max_pool_backward(grad_out, indices, grad_x):
        # grad_out, indices: (planes, out_pixels); grad_x: (planes, in_pixels)
        i = cuda.grid(1)
        pixels = grad_out.shape[1]
        if i < grad_out.shape[0] * pixels:
            plane, p = i // pixels, i % pixels
            cuda.atomic.add(grad_x, (plane, indices[plane, p]), grad_out[plane, p])

    @cuda.jit(device=True)
    def _avg_window_size(o, size, k, s, p, count_include_pad):
        start = o * s - p
        end = _smaller(start + k, size + p)
        if count_include_pad:
            return end - start
        return _smaller(end, size) - _larger(start, 0)

    @cuda.jit
    def _avg_pool(x, kh, kw, sh, sw, ph, pw, count_include_pad, divisor, out):
        i = cuda.grid(1)
        out_h, out_w = out.shape[2], out.shape[3]
        if i >= out.shape[0] * out.shape[1] * out_h * out_w:
            return
        oj = i % out_w
        oi = (i // out_w) % out_h
        plane = i // (out_w * out_h)
        n, c = plane // out.shape[1], plane % out.shape[1]
        height, width = x.shape[2], x.shape[3]
        total = zero  # not x * 0: NaN * 0 is NaN
        for a in range(kh):
            r = oi * sh - ph + a
            if 0 <= r < height:
                for b in range(kw):
                    q = oj * sw - pw + b
                    if 0 <= q < width:
                        total += x[n, c, r, q]
        if divisor == 0:
            count = (_avg_window_size(oi, height, kh, sh, ph, count_include_pad)
                     * _avg_window_size(oj, width, kw, sw, pw, count_include_pad))
        else:
            count = divisor
        out[n, c, oi, oj] = total / nb_type(count)

    @cuda.jit
    def _avg_pool_backward(grad_out, kh, kw, sh, sw, ph, pw, count_include_pad, divisor, grad_x):
        i = cuda.grid(1)
        height, width = grad_x.shape[2], grad_x.shape[3]
        if i >= grad_x.shape[0] * grad_x.shape[1] * height * width:
            return
        q = i % width
        r = (i // width) % height
        plane = i // (width * height)
        n, c = plane // grad_x.shape[1], plane % grad_x.shape[1]
        out_h, out_w = grad_out.shape[2], grad_out.shape[3]
        # windows oi with oi*sh - ph <= r < oi*sh - ph + kh
        lo_i = _larger(0, (r + ph - kh + sh) // sh)
        hi_i = _smaller(out_h - 1, (r + ph) // sh)
        lo_j = _larger(0, (q + pw - kw + sw) // sw)
        hi_j = _smaller(out_w - 1, (q + pw) // sw)
        total = zero
        for oi in range(lo_i, hi_i + 1):
            for oj in range(lo_j, hi_j + 1):
                if divisor == 0:
                    count = (_avg_window_size(oi, height, kh, sh, ph, count_include_pad)
                             * _avg_window_size(oj, width, kw, sw, pw, count_include_pad))
                else:
                    count = divisor
                total += grad_out[n, c, oi, oj] / nb_type(count)
        grad_x[n, c, r, q] = total

    @cuda.jit(device=True)
    def _adaptive_start(o, size, out):
        return (o * size) // out

    @cuda.jit(device=True)
    def _adaptive_end(o, size, out):
        return ((o + 1) * size + out - 1) // out

    @cuda.jit
    def _adaptive_pool(x, take_max, out, indices):
        i = cuda.grid(1)
        out_h, out_w = out.shape[2], out.shape[3]
        if i >= out.shape[0] * out.shape[1] * out_h * out_w:
            return
        oj = i % out_w
        oi = (i // out_w) % out_h
        plane = i // (out_w * out_h)
        n, c = plane // out.shape[1], plane % out.shape[1]
        height, width = x.shape[2], x.shape[3]
        r0, r1 = _adaptive_start(oi, height, out_h), _adaptive_end(oi, height, out_h)
        q0, q1 = _adaptive_start(oj, width, out_w), _adaptive_end(oj, width, out_w)
        if take_max:
            best = x[n, c, r0, q0]
            best_index = r0 * width + q0
            for r in range(r0, r1):
                for q in range(q0, q1):
                    v = x[n, c, r, q]
                    if v > best or v != v:
                        best = v
                        best_index = r * width + q
            out[n, c, oi, oj] = best
            indices[n, c, oi, oj] = best_index
        else:
            total = zero
            for r in range(r0, r1):
                for q in range(q0, q1):
                    total += x[n, c, r, q]
            out[n, c, oi, oj] = total / nb_type((r1 - r0) * (q1 - q0))

    @cuda.jit
    def _adaptive_avg_backward(grad_out, grad_x):
        i = cuda.grid(1)
        height, width = grad_x.shape[2], grad_x.shape[3]
        if i >= grad_x.shape[0] * grad_x.shape[1] * height * width:
            return
        q = i % width
        r = (i // width) % height
        plane = i // (width * height)
        n, c = plane // grad_x.shape[1], plane % grad_x.shape[1]
        out_h, out_w = grad_out.shape[2], grad_out.shape[3]
        total = zero
        for oi in range(out_h):
            r0, r1 = _adaptive_start(oi, height, out_h), _adaptive_end(oi, height, out_h)
            if r0 <= r < r1:
                for oj in range(out_w):
                    q0, q1 = _adaptive_start(oj, width, out_w), _adaptive_end(oj, width, out_w)
                    if q0 <= q < q1:
                        total += grad_out[n, c, oi, oj] / nb_type((r1 - r0) * (q1 - q0))
        grad_x[n, c, r, q] = total

    kernels = SimpleNamespace(max_pool=_max_pool, max_pool_backward=_max_pool_backward, avg_pool=_avg_pool,
                              avg_pool_backward=_avg_pool_backward, adaptive_pool=_adaptive_pool,
                              adaptive_avg_backward=_adaptive_avg_backward)
    return kernels


def max_pool2d_forward(x, kernel, stride, padding, dilation, out_size, *, indices=True):
    x = to_device(x)
    shape = (x.shape[0], x.shape[1]) + tuple(out_size)
    out, idx = empty(shape, x.dtype), empty(shape, np.int64)  # the kernel always writes both
    _launch(_kernels(x.dtype).max_pool, out.size, x, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1],
            dilation[0], dilation[1], out, idx)
    return out, (idx if indices else None)


def max_pool2d_backward(grad_out, indices, in_size):
    grad_out, indices = to_device(grad_out), to_device(indices)
    n, c = grad_out.shape[:2]
    grad_x = zeros((n, c) + tuple(in_size), grad_out.dtype)
    planes = n * c
    _launch(_kernels(grad_out.dtype).max_pool_backward, grad_out.size, grad_out.reshape(planes, grad_out.size // planes),
            indices.reshape(planes, grad_out.size // planes), grad_x.reshape(planes, in_size[0] * in_size[1]))
    return grad_x


def avg_pool2d_forward(x, kernel, stride, padding, out_size, count_include_pad, divisor):
    x = to_device(x)
    out = empty((x.shape[0], x.shape[1]) + tuple(out_size), x.dtype)
    _launch(_kernels(x.dtype).avg_pool, out.size, x, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1],
            bool(count_include_pad), int(divisor), out)
    return out


def avg_pool2d_backward(grad_out, in_size, kernel, stride, padding, count_include_pad, divisor):
    grad_out = to_device(grad_out)
    grad_x = empty(tuple(grad_out.shape[:2]) + tuple(in_size), grad_out.dtype)
    _launch(_kernels(grad_out.dtype).avg_pool_backward, grad_x.size, grad_out, kernel[0], kernel[1], stride[0], stride[1],
            padding[0], padding[1], bool(count_include_pad), int(divisor), grad_x)
    return grad_x


def adaptive_avg_pool2d_forward(x, out_size):
    x = to_device(x)
    out = empty((x.shape[0], x.shape[1]) + tuple(out_size), x.dtype)
    _launch(_kernels(x.dtype).adaptive_pool, out.size, x, False, out, empty((1, 1, 1, 1), np.int64))
    return out


def adaptive_max_pool2d_forward(x, out_size):
    x = to_device(x)
    shape = (x.shape[0], x.shape[1]) + tuple(out_size)
    out, indices = empty(shape, x.dtype), empty(shape, np.int64)
    _launch(_kernels(x.dtype).adaptive_pool, out.size, x, True, out, indices)
    return out, indices


def adaptive_avg_pool2d_backward(grad_out, in_size):
    grad_out = to_device(grad_out)
    grad_x = empty(tuple(grad_out.shape[:2]) + tuple(in_size), grad_out.dtype)
    _launch(_kernels(grad_out.dtype).adaptive_avg_backward, grad_x.size, grad_out, grad_x)
    return grad_x
