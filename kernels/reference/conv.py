"""2-D convolution (cross-correlation, as in PyTorch), readable NumPy.

out[n, k, i, j] = bias[k] + sum_{c, r, s} x_pad[n, g*Cg + c, i*sh + r*dh, j*sw + s*dw] * w[k, c, r, s]

where g is the group of output channel k and Cg = C / groups. The loops over
the kernel offsets (r, s) are explicit; each offset contributes one strided
slice of the padded input times one (K, C) slice of the weight.
"""
from __future__ import annotations

import numpy as np


def _pad(x, padding):
    top, bottom, left, right = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _window(x_pad, r, s, stride, dilation, out_size):
    """The input pixels that kernel offset (r, s) meets, for every output position."""
    (sh, sw), (dh, dw), (oh, ow) = stride, dilation, out_size
    h0, w0 = r * dh, s * dw
    return x_pad[:, :, h0:h0 + sh * (oh - 1) + 1:sh, w0:w0 + sw * (ow - 1) + 1:sw]


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, out_size):
    n = x.shape[0]
    k_out, c_group, kh, kw = weight.shape
    k_group = k_out // groups
    x_pad = _pad(x, padding)
    out = np.zeros((n, k_out) + tuple(out_size), dtype=x.dtype)
    for g in range(groups):
        xg = x_pad[:, g * c_group:(g + 1) * c_group]
        wg = weight[g * k_group:(g + 1) * k_group]
        og = out[:, g * k_group:(g + 1) * k_group]
        for r in range(kh):
            for s in range(kw):
                og += np.einsum("nchw,kc->nkhw", _window(xg, r, s, stride, dilation, out_size), wg[:, :, r, s])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv2d_backward(grad_out, x, weight, stride, padding, dilation, groups,
                    need_input=True, need_weight=True, need_bias=True):
    k_out, c_group, kh, kw = weight.shape
    k_group = k_out // groups
    out_size = grad_out.shape[2:]
    x_pad = _pad(x, padding)
    grad_x_pad = np.zeros_like(x_pad) if need_input else None
    grad_w = np.zeros_like(weight) if need_weight else None
    for g in range(groups):
        channels = slice(g * c_group, (g + 1) * c_group)
        outputs = slice(g * k_group, (g + 1) * k_group)
        go = grad_out[:, outputs]
        for r in range(kh):
            for s in range(kw):
                if need_weight:
                    window = _window(x_pad[:, channels], r, s, stride, dilation, out_size)
                    grad_w[outputs, :, r, s] = np.einsum("nkhw,nchw->kc", go, window)
                if need_input:
                    target = _window(grad_x_pad[:, channels], r, s, stride, dilation, out_size)
                    target += np.einsum("nkhw,kc->nchw", go, weight[outputs, :, r, s])
    grad_x = None
    if need_input:
        top, bottom, left, right = padding
        h, w = x.shape[2:]
        grad_x = np.ascontiguousarray(grad_x_pad[:, :, top:top + h, left:left + w])
    grad_b = grad_out.sum(axis=(0, 2, 3)) if need_bias else None
    return grad_x, grad_w, grad_b
