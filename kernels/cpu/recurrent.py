"""Recurrent layers on the CPU: the whole time loop in compiled code.

Same contract and equations as ``kernels/reference/recurrent.py`` (the spec,
and the one place that defines the gate layout). Per layer and direction:

* forward: one BLAS GEMM projects the inputs of all time steps at once
  (``(T*N, I) @ W_ih^T``, NumPy); then a single ``@njit`` loop runs every
  step: the hidden projection ``h @ W_hh^T`` (BLAS ``np.dot`` for large
  batches, a register-friendly loop for small ones, see ``config``) and one
  fused pass over the gates. The projection buffer is overwritten in place
  with the gate activations, which is what backward needs.
* backward (BPTT): one ``@njit`` loop in reverse processing order computes the
  gate gradients of every step and carries ``dh`` (and ``dc``) back with one
  ``(N, G*H) @ W_hh`` product per step; the weight, bias and input gradients
  are then three big GEMMs over all steps at once.

float32 gates use a rational tanh approximation (Eigen's, |error| < 4e-7,
branch-free so LLVM vectorises it; NaN propagates) and
``sigmoid(v) = 0.5 + 0.5 * tanh(v / 2)``; float64 uses ``np.tanh``.
No ``prange``: the only parallelism is BLAS's own threads.
"""
from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from .. import config
from .._jit import njit
from ..reference.recurrent import GRU_N, GRU_R, GRU_Z, LSTM_F, LSTM_G, LSTM_I, LSTM_O


# --- activations -------------------------------------------------------------------------------
def _tanh(v):
    return np.tanh(v)


@overload(_tanh)
def _tanh_overload(v):
    if v == types.float32:
        def tanh_rational(v):
            # Eigen's generic_fast_tanh_float: odd/even minimax polynomials on [-7.9, 7.9].
            clamp = np.float32(7.90531110763549805)
            if v > clamp:
                v = clamp
            elif v < -clamp:
                v = -clamp
            v2 = v * v
            p = v2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
            p = p * v2 + np.float32(-8.60467152213735e-11)
            p = p * v2 + np.float32(5.12229709037114e-08)
            p = p * v2 + np.float32(1.48572235717979e-05)
            p = p * v2 + np.float32(6.37261928875436e-04)
            p = p * v2 + np.float32(4.89352455891786e-03)
            q = v2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
            q = q * v2 + np.float32(2.26843463243900e-03)
            q = q * v2 + np.float32(4.89352518554385e-03)
            return p * v / q
        return tanh_rational
    return lambda v: np.tanh(v)


def _sigmoid(v):
    return 0.5 + 0.5 * np.tanh(0.5 * v)


@overload(_sigmoid)
def _sigmoid_overload(v):
    # 1/(1+exp(-v)) without overflow, and with the constants in v's own precision.
    if v == types.float32:
        return lambda v: np.float32(0.5) + np.float32(0.5) * _tanh(np.float32(0.5) * v)
    return lambda v: 0.5 + 0.5 * _tanh(0.5 * v)


# --- the per-step hidden projection --------------------------------------------------------------
@njit
def _matmul(a, b, out, blas_min_rows):
    """out = a @ b for C-contiguous a (N, K), b (K, M): BLAS for tall a, a plain loop for a few rows.

    A BLAS call costs a few microseconds of fixed overhead, more than the whole
    product for one sequence with H = 64; the loop below streams rows of b
    with the output row held in cache and vectorises over M.
    """
    rows, inner = a.shape
    if rows >= blas_min_rows:
        np.dot(a, b, out)
        return
    cols = b.shape[1]
    zero = out.dtype.type(0)
    for n in range(rows):
        for m in range(cols):
            out[n, m] = zero
        for k in range(inner):
            a_nk = a[n, k]
            for m in range(cols):
                out[n, m] += a_nk * b[k, m]


@njit
def _matmul_accumulate(a, b, out, scratch, blas_min_rows):
    """out += a @ b, through ``scratch`` (same shape as out)."""
    _matmul(a, b, scratch, blas_min_rows)
    rows, cols = out.shape
    for n in range(rows):
        for m in range(cols):
            out[n, m] += scratch[n, m]


@njit
def _time(s, seq_len, reverse):
    return seq_len - 1 - s if reverse else s


