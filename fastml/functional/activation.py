"""Activations: relu, sigmoid, tanh, softmax, log_softmax, identity.

Elementwise ops accept any shape; softmax/log_softmax normalise along ``dim``.
All are stable for any finite input: sigmoid uses exp(-|x|), softmax and
log_softmax subtract the row maximum.
"""
from __future__ import annotations

import numpy as np

from .. import _backend
from ..device import contiguous as device_contiguous, is_device_array, rows_along as device_rows_along
from .._checks import as_float_array, as_int, check_nonempty


def contiguous(x: np.ndarray) -> np.ndarray:
    """C-contiguous ``x``, keeping 0-D arrays 0-D (np.ascontiguousarray makes them shape (1,))."""
    if is_device_array(x):
        return device_contiguous(x)
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def float_input(fn, input, name="input") -> np.ndarray:
    x = as_float_array(input, fn, name)
    check_nonempty(x, fn, name)
    return contiguous(x)


def _elementwise(fn, op, input, backend):
    x = float_input(fn, input)
    kernels = _backend.kernels("activation", backend, fn)
    return getattr(kernels, op)(x.reshape(-1)).reshape(x.shape)


def relu(input, *, backend=None):
    """max(x, 0) elementwise (NaN stays NaN)."""
    return _elementwise("relu", "relu", input, backend)


def sigmoid(input, *, backend=None):
    """1 / (1 + exp(-x)), computed as exp(-|x|) based branches so it never overflows."""
    return _elementwise("sigmoid", "sigmoid", input, backend)


def tanh(input, *, backend=None):
    """Hyperbolic tangent elementwise."""
    return _elementwise("tanh", "tanh", input, backend)


def identity(input, *, backend=None):
    """The notes' "linear" activation f(x) = x (returns the validated input unchanged)."""
    x = float_input("identity", input)
    _backend.resolve(backend, "identity")  # no kernel, but a bad backend name is still an error
    return x


def normalize_dim(fn, dim, ndim) -> int:
    dim = as_int(dim, fn, "dim")
    span = max(ndim, 1)  # like torch, a 0-D input accepts dim 0 and -1
    if not -span <= dim < span:
        raise ValueError(f"{fn}: `dim` must be in [{-span}, {span - 1}] for a {ndim}-D input, got {dim}")
    return dim % span


def rows_along(x, dim):
    """View ``x`` as a contiguous (rows, x.shape[dim]) array with ``dim`` last, and how to undo it."""
    if x.ndim == 0:
        return x.reshape(1, 1), (lambda out: out.reshape(()))
    if is_device_array(x) and dim != x.ndim - 1:
        return device_rows_along(x, dim)
    moved = np.moveaxis(x, dim, -1)
    rows = np.ascontiguousarray(moved).reshape(-1, x.shape[dim])
    return rows, (lambda out: np.moveaxis(out.reshape(moved.shape), -1, dim))


def _along_dim(fn, op, input, dim, backend):
    x = float_input(fn, input)
    rows, restore = rows_along(x, normalize_dim(fn, dim, x.ndim))
    return contiguous(restore(getattr(_backend.kernels("activation", backend, fn), op)(rows)))


def softmax(input, dim=-1, *, backend=None):
    """exp(x - max) / sum(exp(x - max)) along ``dim``."""
    return _along_dim("softmax", "softmax", input, dim, backend)


def log_softmax(input, dim=-1, *, backend=None):
    """(x - max) - log(sum(exp(x - max))) along ``dim``."""
    return _along_dim("log_softmax", "log_softmax", input, dim, backend)
