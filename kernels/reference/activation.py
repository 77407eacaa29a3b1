"""Activations, readable NumPy, in their numerically stable forms.

softmax and log_softmax work on the last axis of a 2-D (rows, classes) array;
fastml.functional moves the requested `dim` there first.
"""
from __future__ import annotations

import numpy as np


def relu(x):
    return np.maximum(x, 0).astype(x.dtype)


def relu_backward(grad_out, x):
    # PyTorch's threshold_backward: zero where x <= 0, else the gradient; a NaN
    # input is not <= 0, so its gradient passes through.
    return np.where(x <= 0, 0, grad_out).astype(grad_out.dtype)


def sigmoid(x):
    # sigma(x) = 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0: exp never overflows.
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype)


def sigmoid_backward(grad_out, y):
    return grad_out * y * (1 - y)


def tanh(x):
    return np.tanh(x)


def tanh_backward(grad_out, y):
    return grad_out * (1 - y * y)


def softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(grad_out, y):
    return y * (grad_out - (grad_out * y).sum(axis=-1, keepdims=True))


def log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_softmax_backward(grad_out, y):
    return grad_out - np.exp(y) * grad_out.sum(axis=-1, keepdims=True)
