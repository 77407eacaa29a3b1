"""Recurrent layers on the CPU: the whole time loop in compiled code.

Same contract and equations as ``kernels/reference/recurrent.py`` (the spec,
and the one place that defines the gate layout). Two paths per layer and
direction, chosen by batch size (``config.RECURRENT_BLAS_MIN_BATCH``):

* **batched** (N >= 8; RNN, LSTM, GRU with reset after): time-major,
  batch-minor arrays and one prange region per step over chunks of hidden
  units, each worker computing its units' gate rows with register-blocked
  products on the weights as given (``_tile.py``) and its units' gate
  arithmetic over contiguous spans; backward pulls each chunk's share of
  ``W_hh^T @ grad`` per step the same way, and the weight, bias and input
  gradients are big BLAS GEMMs after the loop. See "the batched path" below.
* **per-sequence loop** (small batches, and the Cho GRU): one input-projection
  GEMM for all steps (NumPy), then a single ``@njit`` loop over the steps with
  the hidden projection as a plain compiled mat-vec per sequence (BLAS's fixed
  cost per call exceeds the whole product for one sequence with H = 64) and a
  few vectorised passes over the gates; backward likewise, with the weight,
  bias and input gradients as GEMMs over all steps at once.

float32 gates use a rational tanh approximation (Eigen's, |error| < 4e-7,
branch-free so LLVM vectorises it; NaN propagates) and
``sigmoid(v) = 0.5 + 0.5 * tanh(v / 2)``; float64 uses ``np.tanh``.
"""
from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.extending import overload

from .. import config
from .._jit import njit
from ..reference.recurrent import (
    GATE_COUNT,
    GRU_N,
    GRU_R,
    GRU_Z,
    LSTM_F,
    LSTM_G,
    LSTM_I,
    LSTM_O,
)
from . import _tile
from ._blas import N as BLAS_N
from ._blas import T as BLAS_T
from ._blas import gemm, parallel_workers, run_parallel
from ._tile import gemm_small_external


# --- activations -------------------------------------------------------------------------------
def _tanh(v):
    return np.tanh(v)


@overload(_tanh, jit_options={"error_model": "numpy"})
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


@overload(_sigmoid, jit_options={"error_model": "numpy"})
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
def _project(h, w_hh_t, proj):
    """proj (N, G*H) = h @ W_hh^T for the few sequences of the per-sequence loop.

    A plain loop streams rows of ``W_hh^T`` into ``proj``, four of them per pass
    so each load and store of ``proj`` carries four multiply-adds (one row per
    pass was bound by those stores): BLAS's fixed cost per call exceeds the
    whole product for one sequence with H = 64 (batches of
    ``config.RECURRENT_BLAS_MIN_BATCH`` or more take the batched path).
    """
    batch, hidden = h.shape
    gates = proj.shape[1]
    zero = proj.dtype.type(0)
    whole = hidden - hidden % 4
    for n in range(batch):
        row = proj[n]
        for m in range(gates):
            row[m] = zero
        for k in range(0, whole, 4):
            h0, h1, h2, h3 = h[n, k], h[n, k + 1], h[n, k + 2], h[n, k + 3]
            w0, w1, w2, w3 = w_hh_t[k], w_hh_t[k + 1], w_hh_t[k + 2], w_hh_t[k + 3]
            for m in range(gates):
                row[m] += h0 * w0[m] + h1 * w1[m] + h2 * w2[m] + h3 * w3[m]
        for k in range(whole, hidden):
            h_nk = h[n, k]
            w_row = w_hh_t[k]
            for m in range(gates):
                row[m] += h_nk * w_row[m]


@njit(inline="always")
def _time(s, seq_len, reverse):
    return seq_len - 1 - s if reverse else s


# Each loop below touches at most four arrays: with more, LLVM gives up the
# runtime alias checks it needs to vectorise, and a fused LSTM step that did
# everything in one loop ran 7x slower (18 ms vs 2.5 ms at B32 T50 H256).
SIGMOID, TANH, RELU = 0, 1, 2
KIND_RNN_TANH, KIND_RNN_RELU, KIND_LSTM, KIND_GRU = 0, 1, 2, 3
_KINDS = {"rnn_tanh": KIND_RNN_TANH, "rnn_relu": KIND_RNN_RELU, "lstm": KIND_LSTM, "gru": KIND_GRU}


@njit(inline="always")
def _activate(g, p, bias, off, hidden, kind):
    """g[off:off+H] = act(g + p + bias) over one gate block of one row."""
    zero = g.dtype.type(0)
    for j in range(off, off + hidden):
        v = g[j] + p[j] + bias[j]
        if kind == SIGMOID:
            v = _sigmoid(v)
        elif kind == TANH:
            v = _tanh(v)
        elif v < zero:  # relu; NaN passes
            v = zero
        g[j] = v


@njit(inline="always")
def _copy(src, dst):
    for j in range(src.shape[0]):
        dst[j] = src[j]


# --- forward loops ------------------------------------------------------------------------------
@njit
def _rnn_forward(gates, h, w_hh_t, bias, lengths, reverse, relu, out):
    """gates (T, N, H) holds x W_ih^T on entry, the activations on exit; h (N, H) is h0 -> h_n."""
    seq_len, batch, hidden = gates.shape
    zero = gates.dtype.type(0)
    kind = RELU if relu else TANH
    proj = np.empty((h.shape[0], hidden), dtype=h.dtype)
    for s in range(seq_len):
        t = _time(s, seq_len, reverse)
        _project(h, w_hh_t, proj)
        for n in range(batch):
            if t >= lengths[n]:
                out[t, n, :] = zero
                continue
            g = gates[t, n]
            _activate(g, proj[n], bias, 0, hidden, kind)
            _copy(g, out[t, n])
            _copy(g, h[n])


@njit
def _lstm_forward(gates, h, c, w_hh_t, bias, lengths, reverse, out, cells):
    """LSTM steps; ``cells`` is (T, N, H) to keep c_t for backward, or (1, N, H) scratch."""
    seq_len, batch, four_h = gates.shape
    hidden = four_h // 4
    keep = cells.shape[0] == seq_len
    zero = gates.dtype.type(0)
    oi, of, og, oo = LSTM_I * hidden, LSTM_F * hidden, LSTM_G * hidden, LSTM_O * hidden
    proj = np.empty((h.shape[0], four_h), dtype=h.dtype)
    for s in range(seq_len):
        t = _time(s, seq_len, reverse)
        _project(h, w_hh_t, proj)
        for n in range(batch):
            o = out[t, n]
            if t >= lengths[n]:
                o[:] = zero
                continue
            g, p, cn = gates[t, n], proj[n], c[n]
            _activate(g, p, bias, oi, hidden, SIGMOID)
            _activate(g, p, bias, of, hidden, SIGMOID)
            _activate(g, p, bias, og, hidden, TANH)
            _activate(g, p, bias, oo, hidden, SIGMOID)
            for j in range(hidden):
                cn[j] = g[of + j] * cn[j] + g[oi + j] * g[og + j]
            for j in range(hidden):
                o[j] = g[oo + j] * _tanh(cn[j])
            _copy(o, h[n])
            if keep:
                _copy(cn, cells[t, n])


