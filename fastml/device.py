"""Moving arrays between the host and the CUDA device, and recognising device arrays.

Device arrays are numba device arrays or any object with
``__cuda_array_interface__`` (CuPy arrays, torch CUDA tensors); they are
viewed, never copied. Nothing here imports ``numba.cuda`` until a device
array is actually made or met, so ``import fastml`` works without CUDA.

On the ``"cuda"`` backend, host (NumPy) inputs are copied to the device once
per call and outputs are numba device arrays: keep data on the device between
ops with :func:`to_device` and bring results back with :func:`to_host`.

Example:
    >>> xd = fastml.to_device(x)                    # one host -> device copy
    >>> yd = fastml.F.relu(fastml.F.conv2d(xd, wd, backend="cuda"), backend="cuda")
    >>> y = fastml.to_host(yd)                      # one device -> host copy
"""
from __future__ import annotations

import numpy as np


def is_device_array(value) -> bool:
    """True for numba device arrays (also the simulator's) and ``__cuda_array_interface__`` objects."""
    if hasattr(value, "__cuda_array_interface__"):
        return True
    # The CUDA simulator's arrays have no __cuda_array_interface__; recognise them by type.
    return type(value).__name__ == "FakeCUDAArray"


def _cuda():
    from numba import cuda

    return cuda


def as_device(value):
    """A numba device-array view of a device array (no copy); ``value`` itself if it already is one."""
    cuda = _cuda()
    if hasattr(value, "__cuda_array_interface__") and not hasattr(value, "copy_to_host"):
        return cuda.as_cuda_array(value)
    return value


def to_device(value, dtype=None):
    """``value`` on the CUDA device: device arrays are viewed as they are, host arrays copied.

    Args:
        value: NumPy array (or array-like), numba device array, or an object with
            ``__cuda_array_interface__``.
        dtype: optional dtype for a host array (device arrays are never converted).

    Returns:
        a numba device array.
    """
    if is_device_array(value):
        return as_device(value)
    _require_cuda("to_device")
    host = np.ascontiguousarray(value, dtype=dtype)
    return _cuda().to_device(host)


def to_host(value) -> np.ndarray:
    """``value`` as a NumPy array: device arrays are copied to the host, host arrays returned as they are."""
    if is_device_array(value):
        return as_device(value).copy_to_host()
    return np.asarray(value)


def _require_cuda(fn):
    from ._backend import cuda_status

    ok, reason = cuda_status()
    if not ok:
        raise RuntimeError(f"{fn}: the CUDA device is unavailable: {reason}")


def contiguous(array):
    """C-contiguous ``array``: NumPy or device, without leaving the device it is on."""
    if is_device_array(array):
        array = as_device(array)
        if array.is_c_contiguous():
            return array
        from .kernels.cuda._util import contiguous_copy

        return contiguous_copy(array)
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def add_batch_dim(array):
    """``array[None]`` for NumPy and device arrays alike (device views have no ``None`` indexing)."""
    if is_device_array(array):
        return contiguous(array).reshape((1,) + tuple(array.shape))
    return array[None]


def rows_along(array, dim):
    """A device array as contiguous ``(rows, shape[dim])`` with ``dim`` last, and how to undo it.

    The device counterpart of moving an axis last with NumPy: one transposing
    copy kernel each way (``dim`` already last needs none).
    """
    from .kernels.cuda._util import swap_last_two

    array = contiguous(array)
    shape = tuple(array.shape)
    outer = int(np.prod(shape[:dim], dtype=np.int64))
    inner = int(np.prod(shape[dim + 1:], dtype=np.int64))
    moved = swap_last_two(array.reshape(outer, shape[dim], inner))
    rows = moved.reshape(outer * inner, shape[dim])

    def restore(out):
        return swap_last_two(out.reshape(outer, inner, shape[dim])).reshape(shape)

    return rows, restore


# --- the few array operations the layers and the recurrent driver need on either side ------------------
def _util():
    from .kernels.cuda import _util

    return _util


def zeros(shape, dtype, on_device: bool):
    """A zero array on the device (``on_device``) or the host."""
    if on_device:
        return _util().zeros(shape, dtype)
    return np.zeros(shape, dtype=dtype)


def full(shape, value, dtype, on_device: bool):
    """An array of ``value`` on the device (``on_device``, made there by a fill kernel: no copy) or the host."""
    if on_device:
        return _util().fill(_util().empty(shape, dtype), value)
    return np.full(shape, value, dtype=dtype)


def empty(shape, dtype, on_device: bool):
    if on_device:
        return _util().empty(shape, dtype)
    return np.empty(shape, dtype=dtype)


def copy_into(dst, src):
    """``dst[...] = src`` where ``dst`` is a view (of a device array, or of a host array)."""
    if is_device_array(dst):
        _util().copy_into(to_device(src), dst)
    else:
        dst[...] = src
    return dst


def add(a, b):
    """``a + b`` (same shape), on the device when ``a`` is a device array."""
    if is_device_array(a):
        return _util().add(contiguous(as_device(a)), contiguous(to_device(b)))
    return a + b


def multiply(a, b):
    """``a * b`` (same shape), on the device when ``a`` is a device array."""
    if is_device_array(a):
        return _util().multiply(contiguous(as_device(a)), contiguous(to_device(b)))
    return a * b


def accumulate(target, value):
    """``target += value`` in place (gradient accumulation), on the device when ``target`` is there."""
    if is_device_array(target):
        _util().axpy(1, contiguous(to_device(value)), target)
    else:
        target += to_host(value)
    return target


def fill_zero(array):
    if is_device_array(array):
        _util().fill(array, 0)
    else:
        array.fill(0)
    return array


def swap_first_two(array):
    """``array.transpose(1, 0, 2)`` of a 3-D array, contiguous (time-major <-> batch-major)."""
    if is_device_array(array):
        return _util().swap_first_two(contiguous(as_device(array)))
    return np.ascontiguousarray(array.transpose(1, 0, 2))


def count_outside(values, low: int, high: int) -> int:
    """How many entries of an integer device array lie outside ``[low, high)``.

    One counting kernel on the device; only the count (one int) comes back to the host.
    """
    return _util().count_outside(contiguous(as_device(values)), low, high)
