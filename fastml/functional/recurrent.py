"""Recurrent ops: single-step cells, whole (stacked, bidirectional) sequences, and their gradients.

Validation and normalisation happen here, once; the kernels
(``fastml.kernels.<backend>.recurrent``) run one layer and direction over a
whole ``(T, N, I)`` sequence and receive contiguous arrays of one dtype,
biases (zeros where a layer has none), int64 ``lengths`` and plain flags.
The gate equations and layout are documented in
``kernels/reference/recurrent.py``.

On the ``"cuda"`` backend :func:`rnn_sequence` and :func:`rnn_sequence_backward`
keep everything on the device: host inputs, states and weights are copied
there once per call (device arrays are used in place), the layout changes
(``batch_first``, the bidirectional concatenation and split) are device
copy kernels, and every result is a device array. Only ``lengths`` (N ints), when
given, and the dropout masks are made on the host and copied over. The single-step
cells (:func:`rnn_cell`, :func:`lstm_cell`, :func:`gru_cell` and their
backward) run the same sequence kernels with T = 1 and stay on the device
the same way; their all-ones ``lengths`` is filled on the device.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _backend
from .._checks import as_float_array, as_int, check_choice, contiguous
from ..device import (
    add,
    add_batch_dim,
    copy_into,
    empty,
    full,
    multiply,
    swap_first_two,
    to_device,
    to_host,
    zeros,
)
from ..kernels.reference.recurrent import GATE_COUNT

NONLINEARITIES = ("tanh", "relu")


def cell_mode(kind: str, nonlinearity: str = "tanh", reset_after: bool = True) -> str:
    """The kernel mode of a cell: ``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru`` or ``gru_reset_before``."""
    if kind == "RNN":
        return f"rnn_{nonlinearity}"
    if kind == "LSTM":
        return "lstm"
    return "gru" if reset_after else "gru_reset_before"


# --- validation ---------------------------------------------------------------------------------
def _float_like(fn, value, name, dtype, shape, shown_shape=None):
    array = as_float_array(value, fn, name)
    if array.dtype != dtype:
        raise TypeError(f"{fn}: `{name}` dtype ({array.dtype}) must equal `input` dtype ({dtype})")
    if array.shape != tuple(shape):
        raise ValueError(f"{fn}: `{name}` must have shape {tuple(shown_shape or shape)}, got {tuple(array.shape)}")
    return contiguous(array)


def check_weights(fn, mode, dtype, input_size, hidden_size, w_ih, w_hh, b_ih, b_hh, suffix="", on_device=False):
    """Validated, contiguous ``(w_ih, w_hh, b_ih, b_hh)``; missing biases become zeros (on the device with ``on_device``)."""
    gates = GATE_COUNT[mode] * hidden_size
    w_ih = _float_like(fn, w_ih, f"weight_ih{suffix}", dtype, (gates, input_size))
    w_hh = _float_like(fn, w_hh, f"weight_hh{suffix}", dtype, (gates, hidden_size))
    if (b_ih is None) != (b_hh is None):
        raise ValueError(f"{fn}: `bias_ih{suffix}` and `bias_hh{suffix}` must both be given or both be None")
    if b_ih is None:
        b_ih = b_hh = zeros((gates,), dtype, on_device)
    else:
        b_ih = _float_like(fn, b_ih, f"bias_ih{suffix}", dtype, (gates,))
        b_hh = _float_like(fn, b_hh, f"bias_hh{suffix}", dtype, (gates,))
    return w_ih, w_hh, b_ih, b_hh


def _check_input(fn, input, input_size=None):
    x = as_float_array(input, fn, "input")
    if x.ndim not in (2, 3):
        raise ValueError(f"{fn}: `input` must be 2-D (T, input_size) or 3-D (T, N, input_size) "
                         f"[(N, T, input_size) with batch_first], got shape {tuple(x.shape)}")
    features = x.shape[x.ndim - 1]  # not shape[-1]: the CUDA simulator's shapes refuse negative indices
    if input_size is not None and features != input_size:
        raise ValueError(f"{fn}: last dimension of `input` (={features}) must equal `input_size` (={input_size})")
    return x


def check_lengths(fn, lengths, batch, seq_len):
    """``lengths`` as int64 ``(N,)`` with every entry in [1, T]; None means all T."""
    if lengths is None:
        return np.full(batch, seq_len, dtype=np.int64)
    if hasattr(lengths, "detach"):  # a torch tensor
        lengths = lengths.detach().cpu().numpy()
    try:
        array = to_host(lengths)  # N ints: a device copy is brought back to check its range
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{fn}: `lengths` must be a rectangular integer array, got a ragged sequence ({exc})") from None
    if array.dtype.kind not in "iu":
        raise TypeError(f"{fn}: `lengths` must be integers, got dtype {array.dtype}")
    if array.ndim != 1 or array.shape[0] != batch:
        raise ValueError(f"{fn}: `lengths` must have shape ({batch},) (one per sequence in the batch), "
                         f"got {tuple(array.shape)}")
    if array.min() < 1:
        raise ValueError(f"{fn}: `lengths` must be positive, got minimum {array.min()}")
    if array.max() > seq_len:
        raise ValueError(f"{fn}: `lengths` must be at most the sequence length T (={seq_len}), got {array.max()}")
    return np.ascontiguousarray(array, dtype=np.int64)


# --- single-step cells ----------------------------------------------------------------------------
# A cell is a one-step sequence: it runs the backend's sequence kernels with T = 1 (on the cuda
# backend the input projection GEMM, the hidden GEMM and the fused gate kernel of that one step),
# so the gate equations exist once. On "cuda" every buffer is made on the device.
@dataclass
class _Cell:
    mode: str
    x: np.ndarray        # (1, N, I)
    h: np.ndarray        # (N, H)
    c: np.ndarray | None
    weights: tuple
    has_bias: bool
    unbatched: bool
    backend: str
    on_device: bool


def _cell_args(fn, mode, input, h, c, w_ih, w_hh, b_ih, b_hh, backend) -> _Cell:
    name = _backend.resolve(backend, fn)
    on_device = name == "cuda"
    x = as_float_array(input, fn, "input")
    if x.ndim not in (1, 2):
        raise ValueError(f"{fn}: `input` must be 1-D (input_size,) or 2-D (N, input_size), got shape {tuple(x.shape)}")
    unbatched = x.ndim == 1
    x = add_batch_dim(x) if unbatched else x
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{fn}: `input` must not be empty, got shape {tuple(np.shape(input))}")
    w_hh_arr = as_float_array(w_hh, fn, "weight_hh")
    if w_hh_arr.ndim != 2 or w_hh_arr.shape[1] == 0:
        raise ValueError(f"{fn}: `weight_hh` must be 2-D ({GATE_COUNT[mode]}*hidden_size, hidden_size), "
                         f"got shape {tuple(w_hh_arr.shape)}")
    hidden = w_hh_arr.shape[1]
    weights = check_weights(fn, mode, x.dtype, x.shape[1], hidden, w_ih, w_hh_arr, b_ih, b_hh, on_device=on_device)
    batch = x.shape[0]
    shown = (hidden,) if unbatched else (batch, hidden)

    def place(array):
        return to_device(array) if on_device else array

    def state(value, name):
        if value is None:
            return zeros((batch, hidden), x.dtype, on_device)
        array = _float_like(fn, value, name, x.dtype, shown)
        return contiguous(place(array)).reshape(batch, hidden)

    x = contiguous(place(x))
    return _Cell(mode, x.reshape(1, batch, x.shape[1]), state(h, "hx"),
                 state(c, "cx") if mode == "lstm" else None, tuple(place(w) for w in weights), b_ih is not None,
                 unbatched, name, on_device)


def _cell_forward(cell: _Cell, fn, keep=False):
    kernels = _backend.kernels("recurrent", cell.backend, fn)
    lengths = full((cell.x.shape[1],), 1, np.int64, cell.on_device)  # made where it is used: no host copy
    _, h, c, saved = kernels.recurrent_forward(cell.mode, cell.x, cell.h, cell.c, *cell.weights, lengths, False, keep)
    return kernels, h, c, saved


def _squeeze(array, unbatched):
    return array[0] if (unbatched and array is not None) else array


def rnn_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", *, backend=None):
    """One Elman RNN step, as ``torch.nn.RNNCell``: ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``.

    Args:
        input: ``(N, I)`` or unbatched ``(I,)``.
        hx: ``(N, H)`` / ``(H,)``, or None for zeros.
        w_ih: ``(H, I)``; w_hh: ``(H, H)``; b_ih, b_hh: ``(H,)`` or both None.
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Returns:
        h' with hx's shape.

    Example:
        >>> h = rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh)
    """
    fn = "rnn_cell"
    check_choice(nonlinearity, NONLINEARITIES, fn, "nonlinearity")
    cell = _cell_args(fn, cell_mode("RNN", nonlinearity), input, hx, None, w_ih, w_hh, b_ih, b_hh, backend)
    _, h, _, _ = _cell_forward(cell, fn)
    return _squeeze(h, cell.unbatched)


def _split_hc(fn, hx):
    if hx is None:
        return None, None
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(f"{fn}: `hx` must be a pair (h, c) or None, got {type(hx).__name__}")
    return hx


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, backend=None):
    """One LSTM step, as ``torch.nn.LSTMCell`` (gates i, f, g, o).

    ``i, f, o = σ(·)``, ``g = tanh(·)`` of ``x W_ih^T + b_ih + h W_hh^T + b_hh``;
    ``c' = f * c + i * g``; ``h' = o * tanh(c')``.

    Args:
        input: ``(N, I)`` or ``(I,)``; hx: ``(h, c)`` each ``(N, H)``, or None for zeros.
        w_ih: ``(4H, I)``; w_hh: ``(4H, H)``; b_ih, b_hh: ``(4H,)`` or None.

    Returns:
        ``(h', c')``.
    """
    fn = "lstm_cell"
    h, c = _split_hc(fn, hx)
    cell = _cell_args(fn, "lstm", input, h, c, w_ih, w_hh, b_ih, b_hh, backend)
    _, h, c, _ = _cell_forward(cell, fn)
    return _squeeze(h, cell.unbatched), _squeeze(c, cell.unbatched)


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, reset_after=True, *, backend=None):
    """One GRU step (gates r, z, n), as ``torch.nn.GRUCell`` by default.

    ``r, z = σ(x W_i{r,z}^T + b_i{r,z} + h W_h{r,z}^T + b_h{r,z})``;
    ``n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))`` with ``reset_after=True``
    (PyTorch, cuDNN), or ``n = tanh(x W_in^T + b_in + (r * h) W_hn^T + b_hn)``
    with ``reset_after=False`` (Cho et al., ONNX); ``h' = (1 - z) * n + z * h``.

    Args:
        input: ``(N, I)`` or ``(I,)``; hx: ``(N, H)`` or None.
        w_ih: ``(3H, I)``; w_hh: ``(3H, H)``; b_ih, b_hh: ``(3H,)`` or None.
    """
    fn = "gru_cell"
    mode = cell_mode("GRU", reset_after=bool(reset_after))
    cell = _cell_args(fn, mode, input, hx, None, w_ih, w_hh, b_ih, b_hh, backend)
    _, h, _, _ = _cell_forward(cell, fn)
    return _squeeze(h, cell.unbatched)


def _cell_backward(fn, cell, grad_h, grad_c):
    batch, hidden = cell.h.shape
    shown = (hidden,) if cell.unbatched else (batch, hidden)

    def place(array):
        return contiguous(to_device(array) if cell.on_device else array)

    g_h = place(_float_like(fn, grad_h, "grad_h", cell.x.dtype, shown)).reshape(1, batch, hidden)
    g_c = None
    if grad_c is not None:
        g_c = place(_float_like(fn, grad_c, "grad_c", cell.x.dtype, shown)).reshape(batch, hidden)
    kernels, _, _, saved = _cell_forward(cell, fn, keep=True)
    gx, gh0, gc0, gw_ih, gw_hh, gb_ih, gb_hh, _ = kernels.recurrent_backward(saved, g_h, None, g_c, 0)
    if not cell.has_bias:
        gb_ih = gb_hh = None
    return (_squeeze(gx[0], cell.unbatched), _squeeze(gh0, cell.unbatched), _squeeze(gc0, cell.unbatched),
            gw_ih, gw_hh, gb_ih, gb_hh)


def rnn_cell_backward(grad_h, input, hx, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", *, backend=None):
    """Gradients of :func:`rnn_cell` given dL/dh'.

    Returns:
        ``(grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)`` (bias grads None without biases).
    """
    fn = "rnn_cell_backward"
    check_choice(nonlinearity, NONLINEARITIES, fn, "nonlinearity")
    cell = _cell_args(fn, cell_mode("RNN", nonlinearity), input, hx, None, w_ih, w_hh, b_ih, b_hh, backend)
    gx, gh, _, *rest = _cell_backward(fn, cell, grad_h, None)
    return (gx, gh, *rest)


def lstm_cell_backward(grad_h, grad_c, input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, backend=None):
    """Gradients of :func:`lstm_cell` given dL/dh' and dL/dc' (``grad_c`` may be None).

    Returns:
        ``(grad_input, (grad_h, grad_c), grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)``.
    """
    fn = "lstm_cell_backward"
    h, c = _split_hc(fn, hx)
    cell = _cell_args(fn, "lstm", input, h, c, w_ih, w_hh, b_ih, b_hh, backend)
    gx, gh, gc, *rest = _cell_backward(fn, cell, grad_h, grad_c)
    return (gx, (gh, gc), *rest)


def gru_cell_backward(grad_h, input, hx, w_ih, w_hh, b_ih=None, b_hh=None, reset_after=True, *, backend=None):
    """Gradients of :func:`gru_cell`: ``(grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)``."""
    fn = "gru_cell_backward"
    mode = cell_mode("GRU", reset_after=bool(reset_after))
    cell = _cell_args(fn, mode, input, hx, None, w_ih, w_hh, b_ih, b_hh, backend)
    gx, gh, _, *rest = _cell_backward(fn, cell, grad_h, None)
    return (gx, gh, *rest)


# --- whole sequences: stacked, bidirectional, variable length -----------------------------------------
@dataclass
class RecurrentContext:
    """What :func:`rnn_sequence_backward` needs from a :func:`rnn_sequence` call."""

    mode: str
    backend: str
    num_layers: int
    num_directions: int
    hidden_size: int
    batch_first: bool
    unbatched: bool
    has_bias: bool
    dtype: np.dtype
    seq_len: int
    batch: int
    saved: list = field(default_factory=list)       # [layer][direction] kernel caches
    masks: list = field(default_factory=list)       # dropout mask applied to each layer's output (or None)


def _to_time_major(x, batch_first, unbatched):
    """Contiguous ``(T, N, F)`` from the caller's layout (host or device alike)."""
    if unbatched:
        return contiguous(x).reshape(x.shape[0], 1, x.shape[1])
    return swap_first_two(x) if batch_first else contiguous(x)


