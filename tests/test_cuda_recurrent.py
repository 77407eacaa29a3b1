"""The CUDA recurrent time loop (RNN/LSTM/GRU, every mode) against the reference: forward and BPTT."""
from __future__ import annotations

import numpy as np
import pytest
from _compare import assert_close
from _cuda import DTYPES, host, random, requires_cuda

import fastml

F = fastml.F
pytestmark = requires_cuda

MODES = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_recurrent_forward_backward(rng, mode, dtype):
    from fastml.kernels.cuda import recurrent as cuda_k
    from fastml.kernels.reference import recurrent as ref

    seq_len, batch, in_size, hidden = 3, 2, 3, 2
    gates = ref.GATE_COUNT[mode] * hidden
    x = random(rng, (seq_len, batch, in_size), dtype)
    h0, c0 = random(rng, (batch, hidden), dtype), random(rng, (batch, hidden), dtype)
    c0 = c0 if mode == "lstm" else None
    weights = [random(rng, shape, dtype) for shape in [(gates, in_size), (gates, hidden), (gates,), (gates,)]]
    lengths = np.array([3, 2], dtype=np.int64)  # one padded sequence
    reverse = dtype == np.float64  # each mode runs both directions across the two dtypes
    expected = ref.recurrent_forward(mode, x, h0, c0, *weights, lengths, reverse, True)
    got = cuda_k.recurrent_forward(mode, x, h0, c0, *weights, lengths, reverse, True)
    for name, a, b in zip(("output", "h_n", "c_n"), got[:3], expected[:3]):
        if b is not None:
            assert_close(host(a), b, dtype=dtype, err_msg=name)
    grad_out, grad_h = random(rng, (seq_len, batch, hidden), dtype), random(rng, (batch, hidden), dtype)
    grad_c = grad_h if mode == "lstm" else None
    for bptt_steps in (0, 2):
        want = ref.recurrent_backward(expected[3], grad_out, grad_h, grad_c, bptt_steps)
        have = cuda_k.recurrent_backward(got[3], grad_out, grad_h, grad_c, bptt_steps)
        names = ("grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_b_ih", "grad_b_hh", "norms")
        for name, a, b in zip(names, have, want):
            if b is not None:
                assert_close(host(a), b, dtype=dtype, err_msg=f"{name} bptt={bptt_steps}")



CELLS = [("rnn_cell", {"nonlinearity": "relu"}), ("lstm_cell", {}), ("gru_cell", {"reset_after": False})]


def _flat(result):
    """A cell's result as a flat list of arrays (LSTM nests its state pair)."""
    items = []
    for item in result if isinstance(result, tuple) else (result,):
        items.extend(item if isinstance(item, tuple) else (item,))
    return items


@pytest.mark.parametrize("name,kwargs", CELLS, ids=[name for name, _ in CELLS])
def test_cells_run_on_the_device(rng, name, kwargs):
    """A cell is a one-step sequence: forward and backward stay on the device and equal the reference."""
    dtype = np.float32
    batch, in_size, hidden = 2, 3, 2
    gates = {"rnn_cell": 1, "lstm_cell": 4, "gru_cell": 3}[name] * hidden
    x = random(rng, (batch, in_size), dtype)
    h = random(rng, (batch, hidden), dtype)
    state = (h, random(rng, (batch, hidden), dtype)) if name == "lstm_cell" else h
    weights = [random(rng, shape, dtype) for shape in [(gates, in_size), (gates, hidden), (gates,), (gates,)]]
    grads = [random(rng, (batch, hidden), dtype) for _ in range(2 if name == "lstm_cell" else 1)]
    x_d, *weights_d = (fastml.to_device(a) for a in [x, *weights])
    state_d = tuple(map(fastml.to_device, state)) if name == "lstm_cell" else fastml.to_device(state)
    forward, backward = getattr(F, name), getattr(F, f"{name}_backward")
    want = forward(x, state, *weights, **kwargs, backend="reference")
    got = forward(x_d, state_d, *weights_d, **kwargs, backend="cuda")
    for a, b in zip(_flat(got), _flat(want)):
        assert_close(host(a), b)
    want = backward(*grads, x, state, *weights, **kwargs, backend="reference")
    got = backward(*map(fastml.to_device, grads), x_d, state_d, *weights_d, **kwargs, backend="cuda")
    for i, (a, b) in enumerate(zip(_flat(got), _flat(want))):
        assert_close(host(a), b, err_msg=f"{name}_backward result {i}")
    # unbatched host input, no bias, zero state: copied once, the result a device array of the unbatched shape
    got = _flat(forward(x[0], None, *weights[:2], **kwargs, backend="cuda"))
    want = _flat(forward(x[0], None, *weights[:2], **kwargs, backend="reference"))
    for a, b in zip(got, want):
        assert_close(host(a), b)
