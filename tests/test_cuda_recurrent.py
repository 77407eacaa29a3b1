"""The CUDA recurrent time loop (RNN/LSTM/GRU, every mode) against the reference: forward and BPTT."""
from __future__ import annotations

import numpy as np
import pytest

from _compare import assert_close
from _cuda import DTYPES, host, random, requires_cuda

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
