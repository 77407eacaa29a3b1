"""Max/average/adaptive pooling: validation, normalisation and dispatch."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _backend
from .._checks import as_int, as_pair, image_batch
from ..shapes import pool_output_sizes


@dataclass(frozen=True)
class PoolSpec:
    x: np.ndarray
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out_size: tuple[int, int]
    unbatched: bool


def pool_spec(fn, input, kernel_size, stride, padding, dilation, ceil_mode) -> PoolSpec:
    x, unbatched = image_batch(fn, input)
    kernel = as_pair(kernel_size, fn, "kernel_size", minimum=1)
    stride = kernel if stride is None or stride == () or stride == [] else as_pair(stride, fn, "stride", minimum=1)
    padding = as_pair(padding, fn, "padding", minimum=0)
    dilation = as_pair(dilation, fn, "dilation", minimum=1)
    out_size = pool_output_sizes(fn, x.shape[2:], kernel, stride, padding, dilation, ceil_mode)
    return PoolSpec(x, kernel, stride, padding, dilation, out_size, unbatched)  # type: ignore[arg-type]


def _squeeze(array, unbatched):
    return array[0] if unbatched else array


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, backend=None):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    Args:
        input: ``(N, C, H, W)`` or ``(C, H, W)``.
        kernel_size: int or pair. stride: defaults to ``kernel_size``.
        padding: implicit ``-inf`` padding, at most half the effective kernel.
        dilation: spacing between window elements. ceil_mode: ceil in the output size.
        return_indices: also return flat indices ``h*W + w`` of the maxima (for backward / unpooling).

    Shape:
        ``out_h = floor((H + 2p - d*(k-1) - 1) / s) + 1`` (ceil with ``ceil_mode``).
        Ties pick the first index; NaN propagates.

    Example:
        >>> x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
        >>> max_pool2d(x, 2, stride=1)[0, 0]
        array([[4., 5.],
               [7., 8.]], dtype=float32)
    """
    fn = "max_pool2d"
    spec = pool_spec(fn, input, kernel_size, stride, padding, dilation, ceil_mode)
    kernels = _backend.kernels("pool", backend, fn)
    out, indices = kernels.max_pool2d_forward(spec.x, spec.kernel, spec.stride, spec.padding, spec.dilation,
                                              spec.out_size, indices=return_indices)
    out = _squeeze(out, spec.unbatched)
    return (out, _squeeze(indices, spec.unbatched)) if return_indices else out


def avg_divisor(fn, divisor_override) -> int:
    if divisor_override is None:
        return 0
    return as_int(divisor_override, fn, "divisor_override", minimum=1)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, backend=None):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    The divisor is the window size clipped to the padded input when
    ``count_include_pad`` (else to the input), or ``divisor_override``.

    Example:
        >>> x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
        >>> avg_pool2d(x, 2, stride=1)[0, 0]
        array([[2., 3.],
               [5., 6.]], dtype=float32)
    """
    fn = "avg_pool2d"
    spec = pool_spec(fn, input, kernel_size, stride, padding, 1, ceil_mode)
    divisor = avg_divisor(fn, divisor_override)
    kernels = _backend.kernels("pool", backend, fn)
    out = kernels.avg_pool2d_forward(spec.x, spec.kernel, spec.stride, spec.padding, spec.out_size,
                                     bool(count_include_pad), divisor)
    return _squeeze(out, spec.unbatched)


def adaptive_output_size(fn, output_size, in_size) -> tuple[int, int]:
    """Normalise ``output_size`` (int, pair, None entries keep the input size)."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(n if o is None else o for o, n in zip(output_size, in_size))
    return as_pair(output_size, fn, "output_size", minimum=1)


def adaptive_avg_pool2d(input, output_size, *, backend=None):
    """Average pooling to a fixed ``output_size`` (1 = global average pooling).

    Output cell i covers input rows ``floor(i*H/out_h)`` to ``ceil((i+1)*H/out_h)``.
    """
    fn = "adaptive_avg_pool2d"
    x, unbatched = image_batch(fn, input)
    out_size = adaptive_output_size(fn, output_size, x.shape[2:])
    out = _backend.kernels("pool", backend, fn).adaptive_avg_pool2d_forward(x, out_size)
    return _squeeze(out, unbatched)


def adaptive_max_pool2d(input, output_size, return_indices=False, *, backend=None):
    """Max pooling to a fixed ``output_size``; indices as in :func:`max_pool2d`."""
    fn = "adaptive_max_pool2d"
    x, unbatched = image_batch(fn, input)
    out_size = adaptive_output_size(fn, output_size, x.shape[2:])
    out, indices = _backend.kernels("pool", backend, fn).adaptive_max_pool2d_forward(x, out_size)
    out = _squeeze(out, unbatched)
    return (out, _squeeze(indices, unbatched)) if return_indices else out