# --- forward loops ------------------------------------------------------------------------------
@njit
def _rnn_forward(gates, h, w_hh_t, bias, lengths, reverse, relu, out, blas_min_rows):
    """gates (T, N, H) holds x W_ih^T on entry, the activations on exit; h (N, H) is h0 -> h_n."""
    seq_len, batch, hidden = gates.shape
    zero = gates.dtype.type(0)
    proj = np.empty((batch, hidden), dtype=gates.dtype)
    for s in range(seq_len):
        t = _time(s, seq_len, reverse)
        _matmul(h, w_hh_t, proj, blas_min_rows)
        for n in range(batch):
            g = gates[t, n]
            p = proj[n]
            o = out[t, n]
            if t >= lengths[n]:
                o[:] = zero
                continue
            hn = h[n]
            for j in range(hidden):
                v = g[j] + p[j] + bias[j]
                if relu:
                    v = zero if v < zero else v
                else:
                    v = _tanh(v)
                g[j] = v
                o[j] = v
                hn[j] = v


@njit
def _lstm_forward(gates, h, c, w_hh_t, bias, lengths, reverse, out, cells, blas_min_rows):
    """LSTM steps; ``cells`` is (T, N, H) to keep c_t for backward, or (1, N, H) scratch."""
    seq_len, batch, four_h = gates.shape
    hidden = four_h // 4
    keep = cells.shape[0] == seq_len
    zero = gates.dtype.type(0)
    oi, of, og, oo = LSTM_I * hidden, LSTM_F * hidden, LSTM_G * hidden, LSTM_O * hidden
    proj = np.empty((batch, four_h), dtype=gates.dtype)
    for s in range(seq_len):
        t = _time(s, seq_len, reverse)
        _matmul(h, w_hh_t, proj, blas_min_rows)
        cell_t = cells[t if keep else 0]
        for n in range(batch):
            g = gates[t, n]
            p = proj[n]
            o = out[t, n]
            if t >= lengths[n]:
                o[:] = zero
                continue
            hn, cn, kept = h[n], c[n], cell_t[n]
            for j in range(hidden):
                gi = _sigmoid(g[oi + j] + p[oi + j] + bias[oi + j])
                gf = _sigmoid(g[of + j] + p[of + j] + bias[of + j])
                gg = _tanh(g[og + j] + p[og + j] + bias[og + j])
                go = _sigmoid(g[oo + j] + p[oo + j] + bias[oo + j])
                c_new = gf * cn[j] + gi * gg
                h_new = go * _tanh(c_new)
                g[oi + j] = gi
                g[of + j] = gf
                g[og + j] = gg
                g[oo + j] = go
                cn[j] = c_new
                kept[j] = c_new
                hn[j] = h_new
                o[j] = h_new


@njit
def _gru_forward(gates, h, w_hh_t, bias, bias_hn, lengths, reverse, out, hidden_n, blas_min_rows):
    """GRU, reset after the hidden product; ``hidden_n`` keeps W_hn h + b_hn (T or 1, N, H)."""
    seq_len, batch, three_h = gates.shape
    hidden = three_h // 3
    keep = hidden_n.shape[0] == seq_len
    zero, one = gates.dtype.type(0), gates.dtype.type(1)
    orr, oz, on = GRU_R * hidden, GRU_Z * hidden, GRU_N * hidden
    proj = np.empty((batch, three_h), dtype=gates.dtype)
    for s in range(seq_len):
        t = _time(s, seq_len, reverse)
        _matmul(h, w_hh_t, proj, blas_min_rows)
        kept_t = hidden_n[t if keep else 0]
        for n in range(batch):
            g = gates[t, n]
            p = proj[n]
            o = out[t, n]
            if t >= lengths[n]:
                o[:] = zero
                continue
            hn, kept = h[n], kept_t[n]
            for j in range(hidden):
                r = _sigmoid(g[orr + j] + p[orr + j] + bias[orr + j])
                z = _sigmoid(g[oz + j] + p[oz + j] + bias[oz + j])
                gh_n = p[on + j] + bias_hn[j]
                nn = _tanh(g[on + j] + bias[on + j] + r * gh_n)
                h_new = (one - z) * nn + z * hn[j]
                g[orr + j] = r
                g[oz + j] = z
                g[on + j] = nn
                kept[j] = gh_n
                hn[j] = h_new
                o[j] = h_new


