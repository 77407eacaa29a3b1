"""conv2d: validation, normalisation and dispatch (the kernels live in fastml.kernels.<backend>.conv)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _backend
from .._checks import contiguous, as_float_array, as_int, as_pair, check_ndim, check_nonempty, check_same_dtype, image_batch
from ..shapes import conv_output_size, conv_padding


@dataclass(frozen=True)
class ConvSpec:
    """A validated conv2d call: contiguous 4-D arrays and plain-int geometry."""

    x: np.ndarray            # (N, C, H, W), contiguous
    weight: np.ndarray       # (K, C // groups, R, S), contiguous
    bias: np.ndarray | None  # (K,) or None
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, bottom, left, right
    dilation: tuple[int, int]
    groups: int
    out_size: tuple[int, int]
    unbatched: bool

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.x.shape[0], self.weight.shape[0]) + self.out_size

    def kernel_args(self):
        return self.stride, self.padding, self.dilation, self.groups


def conv_spec(fn, input, weight, bias, stride, padding, dilation, groups) -> ConvSpec:
    x, unbatched = image_batch(fn, input)
    weight = as_float_array(weight, fn, "weight")
    check_ndim(weight, (4,), fn, "weight", "(out_channels, in_channels // groups, kH, kW)")
    check_same_dtype(weight, x, fn, "weight")
    check_nonempty(weight, fn, "weight")
    groups = as_int(groups, fn, "groups", minimum=1)
    k_out, c_group = weight.shape[:2]
    if x.shape[1] % groups:
        raise ValueError(f"{fn}: `groups` (={groups}) must divide the input's channels (={x.shape[1]})")
    if x.shape[1] != c_group * groups:
        raise ValueError(
            f"{fn}: `in_channels` of input (={x.shape[1]}) must equal weight.shape[1]*groups (={c_group * groups})"
        )
    if k_out % groups:
        raise ValueError(f"{fn}: `out_channels` (weight.shape[0]={k_out}) must be divisible by `groups` (={groups})")
    if bias is not None:
        bias = as_float_array(bias, fn, "bias")
        check_same_dtype(bias, x, fn, "bias")
        if bias.shape != (k_out,):
            raise ValueError(f"{fn}: `bias` must have shape ({k_out},), got {tuple(bias.shape)}")
        bias = contiguous(bias)
    stride = as_pair(stride, fn, "stride", minimum=1)
    dilation = as_pair(dilation, fn, "dilation", minimum=1)
    kernel = weight.shape[2:]
    pads = conv_padding(padding, kernel, dilation, stride, fn)
    h, w = x.shape[2:]
    out_size = (conv_output_size(h, kernel[0], stride[0], pads[0] + pads[1], dilation[0]),
                conv_output_size(w, kernel[1], stride[1], pads[2] + pads[3], dilation[1]))
    if min(out_size) < 1:
        raise ValueError(
            f"{fn}: kernel size of `weight` {tuple(kernel)} with `dilation` {dilation} can't be greater than "
            f"the padded `input` size ({h + pads[0] + pads[1]}, {w + pads[2] + pads[3]})"
        )
    return ConvSpec(contiguous(x), contiguous(weight), bias, stride, pads, dilation,
                    groups, out_size, unbatched)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, backend=None):
    """2-D cross-correlation over an NCHW batch, as ``torch.nn.functional.conv2d``.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``, float32 or float64.
        weight: ``(K, C // groups, R, S)``.
        bias: ``(K,)`` or None.
        stride, dilation: int or pair, >= 1.
        padding: int or pair (zeros on both sides), ``"valid"`` or ``"same"`` (stride 1).
        groups: input and output channels are split into this many groups.
        backend: ``"reference"``, ``"cpu"`` or ``"cuda"``; default: the current backend.

    Shape:
        Output ``(N, K, out_h, out_w)`` with
        ``out_h = floor((H + 2*pad_h - dilation_h*(R-1) - 1) / stride_h) + 1``.

    Returns:
        ndarray of the input's dtype.

    Example:
        >>> x = np.random.rand(8, 3, 32, 32).astype(np.float32)
        >>> w = np.random.rand(16, 3, 3, 3).astype(np.float32)
        >>> conv2d(x, w, padding=1).shape
        (8, 16, 32, 32)
    """
    fn = "conv2d"
    spec = conv_spec(fn, input, weight, bias, stride, padding, dilation, groups)
    kernels = _backend.kernels("conv", backend, fn)
    out = kernels.conv2d_forward(spec.x, spec.weight, spec.bias, *spec.kernel_args(), spec.out_size)
    return out[0] if spec.unbatched else out