@njit
def _gru_forward(gates, h, w_hh_t, bias, bias_hn, lengths, reverse, out, hidden_n):
    """GRU, reset after the hidden product; ``hidden_n`` keeps W_hn h + b_hn (T or 1, N, H)."""
    seq_len, batch, three_h = gates.shape
    hidden = three_h // 3
    keep = hidden_n.shape[0] == seq_len
    zero, one = gates.dtype.type(0), gates.dtype.type(1)
    orr, oz, on = GRU_R * hidden, GRU_Z * hidden, GRU_N * hidden
    proj = np.empty((h.shape[0], three_h), dtype=h.dtype)
    for s in range(seq_len):
        t = _time(s, seq_len, reverse)
        _project(h, w_hh_t, proj)
        kept_t = hidden_n[t if keep else 0]
        for n in range(batch):
            o = out[t, n]
            if t >= lengths[n]:
                o[:] = zero
                continue
            g, p, ghn, hn = gates[t, n], proj[n], kept_t[n], h[n]
            _activate(g, p, bias, orr, hidden, SIGMOID)
            _activate(g, p, bias, oz, hidden, SIGMOID)
            for j in range(hidden):
                ghn[j] = p[on + j] + bias_hn[j]
            for j in range(hidden):
                g[on + j] = _tanh(g[on + j] + bias[on + j] + g[orr + j] * ghn[j])
            for j in range(hidden):
                z = g[oz + j]
                o[j] = (one - z) * g[on + j] + z * hn[j]
            _copy(o, hn)


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
            g, p, hn, rhn = gates[t, n], proj_rz[n], h[n], rh[n]
            # proj_rz holds only the r and z columns: shift the offsets to line them up with g's.
            for j in range(hidden):
                g[orr + j] = _sigmoid(g[orr + j] + p[j] + bias[orr + j])
            for j in range(hidden):
                g[oz + j] = _sigmoid(g[oz + j] + p[hidden + j] + bias[oz + j])
            for j in range(hidden):
                rhn[j] = g[orr + j] * hn[j]
        _matmul(rh, w_hn_t, proj_n, blas_min_rows)
        for n in range(batch):
            o = out[t, n]
            if t >= lengths[n]:
                o[:] = zero
                continue
            g, p, hn = gates[t, n], proj_n[n], h[n]
            for j in range(hidden):
                g[on + j] = _tanh(g[on + j] + bias[on + j] + p[j] + bias_hn[j])
            for j in range(hidden):
                z = g[oz + j]
                o[j] = (one - z) * g[on + j] + z * hn[j]
            _copy(o, hn)


# --- backward loops -----------------------------------------------------------------------------
@njit(inline="always")
def _gather_dh(grad_out, dh_carry, t, n, dh_all):
    """dh_all[t, n] = dL/dh_t for row n: the output's gradient plus the one carried from later steps.

    Padded rows (``t >= lengths[n]``) carry their gradient unchanged. The
    per-step norms are taken from ``dh_all`` afterwards, in one NumPy reduction.
    """
    dh = dh_all[t, n]
    d = dh_carry[n]
    g = grad_out[t, n]
    for j in range(dh.shape[0]):
        dh[j] = d[j] + g[j]
    return dh


@njit(inline="always")
def _truncate(s, bptt_steps):
    return bptt_steps > 0 and s > 0 and s % bptt_steps == 0


@njit(inline="always")
def _carry_back(back, dh_carry, lengths, t):
    """dh_carry[n] = back[n] for the rows active at step t (padded rows keep carrying their gradient)."""
    for n in range(back.shape[0]):
        if t < lengths[n]:
            _copy(back[n], dh_carry[n])


@njit
def _rnn_backward(gates, grad_out, dh_carry, w_hh, lengths, reverse, relu, bptt_steps, grad_gates, dh_all,
                  blas_min_rows):
    """dh_carry enters as grad_h_n and leaves as grad_h0; grad_gates (T, N, H) receives dL/d(pre-activation)."""
    seq_len, batch, hidden = gates.shape
    zero, one = gates.dtype.type(0), gates.dtype.type(1)
    back = np.empty((batch, hidden), dtype=gates.dtype)
    for s in range(seq_len - 1, -1, -1):
        t = _time(s, seq_len, reverse)
        for n in range(batch):
            dg = grad_gates[t, n]
            if t >= lengths[n]:
                dg[:] = zero
                _copy(dh_carry[n], dh_all[t, n])
                continue
            dh = _gather_dh(grad_out, dh_carry, t, n, dh_all)
            a = gates[t, n]
            if relu:
                for j in range(hidden):
                    dg[j] = dh[j] if a[j] > zero else zero
            else:
                for j in range(hidden):
                    dg[j] = dh[j] * (one - a[j] * a[j])
        _matmul(grad_gates[t], w_hh, back, blas_min_rows)
        _carry_back(back, dh_carry, lengths, t)
        if _truncate(s, bptt_steps):
            dh_carry[:, :] = zero


@njit
def _lstm_backward(gates, cells, c_prev, grad_out, dh_carry, dc_carry, w_hh, lengths, reverse, bptt_steps,
                   grad_gates, dh_all, blas_min_rows):
    seq_len, batch, four_h = gates.shape
    hidden = four_h // 4
    zero, one = gates.dtype.type(0), gates.dtype.type(1)
    oi, of, og, oo = LSTM_I * hidden, LSTM_F * hidden, LSTM_G * hidden, LSTM_O * hidden
    tanh_c = np.empty(hidden, dtype=gates.dtype)
    back = np.empty((batch, hidden), dtype=gates.dtype)
    for s in range(seq_len - 1, -1, -1):
        t = _time(s, seq_len, reverse)
        for n in range(batch):
            dg = grad_gates[t, n]
            if t >= lengths[n]:
                dg[:] = zero
                _copy(dh_carry[n], dh_all[t, n])
                continue
            dh = _gather_dh(grad_out, dh_carry, t, n, dh_all)
            g, cn, cp, dc = gates[t, n], cells[t, n], c_prev[t, n], dc_carry[n]
            for j in range(hidden):
                tanh_c[j] = _tanh(cn[j])
            for j in range(hidden):  # dc: dL/dc_t, from h_t = o * tanh(c_t) and from step t+1
                dc[j] += dh[j] * g[oo + j] * (one - tanh_c[j] * tanh_c[j])
            for j in range(hidden):
                go = g[oo + j]
                dg[oo + j] = dh[j] * tanh_c[j] * go * (one - go)
            for j in range(hidden):
                gi = g[oi + j]
                dg[oi + j] = dc[j] * g[og + j] * gi * (one - gi)
            for j in range(hidden):
                gf = g[of + j]
                dg[of + j] = dc[j] * cp[j] * gf * (one - gf)
            for j in range(hidden):
                gg = g[og + j]
                dg[og + j] = dc[j] * g[oi + j] * (one - gg * gg)
            for j in range(hidden):
                dc[j] *= g[of + j]
        _matmul(grad_gates[t], w_hh, back, blas_min_rows)
        _carry_back(back, dh_carry, lengths, t)
        if _truncate(s, bptt_steps):
            dh_carry[:, :] = zero
            dc_carry[:, :] = zero


@njit
def _gru_backward(gates, hidden_n, h_prev, grad_out, dh_carry, w_hh, lengths, reverse, bptt_steps,
                  grad_x_gates, grad_h_gates, dh_all, blas_min_rows):
    """grad_x_gates: dL/d(x W_ih^T + b_ih) per gate; grad_h_gates: dL/d(h W_hh^T + b_hh) (n differs by r)."""
    seq_len, batch, three_h = gates.shape
    hidden = three_h // 3
    zero, one = gates.dtype.type(0), gates.dtype.type(1)
    orr, oz, on = GRU_R * hidden, GRU_Z * hidden, GRU_N * hidden
    back = np.empty((batch, hidden), dtype=gates.dtype)
    direct = np.empty((batch, hidden), dtype=gates.dtype)
    for s in range(seq_len - 1, -1, -1):
        t = _time(s, seq_len, reverse)
        for n in range(batch):
            dgx, dgh = grad_x_gates[t, n], grad_h_gates[t, n]
            if t >= lengths[n]:
                dgx[:] = zero
                dgh[:] = zero
                _copy(dh_carry[n], dh_all[t, n])
                continue
            dh = _gather_dh(grad_out, dh_carry, t, n, dh_all)
            g, ghn, hp, dd = gates[t, n], hidden_n[t, n], h_prev[t, n], direct[n]
            for j in range(hidden):
                z, nn = g[oz + j], g[on + j]
                dgx[on + j] = dh[j] * (one - z) * (one - nn * nn)
            for j in range(hidden):
                z = g[oz + j]
                dgx[oz + j] = dh[j] * (hp[j] - g[on + j]) * z * (one - z)
            for j in range(hidden):
                r = g[orr + j]
                dgx[orr + j] = dgx[on + j] * ghn[j] * r * (one - r)
            for j in range(2 * hidden):
                dgh[j] = dgx[j]
            for j in range(hidden):
                dgh[on + j] = dgx[on + j] * g[orr + j]
            for j in range(hidden):
                dd[j] = dh[j] * g[oz + j]
        _matmul(grad_h_gates[t], w_hh, back, blas_min_rows)
        for n in range(batch):
            if t < lengths[n]:
                dd, bk, carry = direct[n], back[n], dh_carry[n]
                for j in range(hidden):
                    carry[j] = dd[j] + bk[j]
        if _truncate(s, bptt_steps):
            dh_carry[:, :] = zero


