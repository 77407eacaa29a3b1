"""Fully connected layer on the CUDA device: y = x W^T + b as one tiled GEMM (x 2-D: rows, in_features)."""
from __future__ import annotations

from ._util import broadcast_rows, column_sums, empty, gemm, to_device


def linear_forward(x, weight, bias):
    x, weight = to_device(x), to_device(weight)
    out = empty((x.shape[0], weight.shape[0]), x.dtype)
    if bias is None:
        return gemm(x, weight, out, trans_b=True)
    broadcast_rows(to_device(bias), out)  # out = bias in every row, then out += x W^T
    return gemm(x, weight, out, trans_b=True, beta=1.0)


def linear_backward(grad_out, x, weight, need_input=True, need_weight=True, need_bias=True):
    grad_out, x, weight = to_device(grad_out), to_device(x), to_device(weight)
    grad_x = gemm(grad_out, weight, empty((x.shape[0], weight.shape[1]), x.dtype)) if need_input else None
    grad_w = gemm(grad_out, x, empty(weight.shape, x.dtype), trans_a=True) if need_weight else None
    grad_b = column_sums(grad_out) if need_bias else None
    return grad_x, grad_w, grad_b


__all__ = ["linear_forward", "linear_backward"]
