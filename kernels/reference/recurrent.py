"""Recurrent layers (RNN, LSTM, GRU), readable NumPy: the spec of the equations.

One layer, one direction, a whole sequence, one time step at a time. The input
projection of step t is ``gx_t = x_t W_ih^T + b_ih`` (``(N, G*H)``, G gates),
the hidden projection ``gh_t = h_{t-1} W_hh^T + b_hh``; then, per cell
(σ = logistic sigmoid, * = elementwise)::

    rnn_tanh / rnn_relu:  h_t = act(gx_t + gh_t)
    lstm (gates i, f, g, o):
        i, f, o = σ(gx + gh)[i, f, o];  g = tanh(gx + gh)[g]
        c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
    gru (gates r, z, n), reset_after=True (PyTorch, cuDNN):
        r, z = σ(gx + gh)[r, z];  n = tanh(gx_n + r * gh_n)
        h_t = (1 - z) * n + z * h_{t-1}
    gru_reset_before (Cho et al. 2014, the ONNX default):
        r, z as above;  n = tanh(gx_n + (r * h_{t-1}) W_hn^T + b_hn)
        h_t = (1 - z) * n + z * h_{t-1}

Variable lengths: sequence b is real for t < lengths[b]; at padded steps its
state is left unchanged and its output is zero, so the forward direction ends
at its own last real step and the reverse direction (which walks t = T-1 .. 0)
starts there.

Backward is backpropagation through time: the same steps in reverse processing
order, ``dh`` carried from step to step. With ``bptt_steps = k`` the carried
gradient is cut every k steps of processing order (as if the state were
detached at those boundaries). ``norms[t]`` is ``||dL/dh_t||`` over the batch.

This module is also the one place that knows the gate layout: the gates are
stacked along the rows of ``W_ih``/``W_hh`` (and the columns of the
projections) in the order below; every other backend takes its offsets from
``GATE_COUNT`` and the ``*_GATE`` indices.
"""
from __future__ import annotations

import numpy as np

MODES = ("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before")
GATE_COUNT = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "gru_reset_before": 3}
# Gate order, as in PyTorch/cuDNN: LSTM (i, f, g, o), GRU (r, z, n).
LSTM_I, LSTM_F, LSTM_G, LSTM_O = 0, 1, 2, 3
GRU_R, GRU_Z, GRU_N = 0, 1, 2


def split_gates(array, mode, axis=-1):
    """The gate blocks of ``array`` along ``axis``, in gate order (views)."""
    return np.split(array, GATE_COUNT[mode], axis=axis)


def _sigmoid(v):
    return 0.5 + 0.5 * np.tanh(0.5 * v)  # = 1/(1+exp(-v)) without overflow


def _step(mode, x_t, h, c, w_ih, w_hh, b_ih, b_hh):
    """One time step for the whole batch: (h_t, c_t, saved intermediates)."""
    gx = x_t @ w_ih.T + b_ih
    if mode in ("rnn_tanh", "rnn_relu"):
        pre = gx + h @ w_hh.T + b_hh
        h_new = np.tanh(pre) if mode == "rnn_tanh" else np.where(pre < 0, 0, pre).astype(pre.dtype)
        return h_new, None, {"act": h_new}
    if mode == "lstm":
        i, f, g, o = split_gates(gx + h @ w_hh.T + b_hh, mode)
        i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
        c_new = f * c + i * g
        tanh_c = np.tanh(c_new)
        return o * tanh_c, c_new, {"i": i, "f": f, "g": g, "o": o, "tanh_c": tanh_c}
    gx_r, gx_z, gx_n = split_gates(gx, mode)
    w_hr, w_hz, w_hn = split_gates(w_hh, mode, axis=0)
    b_hr, b_hz, b_hn = split_gates(b_hh, mode)
    r = _sigmoid(gx_r + h @ w_hr.T + b_hr)
    z = _sigmoid(gx_z + h @ w_hz.T + b_hz)
    if mode == "gru":
        gh_n = h @ w_hn.T + b_hn
        n = np.tanh(gx_n + r * gh_n)
    else:
        gh_n = (r * h) @ w_hn.T + b_hn
        n = np.tanh(gx_n + gh_n)
    h_new = (1 - z) * n + z * h
    return h_new, None, {"r": r, "z": z, "n": n, "gh_n": gh_n}


def _order(seq_len, reverse):
    return range(seq_len - 1, -1, -1) if reverse else range(seq_len)


