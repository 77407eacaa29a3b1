"""Output-size arithmetic, padding normalisation and receptive fields.

This module is the one place that knows how big a feature map comes out of a
convolution or a pooling window; ``fastml.functional`` and the layers ask it.

Formulas (per spatial dimension, input size ``n``, kernel ``k``, stride ``s``,
padding ``p`` on each side, dilation ``d``):

* effective kernel ``k_eff = d*(k-1) + 1``
* convolution: ``out = floor((n + 2p - k_eff) / s) + 1``
* pooling: the same, or ``ceil(...)`` with ``ceil_mode=True``; in ceil mode a
  last window that would start inside the right padding is dropped (PyTorch).
"""
from __future__ import annotations

from dataclasses import dataclass

from ._checks import as_int, as_pair


def _size_pair(value, fn: str, name: str) -> tuple[int, int]:
    """(H, W) from an int, a pair, or the last two entries of a longer shape."""
    if isinstance(value, (tuple, list)) and len(value) > 2:
        value = tuple(value)[-2:]
    return as_pair(value, fn, name, minimum=1)


def conv_output_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length of one dimension; ``pad_total`` is the padding on both sides together.

    May be <= 0 when the (dilated) kernel is larger than the padded input; the
    callers turn that into an error message naming their own arguments.
    """
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    if ceil_mode:
        out = -(-span // stride) + 1
        # PyTorch: the last window must start inside the input or the left padding.
        if (out - 1) * stride >= size + pad:
            out -= 1
        return out
    return span // stride + 1


def empty_pool_window(size: int, kernel: int, stride: int, pad: int, dilation: int, out: int) -> int | None:
    """Index of the first pooling window that holds no input element (only padding), or None.

    Only windows that start in the left padding can miss the input (later ones
    start inside it); with dilation their taps can all land on padding or jump
    past a small input, e.g. size 1, kernel 2, padding 1, dilation 2 taps rows -1 and 1.
    """
    i = 0
    while i < out and i * stride - pad < 0:
        start = i * stride - pad
        first = -(start // dilation)  # taps needed to reach row 0: ceil(-start / dilation)
        if first >= kernel or start + first * dilation >= size:
            return i
        i += 1
    return None


def conv_padding(padding, kernel: tuple[int, int], dilation: tuple[int, int],
                 stride: tuple[int, int], fn: str = "conv2d") -> tuple[int, int, int, int]:
    """Normalise ``padding`` to ``(top, bottom, left, right)``.

    ``padding`` is an int, a pair, ``"valid"`` (no padding) or ``"same"``
    (output size equals input size; stride 1 only; an odd total padding puts the
    extra row/column at the bottom/right, as PyTorch does).
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{fn}: `padding`='same' requires `stride` 1, got {stride}")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads.extend((total // 2, total - total // 2))
            return tuple(pads)  # type: ignore[return-value]
        raise ValueError(f"{fn}: `padding` must be an int, a pair, 'valid' or 'same', got {padding!r}")
    ph, pw = as_pair(padding, fn, "padding", minimum=0)
    return (ph, ph, pw, pw)


