"""Argument validation shared by every public function.

Everything a kernel receives passes through here first: user input is checked
in Python, with errors that name the function, the argument, what was expected
and what was given, before any compiled code runs.
"""
from __future__ import annotations

import numbers

import numpy as np

from .device import add_batch_dim, as_device, contiguous, is_device_array  # noqa: F401 (re-exported)

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(value, fn: str, name: str = "input") -> np.ndarray:
    """Return ``value`` as a float32/float64 ndarray, or raise TypeError.

    Lists and other array-likes are converted with ``np.asarray``; Python
    floats become float64 like NumPy does. Integer, bool, complex, float16 and
    object arrays are rejected rather than silently converted (TypeError);
    ragged nested sequences are a ValueError, as in NumPy and torch.
    """
    if isinstance(value, np.ndarray):
        array = value
    elif is_device_array(value):
        # CUDA device arrays (numba, CuPy, torch CUDA tensors) are viewed in place, never
        # copied to the host: only their dtype and shape are checked.
        array = as_device(value)
    else:
        if value is None or isinstance(value, (str, bytes, dict, set)):
            raise TypeError(f"{fn}: `{name}` must be an array, got {type(value).__name__}")
        try:
            array = np.asarray(value)
        except ValueError as exc:  # ragged nested lists: a bad value (shape), as NumPy and torch say
            raise ValueError(f"{fn}: `{name}` must be a rectangular numeric array, got a ragged sequence ({exc})") from None
        except TypeError as exc:
            raise TypeError(f"{fn}: `{name}` must be a numeric array ({exc})") from None
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{fn}: `{name}` must have dtype float32 or float64, got {array.dtype}"
        )
    return array


def check_ndim(array: np.ndarray, allowed: tuple[int, ...], fn: str, name: str, layout: str) -> None:
    if array.ndim not in allowed:
        expected = " or ".join(f"{n}-D" for n in allowed)
        raise ValueError(
            f"{fn}: `{name}` must be {expected} {layout}, got shape {tuple(array.shape)}"
        )


def check_same_dtype(array: np.ndarray, reference: np.ndarray, fn: str, name: str, ref_name: str = "input") -> None:
    if array.dtype != reference.dtype:
        raise TypeError(
            f"{fn}: `{name}` dtype ({array.dtype}) must equal `{ref_name}` dtype ({reference.dtype})"
        )


def check_nonempty(array: np.ndarray, fn: str, name: str = "input") -> None:
    if array.size == 0:
        raise ValueError(f"{fn}: `{name}` must not be empty, got shape {tuple(array.shape)}")


def as_int(value, fn: str, name: str, minimum: int | None = None) -> int:
    if type(value) is int:  # the common case, without the ABC checks below (a few us per call add up)
        if minimum is not None and value < minimum:
            raise ValueError(f"{fn}: `{name}` must be >= {minimum}, got {value}")
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: `{name}` must be an int, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{fn}: `{name}` must be >= {minimum}, got {value}")
    return value


def as_pair(value, fn: str, name: str, minimum: int | None = None) -> tuple[int, int]:
    """Normalise an int or a pair of ints to a 2-tuple, checking each >= minimum."""
    if type(value) is int and (minimum is None or value >= minimum):  # the common case, fast
        return value, value
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{fn}: `{name}` must be an int or a pair of ints, got {value!r}")
        items = value
    else:
        items = (value, value)
    try:
        pair = tuple(as_int(v, fn, name) for v in items)
    except TypeError:
        raise TypeError(f"{fn}: `{name}` must be an int or a pair of ints, got {value!r}") from None
    if minimum is not None and min(pair) < minimum:
        raise ValueError(f"{fn}: `{name}` must be >= {minimum}, got {value!r}")
    return pair  # type: ignore[return-value]


def check_choice(value, choices, fn: str, name: str):
    if value not in choices:
        raise ValueError(f"{fn}: `{name}` must be one of {list(choices)}, got {value!r}")
    return value


def image_batch(fn: str, input) -> tuple[np.ndarray, bool]:
    """A float NCHW batch, contiguous, from ``(N, C, H, W)`` or unbatched ``(C, H, W)``.

    Returns ``(x, unbatched)``; callers drop the batch axis again when ``unbatched``.
    """
    x = as_float_array(input, fn, "input")
    check_ndim(x, (3, 4), fn, "input", "(N, C, H, W) or (C, H, W)")
    unbatched = x.ndim == 3
    if unbatched:
        x = add_batch_dim(x)
    check_nonempty(x, fn, "input")
    return contiguous(x), unbatched