@njit
def _gru_reset_before_backward(gates, h_prev, grad_out, dh_carry, w_hrz, w_hn, lengths, reverse, bptt_steps,
                               grad_gates, dh_all, blas_min_rows):
    seq_len, batch, three_h = gates.shape
    hidden = three_h // 3
    zero, one = gates.dtype.type(0), gates.dtype.type(1)
    orr, oz, on = GRU_R * hidden, GRU_Z * hidden, GRU_N * hidden
    d_n_all = np.zeros((batch, hidden), dtype=gates.dtype)
    d_rz = np.zeros((batch, 2 * hidden), dtype=gates.dtype)
    d_rh = np.empty((batch, hidden), dtype=gates.dtype)
    back = np.empty((batch, hidden), dtype=gates.dtype)
    direct = np.empty((batch, hidden), dtype=gates.dtype)
    for s in range(seq_len - 1, -1, -1):
        t = _time(s, seq_len, reverse)
        for n in range(batch):
            if t >= lengths[n]:
                grad_gates[t, n, :] = zero
                d_n_all[n, :] = zero
                _copy(dh_carry[n], dh_all[t, n])
                continue
            dh = _gather_dh(grad_out, dh_carry, t, n, dh_all)
            g, hp, dg, dd, dn_row = gates[t, n], h_prev[t, n], grad_gates[t, n], direct[n], d_n_all[n]
            for j in range(hidden):
                z, nn = g[oz + j], g[on + j]
                dn_row[j] = dh[j] * (one - z) * (one - nn * nn)
            for j in range(hidden):
                z = g[oz + j]
                dg[oz + j] = dh[j] * (hp[j] - g[on + j]) * z * (one - z)
            for j in range(hidden):
                dg[on + j] = dn_row[j]
            for j in range(hidden):
                dd[j] = dh[j] * g[oz + j]
        _matmul(d_n_all, w_hn, d_rh, blas_min_rows)
        for n in range(batch):
            drz = d_rz[n]
            if t >= lengths[n]:
                drz[:] = zero
                continue
            g, hp, dg, dd, drh = gates[t, n], h_prev[t, n], grad_gates[t, n], direct[n], d_rh[n]
            for j in range(hidden):
                r = g[orr + j]
                dg[orr + j] = drh[j] * hp[j] * r * (one - r)
            for j in range(2 * hidden):
                drz[j] = dg[j]
            for j in range(hidden):
                dd[j] += drh[j] * g[orr + j]
        _matmul(d_rz, w_hrz, back, blas_min_rows)
        for n in range(batch):
            if t < lengths[n]:
                dd, bk, carry = direct[n], back[n], dh_carry[n]
                for j in range(hidden):
                    carry[j] = dd[j] + bk[j]
        if _truncate(s, bptt_steps):
            dh_carry[:, :] = zero


# --- the batched path: time-major, batch-minor layout, prange over hidden units -----------------
# For a batch of at least config.RECURRENT_BLAS_MIN_BATCH sequences everything
# is stored batch-minor, one (rows, N) block per time step, and each step is a
# single prange region over the workers (Numba threads):
#
# * ``zmat[b] = [h; x_t; 1]`` is the (H + I + 1, N) operand of step t (block b
#   holds the state entering t, see _z_block); the step writes its new state
#   into the top rows of the next block, so ``zmat`` is at once the products'
#   input and the record of every state for backward.
# * Before the time loop, one region makes every step's input projection
#   ``gates[t] = W_ih @ x_t + b`` (the steps shared out among the workers, x_t
#   transposed into zmat first): none of it waits on the recurrence, so only
#   W_hh @ h is left inside the steps (H of the H + I columns).
# * The hidden units are split into one contiguous chunk per worker. For each
#   gate, worker p adds its units' rows of W_hh @ h with the register-blocked
#   products of ``_tile.py`` on the weights as given (rows g*H + j0 .. g*H + j1,
#   no copy; OpenBLAS would repack the weights on every call), then runs its
#   units' gate arithmetic over contiguous spans of c*N values and writes its
#   rows of the next state. The end of the region is the only sync.
# * Backward runs the steps in reverse: worker p pulls its units' share of
#   W_hh^T @ (the later step's gate gradients), the same products reading W_hh
#   transposed in place, then its units' gate gradients; after the loop the
#   workers gather every step's [h; x; 1] into ``zcols`` (_fill_zcols). The
#   weight, bias and input gradients are then two big GEMMs over all steps
#   (_weight_gradients_kernel: [dW_hh | dW_ih | db] at once, and dx), each
#   worker splitting its rows of the first into the three gradients.
#
# Why: with the gates (G*H, T*N) and numpy's threaded GEMM for the input
# projection, the two thread pools (OpenBLAS's and Numba's) spun against each
# other on 2 cores, and gate loops over rows of N = 32 ran at a third of the
# speed of long contiguous spans (measurements in kernels/config.py).


