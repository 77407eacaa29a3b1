"""Fully connected layer y = x W^T + b, NumPy (x is 2-D: rows, in_features)."""
from __future__ import annotations



def linear_forward(x, weight, bias):
    out = x @ weight.T
    if bias is not None:
        out += bias
    return out


def linear_backward(grad_out, x, weight, need_input=True, need_weight=True, need_bias=True):
    grad_x = grad_out @ weight if need_input else None
    grad_w = grad_out.T @ x if need_weight else None
    grad_b = grad_out.sum(axis=0) if need_bias else None
    return grad_x, grad_w, grad_b