def _from_time_major(y, batch_first, unbatched):
    if unbatched:
        return contiguous(y).reshape(y.shape[0], y.shape[2])
    return swap_first_two(y) if batch_first else contiguous(y)


def _state(fn, value, name, dtype, layers_dirs, batch, hidden, unbatched, on_device=False):
    if value is None:
        return zeros((layers_dirs, batch, hidden), dtype, on_device)
    shape = (layers_dirs, hidden) if unbatched else (layers_dirs, batch, hidden)
    array = _float_like(fn, value, name, dtype, shape)
    array = to_device(array) if on_device else array
    return contiguous(array).reshape(layers_dirs, batch, hidden)


def _concat_directions(outputs, on_device):
    """The directions' ``(T, N, H)`` outputs side by side: ``(T, N, D*H)`` (no copy for one direction)."""
    if len(outputs) == 1:
        return outputs[0]
    seq_len, batch, hidden = outputs[0].shape
    joined = empty((seq_len, batch, len(outputs) * hidden), outputs[0].dtype, on_device)
    for d, out in enumerate(outputs):
        copy_into(joined[:, :, d * hidden:(d + 1) * hidden], out)
    return joined


def rnn_sequence(input, hx, weights, mode, *, num_layers=1, bidirectional=False, batch_first=False, dropout=0.0,
              training=False, lengths=None, rng=None, keep=False, backend=None, fn="rnn_sequence"):
    """Run a stacked (optionally bidirectional) RNN/LSTM/GRU over a whole sequence.

    Args:
        input: ``(T, N, I)`` (``(N, T, I)`` with ``batch_first``) or unbatched ``(T, I)``.
        hx: initial state ``(L*D, N, H)`` (``(L*D, H)`` unbatched) or None for zeros;
            for ``mode="lstm"`` a pair ``(h0, c0)`` or None.
        weights: per layer and direction, in PyTorch's order (layer 0 forward,
            layer 0 reverse, layer 1 forward, ...), tuples ``(w_ih, w_hh, b_ih, b_hh)``
            (biases may be None).
        mode: ``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru`` or ``gru_reset_before``.
        dropout: probability of zeroing each output of every layer but the last (when ``training``).
        lengths: ``(N,)`` ints in [1, T] for a padded batch, or None.
        rng: ``np.random.Generator`` for the dropout masks.
        keep: keep what :func:`rnn_sequence_backward` needs and return it as the context.

    Shape:
        output ``(T, N, D*H)`` in the input's layout, zero at padded steps;
        ``h_n`` (and ``c_n``) ``(L*D, N, H)``: each sequence's state after its own last step.

    Returns:
        ``(output, h_n, c_n, context)``; ``c_n`` is None unless LSTM, context None unless ``keep``.
    """
    check_choice(mode, tuple(GATE_COUNT), fn, "mode")
    num_layers = as_int(num_layers, fn, "num_layers", minimum=1)
    dirs = 2 if bidirectional else 1
    if not isinstance(weights, (list, tuple)):
        raise TypeError(f"{fn}: `weights` must be a list of (w_ih, w_hh, b_ih, b_hh) tuples, "
                        f"got {type(weights).__name__}")
    if len(weights) != num_layers * dirs:
        raise ValueError(f"{fn}: `weights` must hold num_layers*num_directions (={num_layers * dirs}) tuples, "
                         f"got {len(weights)}")
    for k, entry in enumerate(weights):
        if not isinstance(entry, (list, tuple)) or len(entry) != 4:
            got = f"{len(entry)} entries" if isinstance(entry, (list, tuple)) else type(entry).__name__
            raise ValueError(f"{fn}: `weights[{k}]` must be a tuple (w_ih, w_hh, b_ih, b_hh), got {got}")
    first = weights[0]
    w_ih0 = as_float_array(first[0], fn, "weight_ih_l0")
    w_hh0 = as_float_array(first[1], fn, "weight_hh_l0")
    if w_hh0.ndim != 2 or w_ih0.ndim != 2:
        raise ValueError(f"{fn}: `weight_ih_l0` and `weight_hh_l0` must be 2-D")
    hidden = w_hh0.shape[1]
    x = _check_input(fn, input, w_ih0.shape[1])
    unbatched = x.ndim == 2
    if x.shape[0 if (unbatched or not batch_first) else 1] == 0:
        raise ValueError(f"{fn}: sequence length T must be >= 1 in `input`, got shape {tuple(x.shape)}")
    name = _backend.resolve(backend, fn)
    on_device = name == "cuda"
    xt = _to_time_major(to_device(x) if on_device else x, batch_first, unbatched)
    seq_len, batch, _ = xt.shape
    if batch == 0:
        raise ValueError(f"{fn}: `input` must not be empty: the batch size N is 0 (input shape {tuple(x.shape)})")
    dtype = xt.dtype
    if lengths is None and on_device:  # every sequence runs all T steps: filled on the device, no copy
        lengths = full((batch,), seq_len, np.int64, True)
    else:
        lengths = check_lengths(fn, lengths, batch, seq_len)
    if mode == "lstm":
        h0, c0 = _split_hc(fn, hx)
        c0 = _state(fn, c0, "c0", dtype, num_layers * dirs, batch, hidden, unbatched, on_device)
    else:
        h0, c0 = hx, None
    h0 = _state(fn, h0, "h0", dtype, num_layers * dirs, batch, hidden, unbatched, on_device)
    checked = []
    has_bias = first[2] is not None
    for layer in range(num_layers):
        in_size = xt.shape[2] if layer == 0 else dirs * hidden
        for d in range(dirs):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            arrays = check_weights(fn, mode, dtype, in_size, hidden, *weights[layer * dirs + d], suffix=suffix,
                                   on_device=on_device)
            checked.append(tuple(to_device(a) for a in arrays) if on_device else arrays)
    if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, (int, float, np.integer, np.floating)):
        raise TypeError(f"{fn}: `dropout` must be a number in [0, 1], got {dropout!r}")
    dropout = float(dropout)
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"{fn}: `dropout` must be in [0, 1], got {dropout}")

    if on_device:
        lengths = to_device(lengths)  # the given lengths, checked on the host (a device array stays as it is)
    kernels = _backend.kernels("recurrent", name, fn)
    ctx = RecurrentContext(mode, name, num_layers, dirs, hidden, bool(batch_first), unbatched, has_bias, dtype,
                           seq_len, batch) if keep else None
    h_n = empty((num_layers * dirs, batch, hidden), dtype, on_device)
    c_n = empty((num_layers * dirs, batch, hidden), dtype, on_device) if mode == "lstm" else None
    layer_in = xt
    for layer in range(num_layers):
        outputs, saved = [], []
        directions = [(h0[k], None if c0 is None else c0[k], *checked[k]) for k in range(layer * dirs, (layer + 1) * dirs)]
        if dirs == 2 and hasattr(kernels, "recurrent_forward_bidirectional"):  # both directions in one call
            results = kernels.recurrent_forward_bidirectional(mode, layer_in, *directions, lengths, keep)
        else:
            results = [kernels.recurrent_forward(mode, layer_in, *args, lengths, d == 1, keep)
                       for d, args in enumerate(directions)]
        for d, (out, h, c, cache) in enumerate(results):
            k = layer * dirs + d
            outputs.append(out)
            saved.append(cache)
            copy_into(h_n[k], h)
            if c_n is not None:
                copy_into(c_n[k], c)
        layer_out = _concat_directions(outputs, on_device)
        mask = None
        if training and dropout > 0 and layer < num_layers - 1:
            generator = rng if rng is not None else np.random.default_rng()
            keep_prob = 1.0 - dropout
            mask = (generator.random(layer_out.shape) < keep_prob).astype(dtype)
            if keep_prob > 0:
                mask /= dtype.type(keep_prob)
            if on_device:
                mask = to_device(mask)
            layer_out = multiply(layer_out, mask)
        if keep:
            ctx.saved.append(saved)
            ctx.masks.append(mask)
        layer_in = layer_out
    output = _from_time_major(layer_in, batch_first, unbatched)
    if unbatched:
        h_n = h_n.reshape(num_layers * dirs, hidden)
        c_n = None if c_n is None else c_n.reshape(num_layers * dirs, hidden)
    return output, h_n, c_n, ctx


