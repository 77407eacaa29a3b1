"""Max, average and adaptive pooling, readable NumPy (the spec for the other backends).

Windows: output (i, j) covers input rows ``i*sh - ph + a*dh`` for a in
range(kh) (likewise columns); positions outside the input are padding.

* Max pooling looks only at in-bounds positions, scanning the window in row
  order and taking a value when it is greater than the best so far or is NaN
  (PyTorch's rule): ties keep the first index, a NaN wins and propagates.
  Indices are flat positions ``h*W + w`` within the input plane.
* Average pooling, as PyTorch: the divisor is the window clipped to the padded
  input when ``count_include_pad`` (else clipped to the input), unless a
  ``divisor`` is given.
* Adaptive pooling: output i covers rows ``floor(i*H/oh)`` to ``ceil((i+1)*H/oh)``.
"""
from __future__ import annotations

import numpy as np


def _window_positions(size, out, kernel, stride, pad, dilation):
    """Input coordinates (out, kernel) of every window, and which are in bounds."""
    pos = np.arange(out)[:, None] * stride - pad + np.arange(kernel)[None, :] * dilation
    valid = (pos >= 0) & (pos < size)
    return np.clip(pos, 0, size - 1), valid


def _gather(x, kernel, stride, padding, dilation, out_size):
    """Windows as (N, C, oh, ow, kh*kw) values, flat input indices and validity."""
    h, w = x.shape[2:]
    rows, rows_ok = _window_positions(h, out_size[0], kernel[0], stride[0], padding[0], dilation[0])
    cols, cols_ok = _window_positions(w, out_size[1], kernel[1], stride[1], padding[1], dilation[1])
    # (oh, ow, kh, kw) index grids
    r = rows[:, None, :, None]
    c = cols[None, :, None, :]
    ok = rows_ok[:, None, :, None] & cols_ok[None, :, None, :]
    shape = out_size + (kernel[0] * kernel[1],)
    values = x[:, :, r, c].reshape(x.shape[:2] + shape)
    flat = np.broadcast_to(r * w + c, ok.shape).reshape(shape)
    return values, flat, ok.reshape(shape)


def _max_over_windows(values, flat, ok):
    """PyTorch's scan: take v if v > best or v is NaN; start at the first valid position."""
    masked = np.where(ok, values, -np.inf)
    nan = np.isnan(masked)
    best = np.max(np.where(nan, -np.inf, masked), axis=-1, keepdims=True)
    is_best = ok & (masked == best)
    pick = np.argmax(is_best, axis=-1)
    any_nan = nan.any(axis=-1)
    last_nan = nan.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    pick = np.where(any_nan, last_nan, pick)
    out = np.take_along_axis(values, pick[..., None], axis=-1)[..., 0]
    indices = np.take_along_axis(np.broadcast_to(flat, values.shape), pick[..., None], axis=-1)[..., 0]
    return out, indices.astype(np.int64)


def max_pool2d_forward(x, kernel, stride, padding, dilation, out_size, *, indices=True):
    """(out, indices: flat h*W + w of each maximum, or None when not asked for)."""
    values, flat, ok = _gather(x, kernel, stride, padding, dilation, tuple(out_size))
    out, idx = _max_over_windows(values, flat, ok)
    return out, (idx if indices else None)


def max_pool2d_backward(grad_out, indices, in_size):
    """Scatter each output gradient to the input position its max came from."""
    n, c = grad_out.shape[:2]
    plane = in_size[0] * in_size[1]
    grad_x = np.zeros((n * c, plane), dtype=grad_out.dtype)
    rows = np.repeat(np.arange(n * c), indices[0, 0].size)
    np.add.at(grad_x, (rows, indices.reshape(-1)), grad_out.reshape(-1))
    return grad_x.reshape((n, c) + tuple(in_size))


