"""Gradients of every functional op: ``<op>_backward(grad_output, ...)``.

Each takes the gradient of the loss with respect to the op's output plus what
the op saw (its input, or its output where that is cheaper, as PyTorch's
autograd formulas do) and returns the gradients with respect to its inputs.
Arguments are validated and normalised by the same code as the forward op.
"""
from __future__ import annotations

import numpy as np

from .. import _backend
from .._checks import (
    add_batch_dim,
    as_device,
    as_float_array,
    check_same_dtype,
    image_batch,
    is_device_array,
)
from ..device import count_outside
from .activation import contiguous, float_input, normalize_dim, rows_along
from .conv import conv_spec
from .embedding import embedding_backward  # noqa: F401 (lives beside its op; re-exported as grad.<op>_backward)
from .linear import linear_args
from .pooling import adaptive_output_size, avg_divisor, pool_spec


def _grad_like(fn, grad_output, expected_shape, dtype, unbatched=False):
    g = as_float_array(grad_output, fn, "grad_output")
    if unbatched:
        g = add_batch_dim(g)
    if g.shape != tuple(expected_shape):
        shown = tuple(expected_shape)[1:] if unbatched else tuple(expected_shape)
        raise ValueError(f"{fn}: `grad_output` must have the output's shape {shown}, got {tuple(np.shape(grad_output))}")
    if g.dtype != dtype:
        raise TypeError(f"{fn}: `grad_output` dtype ({g.dtype}) must equal `input` dtype ({dtype})")
    return contiguous(g)


def _unbatch(array, unbatched):
    return array[0] if (unbatched and array is not None) else array


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1,
                    output_mask=(True, True, True), *, backend=None):
    """Gradients of :func:`fastml.functional.conv2d`.

    Returns:
        ``(grad_input, grad_weight, grad_bias)``; an entry is None where
        ``output_mask`` (input, weight, bias) is False.
    """
    fn = "conv2d_backward"
    spec = conv_spec(fn, input, weight, None, stride, padding, dilation, groups)
    g = _grad_like(fn, grad_output, spec.out_shape, spec.x.dtype, spec.unbatched)
    need_input, need_weight, need_bias = (bool(m) for m in output_mask)
    kernels = _backend.kernels("conv", backend, fn)
    grad_x, grad_w, grad_b = kernels.conv2d_backward(g, spec.x, spec.weight, *spec.kernel_args(),
                                                     need_input, need_weight, need_bias)
    return _unbatch(grad_x, spec.unbatched), grad_w, grad_b


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, indices=None, *, backend=None, _own_indices=False):
    """Gradient of :func:`max_pool2d`: each output's gradient goes to its maximum's position.

    Pass the ``indices`` from ``max_pool2d(..., return_indices=True)`` to skip recomputing them.
    (``_own_indices`` is for ``nn.MaxPool2d``: device indices its forward made and never handed
    out skip the range check, which costs a device-to-host sync on every backward.)
    """
    fn = "max_pool2d_backward"
    spec = pool_spec(fn, input, kernel_size, stride, padding, dilation, ceil_mode)
    kernels = _backend.kernels("pool", backend, fn)
    out_shape = spec.x.shape[:2] + spec.out_size
    g = _grad_like(fn, grad_output, out_shape, spec.x.dtype, spec.unbatched)
    indices = _indices(fn, indices, out_shape, spec.unbatched, spec.x.shape[2:], check_device_range=not _own_indices)
    if indices is None:
        _, indices = kernels.max_pool2d_forward(spec.x, spec.kernel, spec.stride, spec.padding,
                                                spec.dilation, spec.out_size)
    return _unbatch(kernels.max_pool2d_backward(g, indices, spec.x.shape[2:]), spec.unbatched)


def _indices(fn, indices, out_shape, unbatched, in_size, check_device_range=True):
    if indices is None:
        return None
    if is_device_array(indices):
        # Device indices (from a cuda max_pool2d) stay there: the range is checked by a counting
        # kernel, and only the count of bad entries comes back to the host.
        idx = contiguous(as_device(indices))
        if unbatched:
            idx = add_batch_dim(idx)
        if idx.dtype != np.int64 or idx.shape != tuple(out_shape):
            raise TypeError(f"{fn}: device `indices` must be int64 with the output's shape {tuple(out_shape)}, "
                            f"got {idx.dtype} {tuple(idx.shape)}")
        plane = in_size[0] * in_size[1]
        bad = count_outside(idx, 0, plane) if check_device_range else 0
        if bad:
            raise ValueError(f"{fn}: `indices` must lie in [0, {plane}) (flat positions in the input plane), "
                             f"got {bad} entries outside")
        return idx
    idx = np.asarray(indices)
    if unbatched:
        idx = idx[None]
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{fn}: `indices` must be an integer array, got dtype {idx.dtype}")
    if idx.shape != tuple(out_shape):
        raise ValueError(f"{fn}: `indices` must have the output's shape {tuple(out_shape)}, got {idx.shape}")
    plane = in_size[0] * in_size[1]
    if idx.size and (idx.min() < 0 or idx.max() >= plane):
        raise ValueError(f"{fn}: `indices` must lie in [0, {plane}) (flat positions in the input plane)")
    return np.ascontiguousarray(idx, dtype=np.int64)


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, backend=None):
    """Gradient of :func:`avg_pool2d`: each output's gradient spread evenly over its window."""
    fn = "avg_pool2d_backward"
    spec = pool_spec(fn, input, kernel_size, stride, padding, 1, ceil_mode)
    g = _grad_like(fn, grad_output, spec.x.shape[:2] + spec.out_size, spec.x.dtype, spec.unbatched)
    kernels = _backend.kernels("pool", backend, fn)
    grad_x = kernels.avg_pool2d_backward(g, spec.x.shape[2:], spec.kernel, spec.stride, spec.padding,
                                         bool(count_include_pad), avg_divisor(fn, divisor_override))
    return _unbatch(grad_x, spec.unbatched)