@njit
def _gru_reset_before_forward(gates, h, w_hrz_t, w_hn_t, bias, bias_hn, lengths, reverse, out, reset_h,
                              blas_min_rows):
    """GRU, reset before the hidden product (Cho et al.); ``reset_h`` keeps r * h_{t-1}."""
    seq_len, batch, three_h = gates.shape
    hidden = three_h // 3
    keep = reset_h.shape[0] == seq_len
    zero, one = gates.dtype.type(0), gates.dtype.type(1)
    orr, oz, on = GRU_R * hidden, GRU_Z * hidden, GRU_N * hidden
    proj_rz = np.empty((batch, 2 * hidden), dtype=gates.dtype)
    proj_n = np.empty((batch, hidden), dtype=gates.dtype)
    for s in range(seq_len):
        t = _time(s, seq_len, reverse)
        _matmul(h, w_hrz_t, proj_rz, blas_min_rows)
        rh = reset_h[t if keep else 0]
        for n in range(batch):
            g = gates[t, n]
            p = proj_rz[n]
            hn, rhn = h[n], rh[n]
            for j in range(hidden):
                r = _sigmoid(g[orr + j] + p[j] + bias[orr + j])
                z = _sigmoid(g[oz + j] + p[hidden + j] + bias[oz + j])
                g[orr + j] = r
                g[oz + j] = z
                rhn[j] = r * hn[j]
        _matmul(rh, w_hn_t, proj_n, blas_min_rows)
        for n in range(batch):
            g = gates[t, n]
            p = proj_n[n]
            o = out[t, n]
            if t >= lengths[n]:
                o[:] = zero
                continue
            hn = h[n]
            for j in range(hidden):
                z = g[oz + j]
                nn = _tanh(g[on + j] + bias[on + j] + p[j] + bias_hn[j])
                h_new = (one - z) * nn + z * hn[j]
                g[on + j] = nn
                hn[j] = h_new
                o[j] = h_new


# --- backward loops -----------------------------------------------------------------------------
@njit
def _gather_dh(grad_out, dh_carry, t, n, dh):
    """dh = dL/dh_t for row n: the output's gradient plus the one carried from later steps."""
    g = grad_out[t, n]
    d = dh_carry[n]
    total = dh.dtype.type(0)
    for j in range(dh.shape[0]):
        v = d[j] + g[j]
        dh[j] = v
        total += v * v
    return total


@njit
def _row_norm2(row):
    total = row.dtype.type(0)
    for j in range(row.shape[0]):
        total += row[j] * row[j]
    return total


@njit
def _truncate(s, bptt_steps):
    return bptt_steps > 0 and s > 0 and s % bptt_steps == 0


@njit
def _rnn_backward(gates, grad_out, dh_carry, w_hh, lengths, reverse, relu, bptt_steps, grad_gates, norms,
                  blas_min_rows):
    """dh_carry enters as grad_h_n and leaves as grad_h0; grad_gates (T, N, H) receives dL/d(pre-activation)."""
    seq_len, batch, hidden = gates.shape
    zero, one = gates.dtype.type(0), gates.dtype.type(1)
    dh = np.empty(hidden, dtype=gates.dtype)
    back = np.empty((batch, hidden), dtype=gates.dtype)
    for s in range(seq_len - 1, -1, -1):
        t = _time(s, seq_len, reverse)
        total = zero
        for n in range(batch):
            dg = grad_gates[t, n]
            if t >= lengths[n]:
                dg[:] = zero
                total += _row_norm2(dh_carry[n])
                continue
            total += _gather_dh(grad_out, dh_carry, t, n, dh)
            a = gates[t, n]
            for j in range(hidden):
                if relu:
                    dg[j] = dh[j] if a[j] > zero else zero
                else:
                    dg[j] = dh[j] * (one - a[j] * a[j])
        norms[t] = np.sqrt(total)
        _matmul(grad_gates[t], w_hh, back, blas_min_rows)
        for n in range(batch):
            if t < lengths[n]:
                dh_carry[n, :] = back[n]
        if _truncate(s, bptt_steps):
            dh_carry[:, :] = zero