def _avg_divisors(in_size, out_size, kernel, stride, padding, count_include_pad):
    """(oh, ow) divisor of every window, PyTorch's rule."""
    sizes = []
    for n, o, k, s, p in zip(in_size, out_size, kernel, stride, padding):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        padded_len = end - start
        clipped_len = np.minimum(end, n) - np.maximum(start, 0)
        sizes.append(padded_len if count_include_pad else clipped_len)
    return np.outer(sizes[0], sizes[1])


def avg_pool2d_forward(x, kernel, stride, padding, out_size, count_include_pad, divisor):
    values, _, ok = _gather(x, kernel, stride, padding, (1, 1), tuple(out_size))
    total = np.where(ok, values, 0).sum(axis=-1)
    if not divisor:
        divisor = _avg_divisors(x.shape[2:], out_size, kernel, stride, padding, count_include_pad)
    return (total / divisor).astype(x.dtype)


def avg_pool2d_backward(grad_out, in_size, kernel, stride, padding, count_include_pad, divisor):
    out_size = grad_out.shape[2:]
    if not divisor:
        divisor = _avg_divisors(in_size, out_size, kernel, stride, padding, count_include_pad)
    share = grad_out / divisor
    n, c = grad_out.shape[:2]
    grad_x = np.zeros((n, c) + tuple(in_size), dtype=grad_out.dtype)
    rows, rows_ok = _window_positions(in_size[0], out_size[0], kernel[0], stride[0], padding[0], 1)
    cols, cols_ok = _window_positions(in_size[1], out_size[1], kernel[1], stride[1], padding[1], 1)
    for i in range(out_size[0]):
        for j in range(out_size[1]):
            rr = rows[i][rows_ok[i]]
            cc = cols[j][cols_ok[j]]
            grad_x[:, :, rr[:, None], cc[None, :]] += share[:, :, i, j][:, :, None, None]
    return grad_x.astype(grad_out.dtype)


def adaptive_bounds(size, out):
    """Start (inclusive) and end (exclusive) of each adaptive window along one dimension."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def adaptive_avg_pool2d_forward(x, out_size):
    (h0, h1), (w0, w1) = adaptive_bounds(x.shape[2], out_size[0]), adaptive_bounds(x.shape[3], out_size[1])
    out = np.empty(x.shape[:2] + tuple(out_size), dtype=x.dtype)
    for i in range(out_size[0]):
        for j in range(out_size[1]):
            out[:, :, i, j] = x[:, :, h0[i]:h1[i], w0[j]:w1[j]].mean(axis=(2, 3))
    return out


def adaptive_avg_pool2d_backward(grad_out, in_size):
    out_size = grad_out.shape[2:]
    (h0, h1), (w0, w1) = adaptive_bounds(in_size[0], out_size[0]), adaptive_bounds(in_size[1], out_size[1])
    grad_x = np.zeros(grad_out.shape[:2] + tuple(in_size), dtype=grad_out.dtype)
    for i in range(out_size[0]):
        for j in range(out_size[1]):
            area = (h1[i] - h0[i]) * (w1[j] - w0[j])
            grad_x[:, :, h0[i]:h1[i], w0[j]:w1[j]] += (grad_out[:, :, i, j] / area)[:, :, None, None]
    return grad_x


def adaptive_max_pool2d_forward(x, out_size):
    (h0, h1), (w0, w1) = adaptive_bounds(x.shape[2], out_size[0]), adaptive_bounds(x.shape[3], out_size[1])
    width = x.shape[3]
    out = np.empty(x.shape[:2] + tuple(out_size), dtype=x.dtype)
    indices = np.empty(x.shape[:2] + tuple(out_size), dtype=np.int64)
    for i in range(out_size[0]):
        for j in range(out_size[1]):
            window = x[:, :, h0[i]:h1[i], w0[j]:w1[j]]
            rows, cols = np.meshgrid(np.arange(h0[i], h1[i]), np.arange(w0[j], w1[j]), indexing="ij")
            flat = (rows * width + cols).reshape(-1)
            values = window.reshape(window.shape[:2] + (-1,))
            best, index = _max_over_windows(values, flat, np.ones(flat.shape, dtype=bool))
            out[:, :, i, j], indices[:, :, i, j] = best, index
    return out, indices
