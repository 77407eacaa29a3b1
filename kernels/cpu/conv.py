"""2-D convolution on the CPU: im2col lowering in Numba, GEMM in BLAS.

A tile of images is lowered to columns (C/groups*R*S rows, tile*out_h*out_w
columns), multiplied by the weight matrix with one BLAS call per group, and
scattered back to NCHW. The tile size keeps the column buffer under
``config.CONV_WORKSPACE_BYTES``. Backward reuses the same lowering: grad_weight
is a GEMM against the columns, grad_input a GEMM followed by col2im.
"""
from __future__ import annotations

import numpy as np

from .. import config
from .._jit import njit


@njit
def _im2col(x, n0, n1, c0, c_count, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, col):
    """col[(c*kh + r)*kw + s, (n-n0)*oh*ow + i*ow + j] = x_pad[n, c0+c, i*sh + r*dh, j*sw + s*dw]."""
    height, width = x.shape[2], x.shape[3]
    plane = oh * ow
    zero = x.dtype.type(0)
    for c in range(c_count):
        for r in range(kh):
            for s in range(kw):
                row = (c * kh + r) * kw + s
                for n in range(n0, n1):
                    base = (n - n0) * plane
                    for i in range(oh):
                        h = i * sh - pt + r * dh
                        at = base + i * ow
                        if h < 0 or h >= height:
                            for j in range(ow):
                                col[row, at + j] = zero
                            continue
                        for j in range(ow):
                            w = j * sw - pl + s * dw
                            col[row, at + j] = x[n, c0 + c, h, w] if 0 <= w < width else zero


@njit
def _col2im(col, n0, n1, c0, c_count, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, grad_x):
    """Adjoint of _im2col: add each column entry back to the input pixel it came from."""
    height, width = grad_x.shape[2], grad_x.shape[3]
    plane = oh * ow
    for n in range(n0, n1):
        base = (n - n0) * plane
        for c in range(c_count):
            for r in range(kh):
                for s in range(kw):
                    row = (c * kh + r) * kw + s
                    for i in range(oh):
                        h = i * sh - pt + r * dh
                        if h < 0 or h >= height:
                            continue
                        at = base + i * ow
                        for j in range(ow):
                            w = j * sw - pl + s * dw
                            if 0 <= w < width:
                                grad_x[n, c0 + c, h, w] += col[row, at + j]


def _tile(n, rows, plane, itemsize):
    """Images per tile so that the column buffer stays under the workspace cap (at least 1)."""
    per_image = rows * plane * itemsize
    return int(max(1, min(n, config.CONV_WORKSPACE_BYTES // max(per_image, 1))))


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, out_size):
    n = x.shape[0]
    k_out, c_group, kh, kw = weight.shape
    k_group = k_out // groups
    (sh, sw), (pt, _, pl, _), (dh, dw), (oh, ow) = stride, padding, dilation, out_size
    plane = oh * ow
    rows = c_group * kh * kw
    tile = _tile(n, rows, plane, x.itemsize)
    out = np.empty((n, k_out, oh, ow), dtype=x.dtype)
    col = np.empty((rows, tile * plane), dtype=x.dtype)
    w2d = weight.reshape(k_out, rows)
    for n0 in range(0, n, tile):
        n1 = min(n, n0 + tile)
        width = (n1 - n0) * plane
        for g in range(groups):
            _im2col(x, n0, n1, g * c_group, c_group, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, col)
            product = w2d[g * k_group:(g + 1) * k_group] @ col[:, :width]
            out[n0:n1, g * k_group:(g + 1) * k_group] = (
                product.reshape(k_group, n1 - n0, oh, ow).transpose(1, 0, 2, 3))
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv2d_backward(grad_out, x, weight, stride, padding, dilation, groups,
                    need_input=True, need_weight=True, need_bias=True):
    n = x.shape[0]
    k_out, c_group, kh, kw = weight.shape
    k_group = k_out // groups
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, padding, dilation
    oh, ow = grad_out.shape[2:]
    plane = oh * ow
    rows = c_group * kh * kw
    tile = _tile(n, rows, plane, x.itemsize)
    w2d = weight.reshape(k_out, rows)
    grad_x = np.zeros_like(x) if need_input else None
    grad_w = np.zeros((k_out, rows), dtype=x.dtype) if need_weight else None
    col = np.empty((rows, tile * plane), dtype=x.dtype)
    for n0 in range(0, n, tile):
        n1 = min(n, n0 + tile)
        width = (n1 - n0) * plane
        for g in range(groups):
            outputs = slice(g * k_group, (g + 1) * k_group)
            # (k_group, tile*plane), images side by side like the columns
            g2d = grad_out[n0:n1, outputs].transpose(1, 0, 2, 3).reshape(k_group, width)
            if need_weight:
                _im2col(x, n0, n1, g * c_group, c_group, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, col)
                grad_w[outputs] += g2d @ col[:, :width].T
            if need_input:
                dcol = w2d[outputs].T @ g2d
                _col2im(dcol, n0, n1, g * c_group, c_group, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, grad_x)
    grad_b = grad_out.sum(axis=(0, 2, 3)) if need_bias else None
    if grad_w is not None:
        grad_w = grad_w.reshape(weight.shape)
    return grad_x, grad_w, grad_b
