"""embedding: rows of a lookup table picked by integer indices, and its gradient (a scatter-add).

Indices are validated here, before any kernel runs, on every backend: an
integer dtype and every entry in ``[0, num_embeddings)``. Host indices are
checked on the host (and copied to the device once on the ``"cuda"``
backend). Device indices stay on the device: a counting kernel finds the
entries out of range and only that count (one int) comes back to the host;
only when it is not zero are the indices copied back, for the error message's
minimum and maximum.
"""
from __future__ import annotations

import numpy as np

from .. import _backend
from .._checks import as_float_array, as_int, check_ndim, contiguous, is_device_array
from ..device import as_device, count_outside, to_device, to_host


def _padding(fn, padding_idx, num_embeddings) -> int:
    """``padding_idx`` as a row in ``[0, num_embeddings)``, or -1 for None (negative counts from the end, as torch)."""
    if padding_idx is None:
        return -1
    padding_idx = as_int(padding_idx, fn, "padding_idx")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{fn}: `padding_idx` must be within num_embeddings (={num_embeddings}), got {padding_idx}")
    return padding_idx % num_embeddings


def embedding_indices(fn, input, num_embeddings, on_device):
    """Validated indices: ``(flat, shape)``, flat contiguous (int64 when they came from the host).

    On ``on_device`` the flat indices are a device array (host indices copied once).
    """
    if hasattr(input, "detach"):  # a torch tensor
        input = input.detach().cpu().numpy()
    if is_device_array(input):
        idx = contiguous(as_device(input))
        if idx.dtype.kind not in "iu":
            raise TypeError(f"{fn}: `input` must be an integer array of indices, got dtype {idx.dtype}")
        shape = tuple(idx.shape)
        flat = idx.reshape(idx.size)
        if idx.size and count_outside(flat, 0, num_embeddings):
            values = to_host(flat)  # the error path only: the range for the message
            raise ValueError(f"{fn}: indices in `input` must lie in [0, {num_embeddings}), got values in "
                             f"[{values.min()}, {values.max()}]")
        return (flat if on_device else to_host(flat)), shape
    if input is None or isinstance(input, (str, bytes, dict, set)):
        raise TypeError(f"{fn}: `input` must be an integer array of indices, got {type(input).__name__}")
    try:
        idx = np.asarray(input)
    except ValueError:
        raise ValueError(f"{fn}: `input` must be a rectangular integer array of indices, got a ragged sequence") \
            from None
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{fn}: `input` must be an integer array of indices, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= num_embeddings):
        raise ValueError(f"{fn}: indices in `input` must lie in [0, {num_embeddings}), got values in "
                         f"[{idx.min()}, {idx.max()}]")
    flat = np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)
    return (to_device(flat) if on_device else flat), idx.shape


def _weight(fn, weight):
    weight = as_float_array(weight, fn, "weight")
    check_ndim(weight, (2,), fn, "weight", "(num_embeddings, embedding_dim)")
    return weight


def embedding(input, weight, padding_idx=None, *, backend=None, fn="embedding"):
    """Look up rows of ``weight``: ``out[...] = weight[input[...]]``, as ``torch.nn.functional.embedding``.

    Args:
        input: integer indices of any shape, each in ``[0, num_embeddings)``: a NumPy array (or array-like),
            or on the ``"cuda"`` backend also a device array (range-checked on the device, see the module).
        weight: ``(num_embeddings, embedding_dim)`` float32 or float64.
        padding_idx: a row that receives no gradient (see :func:`embedding_backward`); the lookup itself
            returns that row like any other.

    Shape:
        input ``(*)``, output ``(*, embedding_dim)``, output dtype = weight dtype.

    Returns:
        the looked-up rows (a device array on ``"cuda"``).

    Example:
        >>> fastml.F.embedding(np.array([[0, 2], [1, 0]]), np.eye(3, dtype=np.float32)).shape
        (2, 2, 3)
    """
    name = _backend.resolve(backend, fn)
    weight = _weight(fn, weight)
    _padding(fn, padding_idx, weight.shape[0])
    flat, shape = embedding_indices(fn, input, weight.shape[0], name == "cuda")
    out = _backend.kernels("embedding", name, fn).embedding_forward(flat, contiguous(weight))
    return out.reshape(tuple(shape) + (weight.shape[1],))


def embedding_backward(grad_output, input, weight, padding_idx=None, *, backend=None, fn="embedding_backward"):
    """Gradient of :func:`embedding` with respect to ``weight``: a scatter-add of ``grad_output``'s rows.

    ``grad_weight[input[...]] += grad_output[...]``; rows picked several times add up, the ``padding_idx``
    row stays zero. ``weight`` gives only the table's shape and dtype (its values are not read).

    Returns:
        ``grad_weight`` with ``weight``'s shape (a device array on ``"cuda"``).
    """
    name = _backend.resolve(backend, fn)
    weight = _weight(fn, weight)
    num_embeddings, dim = weight.shape
    padding = _padding(fn, padding_idx, num_embeddings)
    flat, shape = embedding_indices(fn, input, num_embeddings, name == "cuda")
    g = as_float_array(grad_output, fn, "grad_output")
    expected = tuple(shape) + (dim,)
    if tuple(g.shape) != expected:
        raise ValueError(f"{fn}: `grad_output` must have shape {expected}, got {tuple(g.shape)}")
    if g.dtype != weight.dtype:
        raise TypeError(f"{fn}: `grad_output` dtype ({g.dtype}) must equal `weight` dtype ({weight.dtype})")
    g = contiguous(g).reshape(flat.shape[0], dim)
    return _backend.kernels("embedding", name, fn).embedding_backward(g, flat, num_embeddings, padding)


__all__ = ["embedding", "embedding_backward", "embedding_indices"]