def recurrent_forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, keep):
    """Run one layer and direction over ``x`` (T, N, I).

    ``c0`` is used by ``lstm`` only; ``lengths`` is an int64 ``(N,)`` array.
    Returns ``(output (T, N, H), h_n, c_n or None, saved)``; ``saved`` (None
    unless ``keep``) is what :func:`recurrent_backward` needs.
    """
    seq_len = x.shape[0]
    h, c = h0.copy(), (c0.copy() if mode == "lstm" else None)
    out = np.zeros((seq_len,) + h0.shape, dtype=x.dtype)
    for t in _order(seq_len, reverse):
        active = (t < lengths)[:, None]
        h_new, c_new, _ = _step(mode, x[t], h, c, w_ih, w_hh, b_ih, b_hh)
        out[t] = np.where(active, h_new, 0)
        h = np.where(active, h_new, h)
        if c is not None:
            c = np.where(active, c_new, c)
    saved = (mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse) if keep else None
    return out, h, c, saved


def recurrent_backward(saved, grad_out, grad_h_n, grad_c_n, bptt_steps):
    """BPTT through the sequence of :func:`recurrent_forward`.

    ``grad_h_n``/``grad_c_n`` may be None (zero). ``bptt_steps`` 0 means full BPTT.
    Returns ``(grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, norms)``.
    """
    mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse = saved
    seq_len = x.shape[0]
    # Replay the forward pass, keeping each step's state and intermediates.
    h, c = h0.copy(), (c0.copy() if mode == "lstm" else None)
    states = {}
    for t in _order(seq_len, reverse):
        h_new, c_new, inter = _step(mode, x[t], h, c, w_ih, w_hh, b_ih, b_hh)
        states[t] = (h, c, inter)
        active = (t < lengths)[:, None]
        h = np.where(active, h_new, h)
        if c is not None:
            c = np.where(active, c_new, c)

    grad_x = np.zeros_like(x)
    grad_w_ih, grad_w_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    grad_b_ih, grad_b_hh = np.zeros_like(b_ih), np.zeros_like(b_hh)
    norms = np.zeros(seq_len, dtype=x.dtype)
    dh_next = np.zeros_like(h0) if grad_h_n is None else grad_h_n.copy()
    dc_next = None
    if mode == "lstm":
        dc_next = np.zeros_like(h0) if grad_c_n is None else grad_c_n.copy()
    order = list(_order(seq_len, reverse))
    for s in range(seq_len - 1, -1, -1):
        t = order[s]
        active = (t < lengths)[:, None]
        h_prev, c_prev, inter = states[t]
        dh = dh_next + grad_out[t] * active
        norms[t] = np.sqrt(np.sum(dh * dh))
        dh_prev, dc_prev = np.zeros_like(dh), None
        if mode in ("rnn_tanh", "rnn_relu"):
            act = inter["act"]
            dpre = dh * (1 - act * act) if mode == "rnn_tanh" else dh * (act > 0)
            dgx = dgh = dpre
            dh_prev = dpre @ w_hh
        elif mode == "lstm":
            i, f, g, o, tanh_c = (inter[k] for k in ("i", "f", "g", "o", "tanh_c"))
            dc = dc_next + dh * o * (1 - tanh_c * tanh_c)
            dgx = dgh = np.concatenate([
                dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g), dh * tanh_c * o * (1 - o),
            ], axis=1)
            dh_prev = dgh @ w_hh
            dc_prev = dc * f
        else:
            r, z, n, gh_n = (inter[k] for k in ("r", "z", "n", "gh_n"))
            w_hr, w_hz, w_hn = split_gates(w_hh, mode, axis=0)
            dn = dh * (1 - z) * (1 - n * n)
            dz = dh * (h_prev - n) * z * (1 - z)
            if mode == "gru":
                dr = dn * gh_n * r * (1 - r)
                dgx = np.concatenate([dr, dz, dn], axis=1)
                dgh = np.concatenate([dr, dz, dn * r], axis=1)
                dh_prev = dh * z + dgh @ w_hh
            else:
                d_rh = dn @ w_hn
                dr = d_rh * h_prev * r * (1 - r)
                dgx = dgh = np.concatenate([dr, dz, dn], axis=1)
                dh_prev = dh * z + d_rh * r + dr @ w_hr + dz @ w_hz
        dgx, dgh = dgx * active, dgh * active  # padded steps contribute nothing
        grad_x[t] = dgx @ w_ih
        grad_w_ih += dgx.T @ x[t]
        grad_b_ih += dgx.sum(axis=0)
        grad_b_hh += dgh.sum(axis=0)
        if mode == "gru_reset_before":
            dr_, dz_, dn_ = split_gates(dgh, mode)
            g_hr, g_hz, g_hn = split_gates(grad_w_hh, mode, axis=0)
            g_hr += dr_.T @ h_prev
            g_hz += dz_.T @ h_prev
            g_hn += dn_.T @ (inter["r"] * h_prev)
        else:
            grad_w_hh += dgh.T @ h_prev
        dh_next = np.where(active, dh_prev, dh)
        if mode == "lstm":
            dc_next = np.where(active, dc_prev, dc_next)
        if bptt_steps and s % bptt_steps == 0 and s > 0:
            dh_next = np.zeros_like(dh_next)
            if dc_next is not None:
                dc_next = np.zeros_like(dc_next)
    return grad_x, dh_next, dc_next, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, norms