@dataclass
class RecurrentGradients:
    """Result of :func:`rnn_sequence_backward`."""

    input: np.ndarray
    h0: np.ndarray
    c0: np.ndarray | None
    weights: list           # per layer and direction: (g_w_ih, g_w_hh, g_b_ih, g_b_hh); bias grads None without bias
    norms: np.ndarray       # (L*D, T): ||dL/dh_t|| per layer and direction


def rnn_sequence_backward(ctx: RecurrentContext, grad_output, grad_h_n=None, grad_c_n=None, bptt_steps=None,
                       fn="rnn_sequence_backward") -> RecurrentGradients:
    """Backpropagation through time for a :func:`rnn_sequence` call made with ``keep=True``.

    Args:
        grad_output: dL/d(output), the output's shape and layout.
        grad_h_n, grad_c_n: dL/dh_n and dL/dc_n, or None for zero.
        bptt_steps: truncate BPTT: the carried gradient is cut every this many
            steps (counted in each direction's processing order), as if the state
            were detached there. None: full BPTT.
    """
    if ctx is None:
        raise ValueError(f"{fn}: `ctx` is None: no forward context; run forward with keep=True (in train mode, "
                         f"outside no_grad)")
    if bptt_steps is None:
        bptt_steps = 0
    else:
        bptt_steps = as_int(bptt_steps, fn, "bptt_steps", minimum=1)
    dirs, hidden, dtype = ctx.num_directions, ctx.hidden_size, ctx.dtype
    seq, batch = ctx.seq_len, ctx.batch
    if ctx.unbatched:
        out_shape = (seq, dirs * hidden)
    else:
        out_shape = (batch, seq, dirs * hidden) if ctx.batch_first else (seq, batch, dirs * hidden)
    on_device = ctx.backend == "cuda"
    g = _float_like(fn, grad_output, "grad_output", dtype, out_shape)
    g = _to_time_major(to_device(g) if on_device else g, ctx.batch_first, ctx.unbatched)
    states = ctx.num_layers * dirs
    g_h = None
    if grad_h_n is not None:
        g_h = _state(fn, grad_h_n, "grad_h_n", dtype, states, batch, hidden, ctx.unbatched, on_device)
    g_c = None
    if ctx.mode == "lstm" and grad_c_n is not None:
        g_c = _state(fn, grad_c_n, "grad_c_n", dtype, states, batch, hidden, ctx.unbatched, on_device)
    kernels = _backend.kernels("recurrent", ctx.backend, fn)
    grad_h0 = empty((states, batch, hidden), dtype, on_device)
    grad_c0 = empty((states, batch, hidden), dtype, on_device) if ctx.mode == "lstm" else None
    weights = [None] * states
    norms = empty((states, seq), dtype, on_device)
    for layer in range(ctx.num_layers - 1, -1, -1):
        mask = ctx.masks[layer]
        if mask is not None:
            g = multiply(g, mask)
        grad_in = None
        for d in range(dirs):
            k = layer * dirs + d
            g_dir = g if dirs == 1 else contiguous(g[:, :, d * hidden:(d + 1) * hidden])
            gx, gh0, gc0, gw_ih, gw_hh, gb_ih, gb_hh, nrm = kernels.recurrent_backward(
                ctx.saved[layer][d], g_dir, None if g_h is None else g_h[k], None if g_c is None else g_c[k],
                bptt_steps)
            grad_in = gx if grad_in is None else add(grad_in, gx)
            copy_into(grad_h0[k], gh0)
            if grad_c0 is not None:
                copy_into(grad_c0[k], gc0)
            if not ctx.has_bias:
                gb_ih = gb_hh = None
            weights[k] = (gw_ih, gw_hh, gb_ih, gb_hh)
            copy_into(norms[k], nrm)
        g = grad_in
    grad_input = _from_time_major(g, ctx.batch_first, ctx.unbatched)
    if ctx.unbatched:
        grad_h0 = grad_h0.reshape(states, hidden)
        grad_c0 = None if grad_c0 is None else grad_c0.reshape(states, hidden)
    return RecurrentGradients(contiguous(grad_input), grad_h0, grad_c0, weights, norms)