def _chunk_bounds(size, workers):
    """Boundaries of the workers' chunks of ``size`` units, as even as possible."""
    return np.array([p * size // workers for p in range(workers + 1)], dtype=np.int64)


@njit(inline="always")
def _z_block(t, reverse):
    """Block of ``z``/``cells`` holding the state entering time step t (block T or 0 holds the final state)."""
    return t + 1 if reverse else t


@njit(inline="always")
def _z_next(t, reverse):
    return t if reverse else t + 1


@njit(inline="always")
def _span(array, start, length):
    """A 1-D contiguous view ``array.flat[start : start + length]`` (indexed from 0, so loops vectorise)."""
    flat = array.reshape(array.size)
    return flat[start:start + length]


@njit(inline="always")
def _gate(block, hidden, gate, j0, j1):
    """Gate ``gate`` of the units j0..j1 in one step's (G*H, N) block (rows gate*H + j0 .. gate*H + j1)."""
    batch = block.shape[1]
    return _span(block, (gate * hidden + j0) * batch, (j1 - j0) * batch)


@njit
def _activate_span(values, kind):
    zero = values.dtype.type(0)
    for i in range(values.shape[0]):
        v = values[i]
        if kind == SIGMOID:
            v = _sigmoid(v)
        elif kind == TANH:
            v = _tanh(v)
        elif v < zero:  # relu; NaN passes
            v = zero
        values[i] = v


@njit
def _mask_and_output(z_new, z_old, c_new, c_old, j0, j1, act, full, out_t, col0):
    """Padded rows keep their state; out_t[col0 + n, j] = the new state, 0 on padded rows (c_* may be empty;
    col0: where this part of the batch starts in the output)."""
    batch = act.shape[0]
    zero = out_t.dtype.type(0)
    if not full:
        for j in range(j0, j1):
            for n in range(batch):
                if not act[n]:
                    z_new[j, n] = z_old[j, n]
                    if c_new.shape[0] > 0:
                        c_new[j, n] = c_old[j, n]
    for n in range(batch):  # one contiguous run of out_t's row per sequence (z_new's column is in L1)
        dst = out_t[col0 + n]
        if act[n]:
            for j in range(j0, j1):
                dst[j] = z_new[j, n]
        else:
            for j in range(j0, j1):
                dst[j] = zero


@njit
def _rows_times_block(weights, r0, rows, zmat, zb, z_row0, out, out_row0, accumulate):
    """out[out_row0 : out_row0 + rows] (+)= weights[r0 : r0 + rows] @ zmat[zb, z_row0 : z_row0 + weights.shape[1]]."""
    if rows > 0:
        batch, cols = out.shape[1], weights.shape[1]
        gemm_small_external(rows, batch, cols, weights.ravel()[r0 * cols:], cols, 1, zmat[zb].ravel()[z_row0 * batch:],
                   batch, out.ravel()[out_row0 * batch:], batch, accumulate)


@njit
def _add_bias(bias, r0, rows, out, out_row0):
    batch = out.shape[1]
    for i in range(rows):
        b, row = bias[r0 + i], out[out_row0 + i]
        for n in range(batch):
            row[n] += b


@njit
def _gate_hidden(w_hh, zmat, zb, gates_t, gate, j0, j1):
    """Rows gate*H + j0 .. gate*H + j1 of gates_t += W_hh h, h the top rows of zmat[zb] (gates_t holds W_ih x + b)."""
    hidden = w_hh.shape[1]
    r0 = gate * hidden + j0
    _rows_times_block(w_hh, r0, j1 - j0, zmat, zb, 0, gates_t, r0, True)


@njit
def _project_inputs(x, w_ih, bias, zmat, gates, reverse, s0, s1, col0):
    """Steps s0..s1 (processing order) before the time loop: x_t (sequences col0 .. col0 + N of x) into
    the x rows of zmat[block of t], then gates[t] = W_ih x_t + b for every gate row. Nothing here waits on
    another step."""
    seq_len, inputs = x.shape[0], x.shape[2]
    batch = zmat.shape[2]
    rows = w_ih.shape[0]
    hidden = zmat.shape[1] - inputs - 1
    for s in range(s0, s1):
        t = _time(s, seq_len, reverse)
        zb = _z_block(t, reverse)
        block = zmat[zb]
        for n in range(batch):  # x read a row at a time (a stream), written into zmat's column n
            src = x[t, col0 + n]
            for i in range(inputs):
                block[hidden + i, n] = src[i]
        _rows_times_block(w_ih, 0, rows, zmat, zb, hidden, gates[t], 0, False)
        _add_bias(bias, 0, rows, gates[t], 0)


@njit
def _rnn_step(w_hh, zmat, zb, nb, gates_t, j0, j1, kind, act, full, out_t, col0):
    batch = zmat.shape[2]
    count = j1 - j0
    _gate_hidden(w_hh, zmat, zb, gates_t, 0, j0, j1)
    g = _span(gates_t, j0 * batch, count * batch)
    _activate_span(g, kind)
    h_new = _span(zmat[nb], j0 * batch, count * batch)
    for i in range(count * batch):
        h_new[i] = g[i]
    _mask_and_output(zmat[nb], zmat[zb], zmat[nb, :0], zmat[zb, :0], j0, j1, act, full, out_t, col0)


@njit
def _lstm_step(w_hh, zmat, cells, zb, nb, gates_t, j0, j1, act, full, out_t, col0):
    hidden, batch = w_hh.shape[1], zmat.shape[2]
    size = (j1 - j0) * batch
    for gate in range(4):
        _gate_hidden(w_hh, zmat, zb, gates_t, gate, j0, j1)
    gi = _gate(gates_t, hidden, LSTM_I, j0, j1)
    gf = _gate(gates_t, hidden, LSTM_F, j0, j1)
    gg = _gate(gates_t, hidden, LSTM_G, j0, j1)
    go = _gate(gates_t, hidden, LSTM_O, j0, j1)
    _activate_span(gi, SIGMOID)
    _activate_span(gf, SIGMOID)
    _activate_span(gg, TANH)
    _activate_span(go, SIGMOID)
    c_old, c_new = _span(cells[zb], j0 * batch, size), _span(cells[nb], j0 * batch, size)
    for i in range(size):
        c_new[i] = gf[i] * c_old[i] + gi[i] * gg[i]
    h_new = _span(zmat[nb], j0 * batch, size)
    for i in range(size):
        h_new[i] = go[i] * _tanh(c_new[i])
    _mask_and_output(zmat[nb], zmat[zb], cells[nb], cells[zb], j0, j1, act, full, out_t, col0)


@njit
def _gru_step(w_hh, bias_hn, zmat, zb, nb, gates_t, hidden_n_t, j0, j1, act, full, out_t, col0):
    hidden, batch = hidden_n_t.shape
    size = (j1 - j0) * batch
    one = zmat.dtype.type(1)
    # r and z: W_h h + (W_i x + b_i + b_h); n: (W_in x + b_in), and W_hn h (+ b_hn below) apart
    _gate_hidden(w_hh, zmat, zb, gates_t, GRU_R, j0, j1)
    _gate_hidden(w_hh, zmat, zb, gates_t, GRU_Z, j0, j1)
    _rows_times_block(w_hh, GRU_N * hidden + j0, j1 - j0, zmat, zb, 0, hidden_n_t, j0, False)
    gr = _gate(gates_t, hidden, GRU_R, j0, j1)
    gz = _gate(gates_t, hidden, GRU_Z, j0, j1)
    gn = _gate(gates_t, hidden, GRU_N, j0, j1)
    _activate_span(gr, SIGMOID)
    _activate_span(gz, SIGMOID)
    for j in range(j0, j1):
        kept, b = hidden_n_t[j], bias_hn[j]
        for n in range(batch):
            kept[n] += b
    kept = _span(hidden_n_t, j0 * batch, size)
    for i in range(size):
        gn[i] = _tanh(gn[i] + gr[i] * kept[i])
    h_old, h_new = _span(zmat[zb], j0 * batch, size), _span(zmat[nb], j0 * batch, size)
    for i in range(size):
        h_new[i] = (one - gz[i]) * gn[i] + gz[i] * h_old[i]
    _mask_and_output(zmat[nb], zmat[zb], zmat[nb, :0], zmat[zb, :0], j0, j1, act, full, out_t, col0)


@njit
def _step(kind, s, w_hh, bias_hn, zmat, cells, gates, hidden_n, active, full, reverse, out, j0, j1, col0):
    """Units j0..j1 of step s: gates[t] (W_ih x_t + b, from _project_inputs) += W_hh h, then the cell; the
    outputs go to columns col0 .. col0 + N of out[t]."""
    seq_len = active.shape[0]
    t = _time(s, seq_len, reverse)
    zb, nb = _z_block(t, reverse), _z_next(t, reverse)
    if kind == KIND_LSTM:
        _lstm_step(w_hh, zmat, cells, zb, nb, gates[t], j0, j1, active[t], full[t], out[t], col0)
    elif kind == KIND_GRU:
        kept = t if hidden_n.shape[0] == seq_len else 0  # every step's W_hn h kept for backward, or one block
        _gru_step(w_hh, bias_hn, zmat, zb, nb, gates[t], hidden_n[kept], j0, j1, active[t], full[t], out[t],
                  col0)
    else:
        _rnn_step(w_hh, zmat, zb, nb, gates[t], j0, j1, RELU if kind == KIND_RNN_RELU else TANH, active[t], full[t],
                  out[t], col0)


@njit(parallel=True)
def _forward_batched_kernel(kind, x, w_hh, w_ih, bias, bias_hn, bounds, zmat, cells, gates, hidden_n, active, full,
                            reverse, out):
    """Every step of one layer and direction; ``kind`` is RNN_TANH/RNN_RELU/LSTM/GRU (module constants).

    First every step's input projection, the steps shared out among the workers (one region, one
    sync); then per step one region, each worker taking its chunk of the hidden units."""
    seq_len = active.shape[0]
    workers = bounds.shape[0] - 1
    for p in prange(workers):
        _project_inputs(x, w_ih, bias, zmat, gates, reverse, p * seq_len // workers, (p + 1) * seq_len // workers,
                        0)
    for s in range(seq_len):
        for p in prange(workers):
            _step(kind, s, w_hh, bias_hn, zmat, cells, gates, hidden_n, active, full, reverse, out, bounds[p],
                  bounds[p + 1], 0)


@njit
def _forward_one_worker(kind, x, active, full, reverse, w_hh, w_ih, bias, bias_hn, zmat, cells, gates, hidden_n, out,
                        col0):
    """Every step of one direction on the calling worker alone (all units at once), for the sequences
    col0 .. col0 + N of x and out (N: zmat's batch)."""
    seq_len, hidden = active.shape[0], w_hh.shape[1]
    _project_inputs(x, w_ih, bias, zmat, gates, reverse, 0, seq_len, col0)
    for s in range(seq_len):
        _step(kind, s, w_hh, bias_hn, zmat, cells, gates, hidden_n, active, full, reverse, out, 0, hidden, col0)


@njit(parallel=True)
def _forward_pair_kernel(kind, first, second):
    """Two independent sequence runs at once, one worker each, with no sync between steps: the two
    directions of a bidirectional layer, or the two halves of an inference batch.

    ``first``/``second``: the arguments of :func:`_forward_one_worker` after ``kind``: (x, active, full,
    reverse, w_hh, w_ih, bias, bias_hn, zmat, cells, gates, hidden_n, out, col0).
    """
    for d in prange(2):
        if d == 0:
            _forward_one_worker(kind, *first)
        else:
            _forward_one_worker(kind, *second)


@njit
def _pull(w_hh, j0, j1, grad, out):
    """out[j0:j1] = W_hh[:, j0:j1]^T @ grad: what a later step sends back to units j0..j1 (W_hh read transposed)."""
    if j1 > j0:
        rows, hidden = w_hh.shape
        batch = grad.shape[1]
        gemm_small_external(j1 - j0, batch, rows, w_hh.ravel()[j0:], 1, hidden, grad.ravel(), batch,
                            out.ravel()[j0 * batch:], batch, False)


@njit
def _transpose_into(src, q0, q1, dst, first):
    """dst[first + n, q] = src[q, n] for q in q0..q1 and every column n of src (N, the batch): a (rows, N)
    block of a step into the batch-major operands of the big GEMMs, one contiguous row run per sequence."""
    for n in range(src.shape[1]):
        row = dst[first + n]
        for q in range(q0, q1):
            row[q] = src[q, n]


@njit
def _store_rows(grad_t, r0, rows, t, grad_all, col0, stride):
    """Copy gate-gradient rows r0 .. r0 + rows of step t, transposed, into grad_all (T*N, G*H), the big GEMMs'
    operand: sequence n of this part goes to row t*stride + col0 + n (stride: the whole batch N; col0: where
    this part of the batch starts). Batch-major, so each sequence's gradients land in one contiguous row
    (the gate-major (G*H, T*N) layout scattered every step's block over G*H rows and as many pages)."""
    _transpose_into(grad_t, r0, r0 + rows, grad_all, t * stride + col0)


@njit
def _take_carry(dh, carry, direct, j0, j1, has_later, cut, act_later, add_output, grad_out_t, act, col0):
    """dh[j] = dL/dh_t for the chunk's units; returns their sum of dh^2.

    From the later step's carry (plus GRU's direct path) on the rows active
    there; padded rows pass their gradient through; all zero at a truncation
    point; then grad_out[t] (its columns col0 .. col0 + N) added on the rows active at t.
    """
    batch = dh.shape[1]
    zero = dh.dtype.type(0)
    total = zero
    if has_later:
        for j in range(j0, j1):
            d, cr, dr = dh[j], carry[j], direct[j]
            for n in range(batch):
                d[n] = zero if cut else (cr[n] + dr[n] if act_later[n] else d[n])
    if add_output:
        # sequence by sequence: each reads one contiguous row of grad_out[t] (a stream the prefetcher
        # follows; unit by unit, the reads hopped between N rows H elements apart)
        for n in range(batch):
            if act[n]:
                g = grad_out_t[col0 + n]
                for j in range(j0, j1):
                    dh[j, n] += g[j]
        for j in range(j0, j1):
            d = dh[j]
            for n in range(batch):
                total += d[n] * d[n]
    return total


@njit
def _zero_padded(grad_t, r0, rows, act):
    """Gate gradients of padded rows are zero (their steps did not happen)."""
    zero = grad_t.dtype.type(0)
    for q in range(r0, r0 + rows):
        row = grad_t[q]
        for n in range(act.shape[0]):
            if not act[n]:
                row[n] = zero


@njit
def _rnn_step_back(gates_t, dh, grad_t, j0, j1, relu):
    batch = dh.shape[1]
    size = (j1 - j0) * batch
    zero, one = dh.dtype.type(0), dh.dtype.type(1)
    a, d, g = _span(gates_t, j0 * batch, size), _span(dh, j0 * batch, size), _span(grad_t, j0 * batch, size)
    if relu:
        for i in range(size):
            g[i] = d[i] if a[i] > zero else zero
    else:
        for i in range(size):
            g[i] = d[i] * (one - a[i] * a[i])


@njit
def _lstm_step_back(gates_t, cells, zb, nb, dh, dc, grad_t, j0, j1, act, full):
    batch = dh.shape[1]
    count = j1 - j0
    size = count * batch
    one = dh.dtype.type(1)
    hidden = dh.shape[0]
    gi = _gate(gates_t, hidden, LSTM_I, j0, j1)
    gf = _gate(gates_t, hidden, LSTM_F, j0, j1)
    gg = _gate(gates_t, hidden, LSTM_G, j0, j1)
    go = _gate(gates_t, hidden, LSTM_O, j0, j1)
    di = _gate(grad_t, hidden, LSTM_I, j0, j1)
    df = _gate(grad_t, hidden, LSTM_F, j0, j1)
    dg = _gate(grad_t, hidden, LSTM_G, j0, j1)
    do = _gate(grad_t, hidden, LSTM_O, j0, j1)
    c_old, c_new = _span(cells[zb], j0 * batch, size), _span(cells[nb], j0 * batch, size)
    d, d_c = _span(dh, j0 * batch, size), _span(dc, j0 * batch, size)
    kept = d_c[:0] if full else d_c.copy()  # padded rows: dc passes through unchanged
    for i in range(size):
        tanh_c = _tanh(c_new[i])
        total_c = d_c[i] + d[i] * go[i] * (one - tanh_c * tanh_c)
        do[i] = d[i] * tanh_c * go[i] * (one - go[i])
        di[i] = total_c * gg[i] * gi[i] * (one - gi[i])
        df[i] = total_c * c_old[i] * gf[i] * (one - gf[i])
        dg[i] = total_c * gi[i] * (one - gg[i] * gg[i])
        d_c[i] = total_c * gf[i]
    if not full:
        for i in range(size):
            if not act[i % batch]:
                d_c[i] = kept[i]


@njit
def _gru_step_back(gates_t, hidden_n_t, zmat, zb, dh, direct, grad_t, grad_h_t, j0, j1):
    hidden, batch = dh.shape
    count = j1 - j0
    size = count * batch
    one = dh.dtype.type(1)
    gr = _gate(gates_t, hidden, GRU_R, j0, j1)
    gz = _gate(gates_t, hidden, GRU_Z, j0, j1)
    gn = _gate(gates_t, hidden, GRU_N, j0, j1)
    xr = _gate(grad_t, hidden, GRU_R, j0, j1)
    xz = _gate(grad_t, hidden, GRU_Z, j0, j1)
    xn = _gate(grad_t, hidden, GRU_N, j0, j1)
    hr = _gate(grad_h_t, hidden, GRU_R, j0, j1)
    hz = _gate(grad_h_t, hidden, GRU_Z, j0, j1)
    hn = _gate(grad_h_t, hidden, GRU_N, j0, j1)
    kept, h_old = _span(hidden_n_t, j0 * batch, size), _span(zmat[zb], j0 * batch, size)
    d, dd = _span(dh, j0 * batch, size), _span(direct, j0 * batch, size)
    for i in range(size):
        d_n = d[i] * (one - gz[i]) * (one - gn[i] * gn[i])
        d_z = d[i] * (h_old[i] - gn[i]) * gz[i] * (one - gz[i])
        d_r = d_n * kept[i] * gr[i] * (one - gr[i])
        xn[i] = d_n
        xz[i] = d_z
        xr[i] = d_r
        hn[i] = d_n * gr[i]
        hz[i] = d_z
        hr[i] = d_r
        dd[i] = d[i] * gz[i]


@njit
def _backward_step(kind, s, j0, j1, p, w_hh, zmat, cells, gates, hidden_n, active, full, reverse, bptt_steps, grad_out,
                   dh, dc, grad, grad_h, grad_all, grad_h_all, sq, col0, carry, direct):
    """Units j0..j1 of processing step s of :func:`_backward_batched_kernel` (s = -1 only pulls the last carry)."""
    seq_len = active.shape[0]
    hidden = dh.shape[0]
    gate_count = gates.shape[1] // hidden
    stride = grad_all.shape[0] // seq_len
    has_later = s + 1 < seq_len
    t_later = _time(s + 1, seq_len, reverse) if has_later else 0
    cut = has_later and _truncate(s + 1, bptt_steps)
    t = _time(s, seq_len, reverse) if s >= 0 else t_later
    zb, nb = _z_block(t, reverse), _z_next(t, reverse)
    if has_later and not cut:
        _pull(w_hh, j0, j1, grad_h[t_later], carry)
    if cut and kind == KIND_LSTM:
        dc[j0:j1] = dc.dtype.type(0)
    total = _take_carry(dh, carry, direct, j0, j1, has_later, cut, active[t_later], s >= 0, grad_out[t], active[t],
                        col0)
    if s < 0:
        return
    sq[p, t] = total
    if kind == KIND_LSTM:
        _lstm_step_back(gates[t], cells, zb, nb, dh, dc, grad[t], j0, j1, active[t], full[t])
    elif kind == KIND_GRU:
        _gru_step_back(gates[t], hidden_n[t], zmat, zb, dh, direct, grad[t], grad_h[t], j0, j1)
    else:
        _rnn_step_back(gates[t], dh, grad[t], j0, j1, kind == KIND_RNN_RELU)
    for gate in range(gate_count):
        r0 = gate * hidden + j0
        if kind == KIND_GRU:
            if not full[t]:
                _zero_padded(grad_h[t], r0, j1 - j0, active[t])
            _store_rows(grad_h[t], r0, j1 - j0, t, grad_h_all, col0, stride)
        if not full[t]:
            _zero_padded(grad[t], r0, j1 - j0, active[t])
        _store_rows(grad[t], r0, j1 - j0, t, grad_all, col0, stride)


@njit
def _fill_zcols(zmat, reverse, s0, s1, col0, zcols):
    """zcols[t, col0 + n] = [h; x; 1] of sequence n entering step t (column n of zmat's block of t), for t in
    s0..s1: the big GEMMs' operand after the time loop (zcols (T, all sequences, H + I + 1), batch-major
    like grad_all)."""
    width = zmat.shape[1]
    for t in range(s0, s1):
        _transpose_into(zmat[_z_block(t, reverse)], 0, width, zcols[t], col0)


@njit(parallel=True)
def _backward_batched_kernel(kind, w_hh, bounds, zmat, cells, gates, hidden_n, active, full, reverse, bptt_steps,
                             grad_out, dh, dc, grad, grad_h, grad_all, grad_h_all, sq, zcols):
    """BPTT of :func:`_forward_batched_kernel` (``keep`` was on), the time loop only.

    grad (T, G*H, N) gets dL/d(pre-activation) and grad_h the same for the
    hidden part (GRU's n rows differ, else it is ``grad``); both are copied to
    (T*N, G*H) ``*_all`` for :func:`_weight_gradients_kernel`. dh/dc (H, N)
    enter as the final states' gradients and leave as h0's/c0's. Per step one
    region, each worker taking its chunk of the hidden units; then one more
    region fills zcols (:func:`_fill_zcols`), each worker taking a share of
    the steps.
    """
    seq_len = active.shape[0]
    workers = bounds.shape[0] - 1
    carry = np.zeros(dh.shape, dtype=dh.dtype)
    direct = np.zeros(dh.shape, dtype=dh.dtype)
    for s in range(seq_len - 1, -2, -1):
        for p in prange(workers):
            _backward_step(kind, s, bounds[p], bounds[p + 1], p, w_hh, zmat, cells, gates, hidden_n, active, full,
                           reverse, bptt_steps, grad_out, dh, dc, grad, grad_h, grad_all, grad_h_all, sq, 0, carry,
                           direct)
    for p in prange(workers):
        _fill_zcols(zmat, reverse, p * seq_len // workers, (p + 1) * seq_len // workers, 0, zcols)


@njit
def _backward_one_worker(kind, w_hh, zmat, cells, gates, hidden_n, active, full, reverse, bptt_steps, grad_out, dh, dc,
                         grad, grad_h, grad_all, grad_h_all, sq, zcols, col0):
    """:func:`_backward_batched_kernel` on the calling worker alone (all units at once), for the part of
    the batch whose columns in grad_all and zcols start at col0."""
    carry = np.zeros(dh.shape, dtype=dh.dtype)
    direct = np.zeros(dh.shape, dtype=dh.dtype)
    for s in range(active.shape[0] - 1, -2, -1):
        _backward_step(kind, s, 0, dh.shape[0], 0, w_hh, zmat, cells, gates, hidden_n, active, full, reverse,
                       bptt_steps, grad_out, dh, dc, grad, grad_h, grad_all, grad_h_all, sq, col0, carry, direct)
    _fill_zcols(zmat, reverse, 0, active.shape[0], col0, zcols)


@njit(parallel=True)
def _backward_pair_kernel(kind, first, second):
    """BPTT of the two halves of a batch (:func:`_forward_halves` with ``keep``), one worker each, no sync
    between steps; ``first``/``second``: the arguments of :func:`_backward_one_worker` after ``kind``."""
    for d in prange(2):
        if d == 0:
            _backward_one_worker(kind, *first)
        else:
            _backward_one_worker(kind, *second)


@njit(parallel=True)
def _weight_gradients_kernel(w_ih, zcols, grad_all, grad_h_all, gru, row_bounds, step_bounds, grad_w, grad_w_hh,
                             grad_w_ih, grad_b, grad_x):
    """After the time loop, the big GEMMs over all steps, split over the workers:

    rows of grad_w = grad_all^T @ zcols = [dW_hh | dW_ih | db], zcols (T*N, H + I + 1)
    = [h; x; 1] of every step and sequence, grad_all (T*N, G*H) (GRU's n rows take
    their hidden columns from grad_h_all), each worker then copying its rows into
    grad_w_hh, grad_w_ih and grad_b; rows (steps) of grad_x (T*N, I) = grad_all @ W_ih.
    """
    rows, inputs = w_ih.shape
    steps, width = zcols.shape
    hidden = width - inputs - 1
    for p in prange(row_bounds.shape[0] - 1):
        r0, r1 = row_bounds[p], row_bounds[p + 1]
        if r1 > r0:
            gemm(BLAS_T, BLAS_N, r1 - r0, width, steps, grad_all.ravel()[r0:], rows, zcols.ravel(), width,
                 0.0, grad_w.ravel()[r0 * width:], width)
            rn = max(r0, GRU_N * hidden)
            if gru and r1 > rn:  # n rows: hidden columns from grad_h_all
                gemm(BLAS_T, BLAS_N, r1 - rn, hidden, steps, grad_h_all.ravel()[rn:], rows, zcols.ravel(), width,
                     0.0, grad_w.ravel()[rn * width:], width)
            for r in range(r0, r1):
                row = grad_w[r]
                _copy(row[:hidden], grad_w_hh[r])
                _copy(row[hidden:hidden + inputs], grad_w_ih[r])
                grad_b[r] = row[hidden + inputs]
        s0, s1 = step_bounds[p], step_bounds[p + 1]
        if s1 > s0:
            gemm(BLAS_N, BLAS_N, s1 - s0, inputs, rows, grad_all.ravel()[s0 * rows:], rows, w_ih.ravel(), inputs, 0.0,
                 grad_x.ravel()[s0 * inputs:], inputs)


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




def _run(workers, kernel, *args):
    """prange workers with single-threaded BLAS inside, or one worker with BLAS's own threads."""
    if workers > 1:
        run_parallel(kernel, *args)
    else:
        kernel(*args)


def _batched_direction(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, keep, out=None):
    """The arrays of one direction's batched kernel, (w_hh, w_ih, bias, bias_hn, zmat, cells, gates, hidden_n, out),
    with the initial state in place, for the batch of h0 (part of x's, writing into part of ``out``, when
    they are given)."""
    seq_len, input_size = x.shape[0], x.shape[2]
    batch = h0.shape[0]
    hidden = h0.shape[1]
    bias = b_ih + b_hh
    if mode == "gru":  # r and z take both biases; n keeps b_hn apart (it sits inside r * (...))
        bias[GRU_N * hidden:] = b_ih[GRU_N * hidden:]
    bias_hn = np.ascontiguousarray(b_hh[GRU_N * hidden:] if mode == "gru" else b_hh[:0])
    # zmat[b] = [state entering the step; that step's x; 1] (H + I + 1, N), see _z_block and
    # "the batched path" above (the x rows are filled in by the kernel, the 1s row is for backward)
    zmat = np.empty((seq_len + 1, hidden + input_size + 1, batch), dtype=x.dtype)
    zmat[:, -1] = 1
    cells = np.empty((seq_len + 1, hidden, batch) if mode == "lstm" else (1, 1, 1), dtype=x.dtype)
    # every step's gates: the input projections are made for all steps before the time loop
    gates = np.empty((seq_len, GATE_COUNT[mode] * hidden, batch), dtype=x.dtype)
    hidden_n = np.empty((seq_len if keep else 1, hidden, batch) if mode == "gru" else (1, 1, 1), dtype=x.dtype)
    if out is None:
        out = np.empty((seq_len, batch, hidden), dtype=x.dtype)
    first = _z_block(seq_len - 1 if reverse else 0, reverse)
    zmat[first, :hidden] = h0.T
    if mode == "lstm":
        cells[first] = c0.T
    return (np.ascontiguousarray(w_hh), np.ascontiguousarray(w_ih), bias, bias_hn, zmat, cells, gates, hidden_n, out)


def _batched_result(mode, arrays, workers, active, full, reverse, keep):
    """(out, h_n, c_n, saved) of a direction the batched kernels ran."""
    w_hh, w_ih, _, _, zmat, cells, gates, hidden_n, out = arrays
    hidden = w_hh.shape[1]
    final = _z_next(0 if reverse else active.shape[0] - 1, reverse)
    h = np.ascontiguousarray(zmat[final, :hidden].T)
    c = np.ascontiguousarray(cells[final].T) if mode == "lstm" else None
    saved = None
    if keep:
        saved = ("batched", mode, w_hh, w_ih, workers, zmat, cells, gates, hidden_n, active, full, reverse)
    return out, h, c, saved


def _masks(seq_len, lengths):
    """active[t, n]: step t is inside sequence n; full[t]: inside all of them."""
    active = np.arange(seq_len)[:, None] < lengths[None, :]
    return active, active.all(axis=1)


def _forward_batched(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, keep):
    _tile.register(x.dtype)
    x = np.ascontiguousarray(x)
    workers = parallel_workers()
    if workers == 2 and x.shape[1] >= 2 * _blas_min_rows() and config.RECURRENT_SPLIT_BATCH:
        return _forward_halves(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, keep)
    arrays = _batched_direction(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, keep)
    w_hh, w_ih, bias, bias_hn, zmat, cells, gates, hidden_n, out = arrays
    active, full = _masks(x.shape[0], lengths)
    _run(workers, _forward_batched_kernel, _KINDS[mode], x, w_hh, w_ih, bias, bias_hn,
         _chunk_bounds(w_hh.shape[1], workers), zmat, cells, gates, hidden_n, active, full, reverse, out)
    return _batched_result(mode, arrays, workers, active, full, reverse, keep)


def _forward_halves(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, keep):
    """Two workers, each running half of the batch through every step on its own.

    The sequences of a batch are independent, so the halves need no sync between steps (the
    hidden-unit split of :func:`_forward_batched_kernel` syncs once per step). With ``keep`` the
    saved state is one batched state per half, and :func:`_backward_batched` runs their BPTT the
    same way, one worker per half.
    """
    half = x.shape[1] // 2
    out = np.empty((x.shape[0], x.shape[1], w_hh.shape[1]), dtype=x.dtype)  # both halves write their columns
    halves = []
    for rows in (slice(0, half), slice(half, None)):
        arrays = _batched_direction(mode, x, h0[rows], None if c0 is None else c0[rows], w_ih, w_hh, b_ih, b_hh,
                                    reverse, keep, out)
        halves.append((arrays, *_masks(x.shape[0], lengths[rows]), rows.start))
    run_parallel(_forward_pair_kernel, _KINDS[mode],
                 *((x, active, full, reverse, *arrays, start) for arrays, active, full, start in halves))
    results = [_batched_result(mode, arrays, 1, active, full, reverse, keep) for arrays, active, full, _ in halves]
    h_n = np.concatenate([r[1] for r in results])
    c_n = np.concatenate([r[2] for r in results]) if mode == "lstm" else None
    return out, h_n, c_n, (("halves", mode, (results[0][3], results[1][3])) if keep else None)


def recurrent_forward_bidirectional(mode, x, forward, backward, lengths, keep):
    """Both directions of a bidirectional layer: ``forward``/``backward`` are (h0, c0, w_ih, w_hh, b_ih, b_hh).

    Returns one (out, h_n, c_n, saved) per direction, as two
    :func:`recurrent_forward` calls would. Where the batched path applies and
    there are exactly two workers, each runs one direction's whole sequence
    (:func:`_forward_pair_kernel`: no sync between steps); otherwise the
    directions run one after the other.
    """
    seq_len, batch = x.shape[:2]
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    if not _use_batched(mode, batch) or parallel_workers() != 2:
        return tuple(recurrent_forward(mode, x, *args, lengths, reverse, keep)
                     for reverse, args in ((False, forward), (True, backward)))
    _tile.register(x.dtype)
    x = np.ascontiguousarray(x)
    arrays = [_batched_direction(mode, x, *args, reverse, keep)
              for reverse, args in ((False, forward), (True, backward))]
    active, full = _masks(seq_len, lengths)
    run_parallel(_forward_pair_kernel, _KINDS[mode], (x, active, full, False, *arrays[0], 0),
                 (x, active, full, True, *arrays[1], 0))
    return tuple(_batched_result(mode, a, 2, active, full, reverse, keep) for reverse, a in ((False, arrays[0]),
                                                                                             (True, arrays[1])))


def _backward_batched(saved, grad_out, grad_h_n, grad_c_n, bptt_steps):
    """BPTT of the batched path: ``saved`` is one "batched" state, or "halves" (two, one per half of the
    batch, each run on its own worker). Then the weight, bias and input gradients of all parts together."""
    parts = saved[2] if saved[0] == "halves" else (saved,)
    _, mode, w_hh, w_ih, workers = parts[0][:5]
    workers = max(workers, len(parts))
    dtype = w_hh.dtype
    _tile.register(dtype)
    grad_out = np.ascontiguousarray(grad_out, dtype=dtype)
    seq_len, batch = grad_out.shape[:2]
    hidden, input_size = w_hh.shape[1], w_ih.shape[1]
    width = hidden + input_size + 1  # zmat's rows: [h; x; 1]
    gate_count = GATE_COUNT[mode]
    grad_all = np.empty((seq_len * batch, gate_count * hidden), dtype)  # rows t*N + n, batch-major
    grad_h_all = np.empty_like(grad_all) if mode == "gru" else grad_all
    zcols = np.empty((seq_len, batch, width), dtype)  # [h; x; 1] of every step and sequence, rows t*N + n
    runs, dhs, dcs, sqs, col0 = [], [], [], [], 0
    for part in parts:
        zmat, cells, gates, hidden_n, active, full, reverse = part[5:]
        cols = slice(col0, col0 + active.shape[1])
        dh = np.zeros((hidden, active.shape[1]), dtype)
        if grad_h_n is not None:
            dh[...] = np.asarray(grad_h_n)[cols].T
        dc = np.zeros_like(dh)
        if mode == "lstm" and grad_c_n is not None:
            dc[...] = np.asarray(grad_c_n)[cols].T
        grad = np.empty_like(gates)
        grad_h = np.empty_like(gates) if mode == "gru" else grad
        sq = np.zeros((workers if len(parts) == 1 else 1, seq_len), dtype)
        # the time loop's arguments after (kind, w_hh): see _backward_batched_kernel / _backward_one_worker
        runs.append(((zmat, cells, gates, hidden_n, active, full, reverse, bptt_steps, grad_out, dh, dc, grad,
                      grad_h, grad_all, grad_h_all, sq, zcols), col0))
        dhs.append(dh)
        dcs.append(dc)
        sqs.append(sq)
        col0 = cols.stop
    if len(runs) == 2:
        run_parallel(_backward_pair_kernel, _KINDS[mode], *((w_hh, *loop, start) for loop, start in runs))
    else:
        _run(workers, _backward_batched_kernel, _KINDS[mode], w_hh, _chunk_bounds(hidden, workers), *runs[0][0])
    zcols = zcols.reshape(seq_len * batch, width)
    rows = gate_count * hidden
    grad_w = np.empty((rows, width), dtype)
    grad_w_hh, grad_w_ih = np.empty((rows, hidden), dtype), np.empty((rows, input_size), dtype)
    grad_b_ih = np.empty(rows, dtype)
    grad_x = np.empty((seq_len, batch, input_size), dtype)
    _run(workers, _weight_gradients_kernel, w_ih, zcols, grad_all, grad_h_all, mode == "gru",
         _chunk_bounds(rows, workers), _chunk_bounds(seq_len * batch, workers), grad_w, grad_w_hh, grad_w_ih,
         grad_b_ih, grad_x)
    grad_b_hh = grad_b_ih.copy()
    if mode == "gru":
        grad_b_hh[GRU_N * hidden:] = grad_h_all[:, GRU_N * hidden:].sum(axis=0)
    norms = np.sqrt(sum(sq.sum(axis=0) for sq in sqs))
    grad_h0 = np.concatenate([dh.T for dh in dhs])
    grad_c0 = np.concatenate([dc.T for dc in dcs]) if mode == "lstm" else None
    return grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, norms


def _use_batched(mode, batch):
    return mode != "gru_reset_before" and batch >= _blas_min_rows()


def recurrent_forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, keep):
    seq_len, batch, input_size = x.shape
    hidden = h0.shape[1]
    blas = _blas_min_rows()
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    if _use_batched(mode, batch):
        return _forward_batched(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, keep)
    gates = (x.reshape(seq_len * batch, input_size) @ w_ih.T).reshape(seq_len, batch, -1)
    out = np.empty((seq_len, batch, hidden), dtype=x.dtype)
    h = h0.copy()
    c = None
    extra = None
    kept = seq_len if keep else 1
    if mode in ("rnn_tanh", "rnn_relu"):
        _rnn_forward(gates, h, np.ascontiguousarray(w_hh.T), b_ih + b_hh, lengths, reverse, mode == "rnn_relu", out)
    elif mode == "lstm":
        c = c0.copy()
        extra = np.empty((kept, batch, hidden), dtype=x.dtype)
        _lstm_forward(gates, h, c, np.ascontiguousarray(w_hh.T), b_ih + b_hh, lengths, reverse, out, extra)
    else:
        # r and z take both biases; n keeps b_hn apart (it sits inside r * (...) or after W_hn (r*h)).
        bias = b_ih + b_hh
        bias[GRU_N * hidden:(GRU_N + 1) * hidden] = b_ih[GRU_N * hidden:(GRU_N + 1) * hidden]
        bias_hn = np.ascontiguousarray(b_hh[GRU_N * hidden:(GRU_N + 1) * hidden])
        extra = np.empty((kept, batch, hidden), dtype=x.dtype)
        if mode == "gru":
            _gru_forward(gates, h, np.ascontiguousarray(w_hh.T), bias, bias_hn, lengths, reverse, out, extra)
        else:
            w_hrz_t = np.ascontiguousarray(w_hh[:2 * hidden].T)
            w_hn_t = np.ascontiguousarray(w_hh[GRU_N * hidden:].T)
            _gru_reset_before_forward(gates, h, w_hrz_t, w_hn_t, bias, bias_hn, lengths, reverse, out, extra, blas)
    saved = (mode, x, h0, c0, w_ih, w_hh, lengths, reverse, gates, out, extra) if keep else None
    return out, h, c, saved


def recurrent_backward(saved, grad_out, grad_h_n, grad_c_n, bptt_steps):
    if saved[0] in ("batched", "halves"):
        return _backward_batched(saved, grad_out, grad_h_n, grad_c_n, bptt_steps)
    mode, x, h0, c0, w_ih, w_hh, lengths, reverse, gates, out, extra = saved
    seq_len, batch, input_size = x.shape
    hidden = h0.shape[1]
    rows = seq_len * batch
    blas = _blas_min_rows()
    grad_out = np.ascontiguousarray(grad_out)
    dh = np.zeros_like(h0) if grad_h_n is None else np.array(grad_h_n, dtype=x.dtype, order="C")
    dc = None
    dh_all = np.empty((seq_len, batch, hidden), dtype=x.dtype)
    h_prev = _previous(out, h0, lengths, reverse)
    grad_gates = np.empty_like(gates)
    grad_h_gates = grad_gates
    if mode in ("rnn_tanh", "rnn_relu"):
        _rnn_backward(gates, grad_out, dh, w_hh, lengths, reverse, mode == "rnn_relu", bptt_steps, grad_gates,
                      dh_all, blas)
    elif mode == "lstm":
        dc = np.zeros_like(h0) if grad_c_n is None else np.array(grad_c_n, dtype=x.dtype, order="C")
        c_prev = _previous(extra, c0, lengths, reverse)
        _lstm_backward(gates, extra, c_prev, grad_out, dh, dc, w_hh, lengths, reverse, bptt_steps, grad_gates,
                       dh_all, blas)
    elif mode == "gru":
        grad_h_gates = np.empty_like(gates)
        _gru_backward(gates, extra, h_prev, grad_out, dh, w_hh, lengths, reverse, bptt_steps, grad_gates,
                      grad_h_gates, dh_all, blas)
    else:
        w_hn = np.ascontiguousarray(w_hh[GRU_N * hidden:])
        _gru_reset_before_backward(gates, h_prev, grad_out, dh, np.ascontiguousarray(w_hh[:2 * hidden]), w_hn,
                                   lengths, reverse, bptt_steps, grad_gates, dh_all, blas)
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
    norms = np.sqrt(np.einsum("tnh,tnh->t", dh_all, dh_all))
    return grad_x, dh, dc, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, norms