def adaptive_avg_pool2d_backward(grad_output, input, output_size=None, *, backend=None):
    """Gradient of :func:`adaptive_avg_pool2d` (``output_size`` defaults to grad_output's)."""
    fn = "adaptive_avg_pool2d_backward"
    x, unbatched = image_batch(fn, input)
    if output_size is None:
        output_size = np.shape(grad_output)[-2:]
    out_size = adaptive_output_size(fn, output_size, x.shape[2:])
    g = _grad_like(fn, grad_output, x.shape[:2] + out_size, x.dtype, unbatched)
    grad_x = _backend.kernels("pool", backend, fn).adaptive_avg_pool2d_backward(g, x.shape[2:])
    return _unbatch(grad_x, unbatched)


def adaptive_max_pool2d_backward(grad_output, input, output_size=None, indices=None, *, backend=None):
    """Gradient of :func:`adaptive_max_pool2d`."""
    fn = "adaptive_max_pool2d_backward"
    x, unbatched = image_batch(fn, input)
    if output_size is None:
        output_size = np.shape(grad_output)[-2:]
    out_size = adaptive_output_size(fn, output_size, x.shape[2:])
    out_shape = x.shape[:2] + out_size
    g = _grad_like(fn, grad_output, out_shape, x.dtype, unbatched)
    kernels = _backend.kernels("pool", backend, fn)
    indices = _indices(fn, indices, out_shape, unbatched, x.shape[2:])
    if indices is None:
        _, indices = kernels.adaptive_max_pool2d_forward(x, out_size)
    return _unbatch(kernels.max_pool2d_backward(g, indices, x.shape[2:]), unbatched)


def linear_backward(grad_output, input, weight, output_mask=(True, True, True), *, backend=None):
    """Gradients of :func:`linear`: ``(grad_input, grad_weight, grad_bias)``."""
    fn = "linear_backward"
    rows, weight, _, lead = linear_args(fn, input, weight, None)
    g = as_float_array(grad_output, fn, "grad_output")
    if g.shape != tuple(lead) + (weight.shape[0],):
        raise ValueError(f"{fn}: `grad_output` must have shape {tuple(lead) + (weight.shape[0],)}, got {g.shape}")
    check_same_dtype(g, rows, fn, "grad_output")
    g = contiguous(contiguous(g).reshape(-1, weight.shape[0]))
    need = tuple(bool(m) for m in output_mask)
    grad_x, grad_w, grad_b = _backend.kernels("linear", backend, fn).linear_backward(g, rows, weight, *need)
    if grad_x is not None:
        grad_x = grad_x.reshape(tuple(lead) + (weight.shape[1],))
    return grad_x, grad_w, grad_b


def _elementwise_backward(fn, op, grad_output, saved, saved_name, backend):
    saved = float_input(fn, saved, saved_name)
    g = _grad_like(fn, grad_output, saved.shape, saved.dtype)
    kernels = _backend.kernels("activation", backend, fn)
    return getattr(kernels, op)(g.reshape(-1), saved.reshape(-1)).reshape(saved.shape)


def relu_backward(grad_output, input, *, backend=None):
    """grad * (input > 0)."""
    return _elementwise_backward("relu_backward", "relu_backward", grad_output, input, "input", backend)


def sigmoid_backward(grad_output, output, *, backend=None):
    """grad * y * (1 - y), from the forward output y."""
    return _elementwise_backward("sigmoid_backward", "sigmoid_backward", grad_output, output, "output", backend)


def tanh_backward(grad_output, output, *, backend=None):
    """grad * (1 - y^2), from the forward output y."""
    return _elementwise_backward("tanh_backward", "tanh_backward", grad_output, output, "output", backend)


def identity_backward(grad_output, *, backend=None):
    """The gradient passes through unchanged."""
    g = float_input("identity_backward", grad_output, "grad_output")
    _backend.resolve(backend, "identity_backward")  # no kernel, but a bad backend name is still an error
    return g


def _along_dim_backward(fn, op, grad_output, output, dim, backend):
    y = float_input(fn, output, "output")
    g = _grad_like(fn, grad_output, y.shape, y.dtype)
    dim = normalize_dim(fn, dim, y.ndim)
    g_rows, _ = rows_along(g, dim)
    y_rows, restore = rows_along(y, dim)
    out = getattr(_backend.kernels("activation", backend, fn), op)(g_rows, y_rows)
    return contiguous(restore(out))


def softmax_backward(grad_output, output, dim=-1, *, backend=None):
    """y * (grad - sum(grad * y)) along ``dim``, from the forward output y."""
    return _along_dim_backward("softmax_backward", "softmax_backward", grad_output, output, dim, backend)


def log_softmax_backward(grad_output, output, dim=-1, *, backend=None):
    """grad - exp(y) * sum(grad) along ``dim``, from the forward output y."""
    return _along_dim_backward("log_softmax_backward", "log_softmax_backward", grad_output, output, dim, backend)


# The recurrent gradients live beside their cells in fastml/functional/recurrent.py;
# the contract names every op's gradient fastml.functional.grad.<op>_backward, so
# they are re-exported here.
from .recurrent import (  # noqa: E402, F401
    gru_cell_backward,
    lstm_cell_backward,
    rnn_cell_backward,
    rnn_sequence_backward,
)
