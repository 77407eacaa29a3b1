"""linear: y = x W^T + b over the last dimension of x."""
from __future__ import annotations

import numpy as np

from .. import _backend
from .._checks import contiguous, as_float_array, check_ndim, check_nonempty, check_same_dtype


def linear_args(fn, input, weight, bias):
    """(x as contiguous 2-D rows, weight, bias, leading shape of x)."""
    x = as_float_array(input, fn, "input")
    if x.ndim < 1:
        raise ValueError(f"{fn}: `input` must be at least 1-D (..., in_features), got shape {tuple(x.shape)}")
    check_nonempty(x, fn, "input")
    weight = as_float_array(weight, fn, "weight")
    check_ndim(weight, (2,), fn, "weight", "(out_features, in_features)")
    check_same_dtype(weight, x, fn, "weight")
    in_features = x.shape[x.ndim - 1]  # not shape[-1]: the CUDA simulator's shapes refuse negative indices
    if in_features != weight.shape[1]:
        raise ValueError(
            f"{fn}: last dimension of `input` (={in_features}) must equal weight.shape[1] (in_features={weight.shape[1]})"
        )
    if bias is not None:
        bias = as_float_array(bias, fn, "bias")
        check_same_dtype(bias, x, fn, "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"{fn}: `bias` must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        bias = contiguous(bias)
    rows = contiguous(contiguous(x).reshape(-1, in_features))
    return rows, contiguous(weight), bias, x.shape[:-1]


def linear(input, weight, bias=None, *, backend=None):
    """Fully connected layer ``y = x @ weight.T + bias``.

    Shape:
        input ``(..., in_features)``, weight ``(out_features, in_features)``,
        bias ``(out_features,)``, output ``(..., out_features)``.
    """
    fn = "linear"
    rows, weight, bias, lead = linear_args(fn, input, weight, bias)
    out = _backend.kernels("linear", backend, fn).linear_forward(rows, weight, bias)
    return out.reshape(lead + (weight.shape[0],))