@njit
def _lstm_backward(gates, cells, c_prev, grad_out, dh_carry, dc_carry, w_hh, lengths, reverse, bptt_steps,
                   grad_gates, norms, blas_min_rows):
    seq_len, batch, four_h = gates.shape
    hidden = four_h // 4
    zero, one = gates.dtype.type(0), gates.dtype.type(1)
    oi, of, og, oo = LSTM_I * hidden, LSTM_F * hidden, LSTM_G * hidden, LSTM_O * hidden
    dh = np.empty(hidden, dtype=gates.dtype)
    back = np.empty((batch, hidden), dtype=gates.dtype)
    for s in range(seq_len - 1, -1, -1):
        t = _time(s, seq_len, reverse)
        total = zero
        for n in range(batch):
            dg = grad_gates[t, n]
            if t >= lengths[n]:
                dg[:] = zero
                total += _row_norm2(dh_carry[n])
                continue
            total += _gather_dh(grad_out, dh_carry, t, n, dh)
            g, cn, cp, dc = gates[t, n], cells[t, n], c_prev[t, n], dc_carry[n]
            for j in range(hidden):
                gi, gf, gg, go = g[oi + j], g[of + j], g[og + j], g[oo + j]
                tanh_c = _tanh(cn[j])
                d_c = dc[j] + dh[j] * go * (one - tanh_c * tanh_c)
                dg[oi + j] = d_c * gg * gi * (one - gi)
                dg[of + j] = d_c * cp[j] * gf * (one - gf)
                dg[og + j] = d_c * gi * (one - gg * gg)
                dg[oo + j] = dh[j] * tanh_c * go * (one - go)
                dc[j] = d_c * gf
        norms[t] = np.sqrt(total)
        _matmul(grad_gates[t], w_hh, back, blas_min_rows)
        for n in range(batch):
            if t < lengths[n]:
                dh_carry[n, :] = back[n]
        if _truncate(s, bptt_steps):
            dh_carry[:, :] = zero
            dc_carry[:, :] = zero


@njit
def _gru_backward(gates, hidden_n, h_prev, grad_out, dh_carry, w_hh, lengths, reverse, bptt_steps,
                  grad_x_gates, grad_h_gates, norms, blas_min_rows):
    """grad_x_gates: dL/d(x W_ih^T + b_ih) per gate; grad_h_gates: dL/d(h W_hh^T + b_hh) (n differs by r)."""
    seq_len, batch, three_h = gates.shape
    hidden = three_h // 3
    zero, one = gates.dtype.type(0), gates.dtype.type(1)
    orr, oz, on = GRU_R * hidden, GRU_Z * hidden, GRU_N * hidden
    dh = np.empty(hidden, dtype=gates.dtype)
    back = np.empty((batch, hidden), dtype=gates.dtype)
    direct = np.empty((batch, hidden), dtype=gates.dtype)
    for s in range(seq_len - 1, -1, -1):
        t = _time(s, seq_len, reverse)
        total = zero
        for n in range(batch):
            dgx, dgh = grad_x_gates[t, n], grad_h_gates[t, n]
            if t >= lengths[n]:
                dgx[:] = zero
                dgh[:] = zero
                total += _row_norm2(dh_carry[n])
                continue
            total += _gather_dh(grad_out, dh_carry, t, n, dh)
            g, ghn, hp, dd = gates[t, n], hidden_n[t, n], h_prev[t, n], direct[n]
            for j in range(hidden):
                r, z, nn = g[orr + j], g[oz + j], g[on + j]
                d_n = dh[j] * (one - z) * (one - nn * nn)
                d_z = dh[j] * (hp[j] - nn) * z * (one - z)
                d_r = d_n * ghn[j] * r * (one - r)
                dgx[orr + j] = d_r
                dgx[oz + j] = d_z
                dgx[on + j] = d_n
                dgh[orr + j] = d_r
                dgh[oz + j] = d_z
                dgh[on + j] = d_n * r
                dd[j] = dh[j] * z
        norms[t] = np.sqrt(total)
        _matmul(grad_h_gates[t], w_hh, back, blas_min_rows)
        for n in range(batch):
            if t < lengths[n]:
                for j in range(hidden):
                    dh_carry[n, j] = direct[n, j] + back[n, j]
        if _truncate(s, bptt_steps):
            dh_carry[:, :] = zero