def conv_output_shape(input_size, kernel_size, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """Spatial output size ``(out_h, out_w)`` of a 2-D convolution.

    Args:
        input_size: ``H`` (square), ``(H, W)``, or a full shape ``(N, C, H, W)``.
        kernel_size, stride, dilation: int or pair.
        padding: int, pair, ``"valid"`` or ``"same"``.

    Example:
        >>> conv_output_shape((28, 28), 5)
        (24, 24)
        >>> conv_output_shape((32, 32), 3, stride=2, padding=1)
        (16, 16)
    """
    fn = "conv_output_shape"
    h, w = _size_pair(input_size, fn, "input_size")
    kernel = as_pair(kernel_size, fn, "kernel_size", minimum=1)
    stride = as_pair(stride, fn, "stride", minimum=1)
    dilation = as_pair(dilation, fn, "dilation", minimum=1)
    pt, pb, pl, pr = conv_padding(padding, kernel, dilation, stride, fn)
    out = (conv_output_size(h, kernel[0], stride[0], pt + pb, dilation[0]),
           conv_output_size(w, kernel[1], stride[1], pl + pr, dilation[1]))
    if min(out) < 1:
        raise ValueError(
            f"{fn}: kernel {kernel} with dilation {dilation} is larger than the padded input "
            f"({h + pt + pb}, {w + pl + pr})"
        )
    return out


def pool_output_sizes(fn: str, in_size, kernel, stride, padding, dilation, ceil_mode) -> tuple[int, int]:
    """Checked ``(out_h, out_w)`` of a pooling window (normalised pairs in); raises ValueError naming ``fn``.

    PyTorch's rules: ``padding`` at most half of ``kernel_size`` and no kernel
    larger than the padded input; beyond PyTorch, no window may consist of
    padding alone (possible with dilation on small inputs, where PyTorch returns
    -inf and an index outside the input).
    """
    for p, k in zip(padding, kernel):
        if 2 * p > k:
            raise ValueError(f"{fn}: `padding` (={p}) must be at most half of `kernel_size` (={k})")
    out = tuple(pool_output_size(n, k, s, p, d, bool(ceil_mode))
                for n, k, s, p, d in zip(in_size, kernel, stride, padding, dilation))
    if min(out) < 1:
        h, w = in_size
        raise ValueError(
            f"{fn}: `kernel_size` {tuple(kernel)} (dilation {tuple(dilation)}) can't be greater than the padded "
            f"input size ({h + 2 * padding[0]}, {w + 2 * padding[1]})"
        )
    for axis, args in enumerate(zip(in_size, kernel, stride, padding, dilation, out)):
        window = empty_pool_window(*args)
        if window is not None:
            raise ValueError(
                f"{fn}: with `padding` {tuple(padding)} and `dilation` {tuple(dilation)}, pooling window {window} "
                f"along {'HW'[axis]} covers only padding (input size {tuple(in_size)}); "
                f"reduce the padding or the dilation"
            )
    return out  # type: ignore[return-value]


def pool_output_shape(input_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> tuple[int, int]:
    """Spatial output size ``(out_h, out_w)`` of max/avg pooling (``stride`` defaults to ``kernel_size``).

    Raises ValueError for the geometries the pooling ops reject (see :func:`pool_output_sizes`).

    Example:
        >>> pool_output_shape((3, 3), 2, stride=1)
        (2, 2)
        >>> pool_output_shape((5, 5), 2, ceil_mode=True)
        (3, 3)
    """
    fn = "pool_output_shape"
    size = _size_pair(input_size, fn, "input_size")
    kernel = as_pair(kernel_size, fn, "kernel_size", minimum=1)
    stride = kernel if stride is None else as_pair(stride, fn, "stride", minimum=1)
    dilation = as_pair(dilation, fn, "dilation", minimum=1)
    pad = as_pair(padding, fn, "padding", minimum=0)
    return pool_output_sizes(fn, size, kernel, stride, pad, dilation, ceil_mode)


@dataclass(frozen=True)
class ReceptiveFieldRow:
    """One layer of :func:`receptive_field`; each field is an ``(h, w)`` pair."""

    name: str
    size: tuple[int, int]        # feature-map size after this layer
    receptive_field: tuple[int, int]  # input pixels one output unit sees
    jump: tuple[int, int]        # distance in input pixels between adjacent outputs
    start: tuple[float, float]   # input coordinate of the centre of output unit 0

    def __str__(self) -> str:
        return (f"{self.name:<24} size {self.size[0]}x{self.size[1]}  rf {self.receptive_field[0]}x"
                f"{self.receptive_field[1]}  jump {self.jump[0]}x{self.jump[1]}  start {self.start[0]:g},{self.start[1]:g}")


def _layer_geometry(layer):
    """(name, kernel, stride, (top, bottom, left, right) padding, dilation, ceil_mode) of a conv/pool layer.

    Accepts dicts ``{"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1}``,
    tuples ``(kernel_size, stride, padding[, dilation])`` and layer objects with
    those attributes (fastml and torch conv/pool layers). Layers without a kernel
    (activations, dropout, ...) return None and do not change the geometry.
    """
    if isinstance(layer, dict):
        if "kernel_size" not in layer:
            return None
        get = layer.get
        name = layer.get("name", "layer")
    elif isinstance(layer, (tuple, list)):
        fields = dict(zip(("kernel_size", "stride", "padding", "dilation"), layer))
        get = fields.get
        name = f"k{layer[0]}"
    else:
        if not hasattr(layer, "kernel_size"):
            return None
        get = lambda key, default=None: getattr(layer, key, default)  # noqa: E731
        name = type(layer).__name__
    fn = "receptive_field"
    kernel = as_pair(get("kernel_size"), fn, "kernel_size", minimum=1)
    stride = get("stride", 1)
    stride = kernel if stride is None else as_pair(stride, fn, "stride", minimum=1)
    dilation = as_pair(get("dilation", 1) or 1, fn, "dilation", minimum=1)
    # (top, bottom, left, right): "same" with an even kernel pads one more row/column at the end
    pads = conv_padding(get("padding", 0), kernel, dilation, stride, fn)
    return name, kernel, stride, pads, dilation, bool(get("ceil_mode", False))


def receptive_field(layers, input_size) -> list[ReceptiveFieldRow]:
    """Feature-map size, receptive field, jump and start of every layer in a conv/pool stack.

    The recurrences (per dimension, ``k_eff = d*(k-1)+1``)::

        n_out     = floor((n_in + 2p - k_eff) / s) + 1
        jump_out  = jump_in * s
        rf_out    = rf_in + (k_eff - 1) * jump_in
        start_out = start_in + ((k_eff - 1)/2 - p) * jump_in

    Args:
        layers: a sequence of layers (objects with ``kernel_size``/``stride``/
            ``padding``/``dilation``/``ceil_mode``, dicts with those keys, or tuples
            ``(kernel_size, stride, padding[, dilation])``; a stride of None means
            the kernel size, as for pooling). Layers (or dicts) without a
            ``kernel_size`` are skipped. ``padding="same"`` with an even kernel
            pads one more row/column after the input, as PyTorch does.
        input_size: ``H``, ``(H, W)`` or ``(N, C, H, W)``.

    Returns:
        A list of :class:`ReceptiveFieldRow`, the first for the input itself.

    Example:
        >>> rows = receptive_field([(3, 1, 1), (2, 2, 0), (3, 1, 1)], 32)
        >>> rows[-1].receptive_field, rows[-1].jump, rows[-1].size
        ((8, 8), (2, 2), (16, 16))
    """
    size = _size_pair(input_size, "receptive_field", "input_size")
    rf, jump, start = (1, 1), (1, 1), (0.5, 0.5)
    rows = [ReceptiveFieldRow("input", size, rf, jump, start)]
    for index, layer in enumerate(layers):
        geometry = _layer_geometry(layer)
        if geometry is None:
            continue
        name, kernel, stride, pads, dilation, ceil_mode = geometry
        padding = (pads[0], pads[2])  # before the first row / column: where output 0 starts
        k_eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        if ceil_mode:  # pooling: symmetric padding
            new_size = tuple(pool_output_size(n, k, s, p, d, True)
                             for n, k, s, p, d in zip(size, kernel, stride, padding, dilation))
        else:
            new_size = tuple(conv_output_size(n, k, s, total, d)
                             for n, k, s, total, d in zip(size, kernel, stride, (pads[0] + pads[1], pads[2] + pads[3]), dilation))
        if min(new_size) < 1:
            raise ValueError(f"receptive_field: layer {index} ({name}) has a kernel larger than its padded input {size}")
        rf = tuple(r + (k - 1) * j for r, k, j in zip(rf, k_eff, jump))
        start = tuple(st + ((k - 1) / 2 - p) * j for st, k, p, j in zip(start, k_eff, padding, jump))
        jump = tuple(j * s for j, s in zip(jump, stride))
        size = new_size
        rows.append(ReceptiveFieldRow(f"{index}: {name}", size, rf, jump, start))  # type: ignore[arg-type]
    return rows


__all__ = [
    "conv_output_shape", "pool_output_shape", "receptive_field", "ReceptiveFieldRow",
    "conv_output_size", "pool_output_size", "empty_pool_window", "pool_output_sizes", "conv_padding", "as_int",
]
