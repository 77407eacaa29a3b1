"""Recurrent layers: RNN, LSTM, GRU with PyTorch's arguments, parameter names and shapes.

Each layer holds its parameters and the forward cache; the work is done by
:func:`fastml.functional.rnn_sequence` and :func:`fastml.functional.rnn_sequence_backward`.
"""
from __future__ import annotations

import warnings

import numpy as np

from .._checks import as_int, check_choice
from ..functional import recurrent as R
from ..kernels.reference.recurrent import GATE_COUNT
from .init import generator
from .module import Module

_KINDS = ("RNN", "LSTM", "GRU")


class _RecurrentBase(Module):
    """Shared body of RNN, LSTM and GRU (stacked, optionally bidirectional)."""

    _kind = "RNN"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, reset_after=True, *, dtype=np.float32, seed=None):
        super().__init__()
        fn = self._kind
        self.input_size = as_int(input_size, fn, "input_size", minimum=1)
        self.hidden_size = as_int(hidden_size, fn, "hidden_size", minimum=1)
        self.num_layers = as_int(num_layers, fn, "num_layers", minimum=1)
        self.nonlinearity = check_choice(nonlinearity, R.NONLINEARITIES, fn, "nonlinearity")
        for name, value in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional),
                            ("reset_after", reset_after)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{fn}: `{name}` must be a bool, got {value!r}")
        if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, (int, float, np.floating, np.integer)):
            raise TypeError(f"{fn}: `dropout` must be a number in [0, 1], got {dropout!r}")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"{fn}: `dropout` must be in [0, 1], got {dropout}")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn(f"{fn}: dropout={dropout} only acts between layers, so it does nothing with num_layers=1",
                          UserWarning, stacklevel=3)
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"{fn}: `dtype` must be float32 or float64, got {dtype!r}") from None
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{fn}: `dtype` must be float32 or float64, got {dtype}")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.reset_after = bool(reset_after)
        self.dtype = dtype
        self.mode = R.cell_mode(self._kind, self.nonlinearity, self.reset_after)
        self.bptt_steps = None
        self.grad_h0 = None
        self.grad_c0 = None
        self.grad_norms_per_step = None
        self._ctx = None
        self._rng = generator(seed)
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _names(self, layer, direction):
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        names = [f"weight_ih{suffix}", f"weight_hh{suffix}"]
        if self.bias:
            names += [f"bias_ih{suffix}", f"bias_hh{suffix}"]
        return names

    def reset_parameters(self, seed=None):
        """Draw every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch does."""
        rng = self._rng if seed is None else generator(seed)
        bound = 1.0 / np.sqrt(self.hidden_size)
        gates = GATE_COUNT[self.mode] * self.hidden_size
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else self.num_directions * self.hidden_size
            for d in range(self.num_directions):
                shapes = [(gates, in_size), (gates, self.hidden_size), (gates,), (gates,)]
                for name, shape in zip(self._names(layer, d), shapes):
                    self.register_parameter(name, rng.uniform(-bound, bound, size=shape).astype(self.dtype))

    def _weights(self):
        weights = []
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                arrays = [self._parameters[name] for name in self._names(layer, d)]
                if not self.bias:
                    arrays += [None, None]
                weights.append(tuple(arrays))
        return weights

    def _run(self, input, hx, lengths):
        keep = self.keeps_cache
        output, h_n, c_n, ctx = R.rnn_sequence(
            input, hx, self._weights(), self.mode, num_layers=self.num_layers, bidirectional=self.bidirectional,
            batch_first=self.batch_first, dropout=self.dropout, training=self.training, lengths=lengths,
            rng=self._rng, keep=keep, backend=self.backend, fn=f"{self._kind}.forward")
        self._ctx = ctx
        return output, h_n, c_n

    def _backward(self, grad_output, grad_h_n, grad_c_n, bptt_steps):
        fn = f"{self._kind}.backward"
        if self._ctx is None:
            raise RuntimeError(f"{fn}: no forward cache; call the layer in train mode outside fastml.no_grad() "
                               f"before backward")
        steps = self.bptt_steps if bptt_steps is None else bptt_steps
        grads = R.rnn_sequence_backward(self._ctx, grad_output, grad_h_n, grad_c_n, steps, fn=fn)
        for k, arrays in enumerate(grads.weights):
            layer, d = divmod(k, self.num_directions)
            for name, grad in zip(self._names(layer, d), arrays):
                self._accumulate(name, grad)
        self.grad_h0 = grads.h0
        self.grad_c0 = grads.c0
        self.grad_norms_per_step = grads.norms
        return grads.input

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self._kind == "RNN" and self.nonlinearity != "tanh":
            text += f", nonlinearity={self.nonlinearity!r}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        if self._kind == "GRU" and not self.reset_after:
            text += ", reset_after=False"
        if self.dtype != np.float32:
            text += f", dtype={self.dtype.name}"
        return text