@njit
def _gru_reset_before_backward(gates, h_prev, grad_out, dh_carry, w_hrz, w_hn, lengths, reverse, bptt_steps,
                               grad_gates, norms, blas_min_rows):
    seq_len, batch, three_h = gates.shape
    hidden = three_h // 3
    zero, one = gates.dtype.type(0), gates.dtype.type(1)
    orr, oz, on = GRU_R * hidden, GRU_Z * hidden, GRU_N * hidden
    dh = np.empty(hidden, dtype=gates.dtype)
    d_n_all = np.zeros((batch, hidden), dtype=gates.dtype)
    d_rz = np.zeros((batch, 2 * hidden), dtype=gates.dtype)
    d_rh = np.empty((batch, hidden), dtype=gates.dtype)
    back = np.empty((batch, hidden), dtype=gates.dtype)
    direct = np.empty((batch, hidden), dtype=gates.dtype)
    active = np.empty(batch, dtype=np.bool_)
    for s in range(seq_len - 1, -1, -1):
        t = _time(s, seq_len, reverse)
        total = zero
        for n in range(batch):
            active[n] = t < lengths[n]
            if not active[n]:
                grad_gates[t, n, :] = zero
                d_n_all[n, :] = zero
                total += _row_norm2(dh_carry[n])
                continue
            total += _gather_dh(grad_out, dh_carry, t, n, dh)
            g, hp, dg, dd, dn_row = gates[t, n], h_prev[t, n], grad_gates[t, n], direct[n], d_n_all[n]
            for j in range(hidden):
                z, nn = g[oz + j], g[on + j]
                d_n = dh[j] * (one - z) * (one - nn * nn)
                dg[oz + j] = dh[j] * (hp[j] - nn) * z * (one - z)
                dg[on + j] = d_n
                dn_row[j] = d_n
                dd[j] = dh[j] * z
        norms[t] = np.sqrt(total)
        _matmul(d_n_all, w_hn, d_rh, blas_min_rows)
        for n in range(batch):
            if not active[n]:
                d_rz[n, :] = zero
                continue
            g, hp, dg, dd, drh = gates[t, n], h_prev[t, n], grad_gates[t, n], direct[n], d_rh[n]
            for j in range(hidden):
                r = g[orr + j]
                d_r = drh[j] * hp[j] * r * (one - r)
                dg[orr + j] = d_r
                d_rz[n, j] = d_r
                d_rz[n, hidden + j] = dg[oz + j]
                dd[j] += drh[j] * r
        _matmul(d_rz, w_hrz, back, blas_min_rows)
        for n in range(batch):
            if active[n]:
                for j in range(hidden):
                    dh_carry[n, j] = direct[n, j] + back[n, j]
        if _truncate(s, bptt_steps):
            dh_carry[:, :] = zero


# --- entry points (same signatures as the reference) --------------------------------------------
def _previous(states, initial, lengths, reverse):
    """(T, N, H): the state entering each step, from the per-step states (active rows only matter)."""
    prev = np.empty_like(states)
    if reverse:
        prev[:-1] = states[1:]
        prev[-1] = initial
        # The reverse direction of a shorter sequence starts at its own last real step.
        rows = np.arange(states.shape[1])
        prev[lengths - 1, rows] = initial
    else:
        prev[1:] = states[:-1]
        prev[0] = initial
    return prev


def _blas_min_rows():
    return int(config.RECURRENT_BLAS_MIN_BATCH)


def recurrent_forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, keep):
    seq_len, batch, input_size = x.shape
    hidden = h0.shape[1]
    blas = _blas_min_rows()
    gates = (x.reshape(seq_len * batch, input_size) @ w_ih.T).reshape(seq_len, batch, -1)
    out = np.empty((seq_len, batch, hidden), dtype=x.dtype)
    h = h0.copy()
    c = None
    extra = None
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    kept = seq_len if keep else 1
    if mode in ("rnn_tanh", "rnn_relu"):
        _rnn_forward(gates, h, np.ascontiguousarray(w_hh.T), b_ih + b_hh, lengths, reverse, mode == "rnn_relu",
                     out, blas)
    elif mode == "lstm":
        c = c0.copy()
        extra = np.empty((kept, batch, hidden), dtype=x.dtype)
        _lstm_forward(gates, h, c, np.ascontiguousarray(w_hh.T), b_ih + b_hh, lengths, reverse, out, extra, blas)
    else:
        # r and z take both biases; n keeps b_hn apart (it sits inside r * (...) or after W_hn (r*h)).
        bias = b_ih + b_hh
        bias[GRU_N * hidden:(GRU_N + 1) * hidden] = b_ih[GRU_N * hidden:(GRU_N + 1) * hidden]
        bias_hn = np.ascontiguousarray(b_hh[GRU_N * hidden:(GRU_N + 1) * hidden])
        extra = np.empty((kept, batch, hidden), dtype=x.dtype)
        if mode == "gru":
            _gru_forward(gates, h, np.ascontiguousarray(w_hh.T), bias, bias_hn, lengths, reverse, out, extra, blas)
        else:
            w_hrz_t = np.ascontiguousarray(w_hh[:2 * hidden].T)
            w_hn_t = np.ascontiguousarray(w_hh[GRU_N * hidden:].T)
            _gru_reset_before_forward(gates, h, w_hrz_t, w_hn_t, bias, bias_hn, lengths, reverse, out, extra, blas)
    saved = (mode, x, h0, c0, w_ih, w_hh, lengths, reverse, gates, out, extra) if keep else None
    return out, h, c, saved


def recurrent_backward(saved, grad_out, grad_h_n, grad_c_n, bptt_steps):
    mode, x, h0, c0, w_ih, w_hh, lengths, reverse, gates, out, extra = saved
    seq_len, batch, input_size = x.shape
    hidden = h0.shape[1]
    rows = seq_len * batch
    blas = _blas_min_rows()
    grad_out = np.ascontiguousarray(grad_out)
    dh = np.zeros_like(h0) if grad_h_n is None else np.array(grad_h_n, dtype=x.dtype, order="C")
    dc = None
    norms = np.empty(seq_len, dtype=x.dtype)
    h_prev = _previous(out, h0, lengths, reverse)
    grad_gates = np.empty_like(gates)
    grad_h_gates = grad_gates
    if mode in ("rnn_tanh", "rnn_relu"):
        _rnn_backward(gates, grad_out, dh, w_hh, lengths, reverse, mode == "rnn_relu", bptt_steps, grad_gates,
                      norms, blas)
    elif mode == "lstm":
        dc = np.zeros_like(h0) if grad_c_n is None else np.array(grad_c_n, dtype=x.dtype, order="C")
        c_prev = _previous(extra, c0, lengths, reverse)
        _lstm_backward(gates, extra, c_prev, grad_out, dh, dc, w_hh, lengths, reverse, bptt_steps, grad_gates,
                       norms, blas)
    elif mode == "gru":
        grad_h_gates = np.empty_like(gates)
        _gru_backward(gates, extra, h_prev, grad_out, dh, w_hh, lengths, reverse, bptt_steps, grad_gates,
                      grad_h_gates, norms, blas)
    else:
        w_hn = np.ascontiguousarray(w_hh[GRU_N * hidden:])
        _gru_reset_before_backward(gates, h_prev, grad_out, dh, np.ascontiguousarray(w_hh[:2 * hidden]), w_hn,
                                   lengths, reverse, bptt_steps, grad_gates, norms, blas)
    g2 = grad_gates.reshape(rows, -1)
    grad_x = (g2 @ w_ih).reshape(seq_len, batch, input_size)
    grad_w_ih = g2.T @ x.reshape(rows, input_size)
    grad_b_ih = g2.sum(axis=0)
    gh2 = grad_h_gates.reshape(rows, -1)
    if mode == "gru_reset_before":
        n_block = slice(GRU_N * hidden, (GRU_N + 1) * hidden)
        grad_w_hh = np.empty_like(w_hh)
        grad_w_hh[:2 * hidden] = gh2[:, :2 * hidden].T @ h_prev.reshape(rows, hidden)
        grad_w_hh[n_block] = gh2[:, n_block].T @ extra.reshape(rows, hidden)
    else:
        grad_w_hh = gh2.T @ h_prev.reshape(rows, hidden)
    grad_b_hh = grad_b_ih if grad_h_gates is grad_gates else gh2.sum(axis=0)
    if grad_b_hh is grad_b_ih:
        grad_b_hh = grad_b_ih.copy()
    return grad_x, dh, dc, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, norms