class RNN(_RecurrentBase):
    r"""Elman RNN, as ``torch.nn.RNN``: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``.

    Args:
        input_size, hidden_size: features of x and of h.
        num_layers: stacked layers (each layer's output is the next one's input).
        nonlinearity: ``"tanh"`` or ``"relu"``.
        bias: use ``b_ih`` and ``b_hh``.
        batch_first: input and output are ``(N, T, F)`` instead of ``(T, N, F)``.
        dropout: dropout on the outputs of every layer but the last, in train mode.
        bidirectional: add a reverse-direction layer; outputs are concatenated.
        dtype: float32 (default) or float64 parameters; inputs must match.
        seed: int or ``np.random.Generator`` for the initialisation and the dropout masks.

    Shape:
        input ``(T, N, I)`` / ``(N, T, I)`` / unbatched ``(T, I)``; h0 ``(L*D, N, H)``;
        output ``(T, N, D*H)``; h_n ``(L*D, N, H)``.

    Example:
        >>> rnn = RNN(10, 20, num_layers=2)
        >>> output, h_n = rnn(np.zeros((5, 3, 10), np.float32))
        >>> grad_x = rnn.backward(np.ones_like(output))
    """

    _kind = "RNN"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, num_layers, nonlinearity, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, seed=seed)

    def forward(self, input, h0=None, *, lengths=None):
        """``(output, h_n)``; ``lengths`` (N,) marks each sequence's real length in a padded batch."""
        output, h_n, _ = self._run(input, h0, lengths)
        return output, h_n

    def backward(self, grad_output, grad_h_n=None, *, bptt_steps=None):
        """Gradient of the input; weight grads go to ``grads``, dL/dh0 to ``grad_h0``."""
        return self._backward(grad_output, grad_h_n, None, bptt_steps)


class LSTM(_RecurrentBase):
    r"""LSTM, as ``torch.nn.LSTM`` (gates i, f, g, o).

    ``i, f, o = σ(·)``, ``g = tanh(·)`` of ``x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh``;
    ``c_t = f * c_{t-1} + i * g``; ``h_t = o * tanh(c_t)``.

    Args: as :class:`RNN`, without ``nonlinearity``.

    Example:
        >>> lstm = LSTM(10, 20, bidirectional=True)
        >>> output, (h_n, c_n) = lstm(x, (h0, c0))
        >>> grad_x = lstm.backward(grad_output, grad_h_n, grad_c_n)
    """

    _kind = "LSTM"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, num_layers, "tanh", bias, batch_first, dropout, bidirectional,
                         dtype=dtype, seed=seed)

    def forward(self, input, hx=None, *, lengths=None):
        """``(output, (h_n, c_n))``; ``hx`` is ``(h0, c0)`` or None."""
        output, h_n, c_n = self._run(input, hx, lengths)
        return output, (h_n, c_n)

    def backward(self, grad_output, grad_h_n=None, grad_c_n=None, *, bptt_steps=None):
        """Gradient of the input; also accepts ``grad_h_n=(grad_h_n, grad_c_n)``. Sets ``grad_h0``/``grad_c0``."""
        if isinstance(grad_h_n, (tuple, list)) and grad_c_n is None:
            grad_h_n, grad_c_n = grad_h_n
        return self._backward(grad_output, grad_h_n, grad_c_n, bptt_steps)


class GRU(_RecurrentBase):
    r"""GRU (gates r, z, n), as ``torch.nn.GRU`` by default.

    ``r, z = σ(·)`` of ``x_t W_i^T + b_i + h_{t-1} W_h^T + b_h``;
    ``n = tanh(x_t W_in^T + b_in + r * (h_{t-1} W_hn^T + b_hn))`` (``reset_after=True``,
    PyTorch/cuDNN) or ``n = tanh(x_t W_in^T + b_in + (r * h_{t-1}) W_hn^T + b_hn)``
    (``reset_after=False``, Cho et al. 2014 / ONNX); ``h_t = (1 - z) * n + z * h_{t-1}``.

    Args: as :class:`RNN`, without ``nonlinearity``, plus ``reset_after``.
    """

    _kind = "GRU"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, reset_after=True, *, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, num_layers, "tanh", bias, batch_first, dropout, bidirectional,
                         reset_after, dtype=dtype, seed=seed)

    def forward(self, input, h0=None, *, lengths=None):
        output, h_n, _ = self._run(input, h0, lengths)
        return output, h_n

    def backward(self, grad_output, grad_h_n=None, *, bptt_steps=None):
        return self._backward(grad_output, grad_h_n, None, bptt_steps)
