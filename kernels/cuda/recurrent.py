"""Recurrent layers (RNN, LSTM, GRU) on the CUDA device: one layer, one direction, a whole sequence.

Same functions and signatures as ``kernels/reference/recurrent.py`` (the
equations and gate layout are documented there; offsets come from its
``GATE_COUNT``). The input projection of every step is one GEMM over the
whole ``(T*N, I)`` sequence before the time loop. The time loop itself is ONE
kernel launch: block ``n`` runs sequence ``n`` step after step (the sequences
of a batch are independent), its threads first making the hidden projection
``h W_hh^T + b_hh`` (one gate row per thread, W_hh read transposed so a warp's
loads are contiguous), then, after a block barrier, the fused gate arithmetic
(one thread per state element, masking padded steps). Launching per step
instead (a GEMM and a gate kernel per step) costed ~150 us of launch overhead
per step on an H100, 30x cuDNN's whole step. ``gru_reset_before`` needs ``r``
before the candidate gate's hidden product: a third phase computes ``r * h``.

Backward replays no forward work: the forward (``keep=True``) stores each
step's previous state and activated gates. BPTT is again one launch, one
block per sequence: per step (reverse processing order) the gate gradients,
then ``dh`` carried through ``W_hh`` by the block; the weight, bias and input
gradients are then a few GEMMs and column sums over the whole sequence.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

from numba import cuda

from ..reference.recurrent import GATE_COUNT
from .. import config
from ._util import (broadcast_rows, column_sums, copy_into, empty, gemm, per_dtype, row_norms, to_device, transpose,
                    zeros)

MODE_IDS = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3, "gru_reset_before": 4}




@per_dtype
def _kernels(nb_type):
    """The time-step kernels for one dtype: constants typed as the data (no float64 promotion of float32 math)."""
    zero, one, half = nb_type(0), nb_type(1), nb_type(0.5)

    @cuda.jit(device=True)
    def sigmoid(v):
        return half + half * math.tanh(half * v)  # = 1/(1+exp(-v)) without overflow


    @cuda.jit(device=True)
    def reset_hidden(t, n, j, gx, gh, h, slot, rh):
        # gru_reset_before: rh[slot] = r * h, with r from the r blocks of gx and gh.
        batch = h.shape[0]
        r = sigmoid(gx[t * batch + n, j] + gh[n, j])
        rh[slot, n, j] = r * h[n, j]

    @cuda.jit(device=True)
    def cell(mode, t, n, j, gx, gh, h, c, lengths, out, keep, hprev, cprev, gates, extra):
        # One state element (n, j) of step t: gates from gx (input projection) and gh (hidden projection).
        batch, hidden = h.shape
        row = t * batch + n
        active = t < lengths[n]
        h_old = h[n, j]
        if keep:
            hprev[t, n, j] = h_old
        if mode <= 1:
            pre = gx[row, j] + gh[n, j]
            if mode == 0:
                h_new = math.tanh(pre)
            else:
                h_new = zero if pre < zero else pre
            if keep:
                gates[t, n, j] = h_new
        elif mode == 2:
            i = sigmoid(gx[row, j] + gh[n, j])
            f = sigmoid(gx[row, hidden + j] + gh[n, hidden + j])
            g = math.tanh(gx[row, 2 * hidden + j] + gh[n, 2 * hidden + j])
            o = sigmoid(gx[row, 3 * hidden + j] + gh[n, 3 * hidden + j])
            c_old = c[n, j]
            c_new = f * c_old + i * g
            tanh_c = math.tanh(c_new)
            h_new = o * tanh_c
            if keep:
                cprev[t, n, j] = c_old
                gates[t, n, j] = i
                gates[t, n, hidden + j] = f
                gates[t, n, 2 * hidden + j] = g
                gates[t, n, 3 * hidden + j] = o
                extra[t, n, j] = tanh_c
            if active:
                c[n, j] = c_new
        else:
            r = sigmoid(gx[row, j] + gh[n, j])
            z = sigmoid(gx[row, hidden + j] + gh[n, hidden + j])
            gh_n = gh[n, 2 * hidden + j]  # reset_after: h W_hn^T + b_hn; reset_before: (r*h) W_hn^T + b_hn
            if mode == 3:
                cand = math.tanh(gx[row, 2 * hidden + j] + r * gh_n)
            else:
                cand = math.tanh(gx[row, 2 * hidden + j] + gh_n)
            h_new = (one - z) * cand + z * h_old
            if keep:
                gates[t, n, j] = r
                gates[t, n, hidden + j] = z
                gates[t, n, 2 * hidden + j] = cand
                extra[t, n, j] = gh_n
        if active:
            out[t, n, j] = h_new
            h[n, j] = h_new
        else:
            out[t, n, j] = zero

    @cuda.jit(device=True)
    def cell_backward(mode, t, n, j, grad_out, lengths, dh_next, dc_next, hprev, cprev, gates, extra, dgx, dgh,
                      dh_all):
        # The gate gradients of state element (n, j) at step t; dh_next/dc_next carry to step t - 1.
        batch, hidden = dh_next.shape
        row = t * batch + n
        active = t < lengths[n]
        dh = dh_next[n, j]
        if active:
            dh += grad_out[t, n, j]
        dh_all[t, n * hidden + j] = dh
        if mode <= 1:
            act = gates[t, n, j]
            if mode == 0:
                dpre = dh * (one - act * act)
            else:
                dpre = dh if act > zero else zero * dh
            if not active:
                dpre = zero * dh
            dgx[row, j] = dpre
            dgh[row, j] = dpre
            dh_next[n, j] = zero if active else dh
        elif mode == 2:
            i = gates[t, n, j]
            f = gates[t, n, hidden + j]
            g = gates[t, n, 2 * hidden + j]
            o = gates[t, n, 3 * hidden + j]
            tanh_c = extra[t, n, j]
            dc = dc_next[n, j] + dh * o * (one - tanh_c * tanh_c)
            keep_grad = one if active else zero
            di = dc * g * i * (one - i) * keep_grad
            df = dc * cprev[t, n, j] * f * (one - f) * keep_grad
            dg = dc * i * (one - g * g) * keep_grad
            do = dh * tanh_c * o * (one - o) * keep_grad
            dgx[row, j] = di
            dgx[row, hidden + j] = df
            dgx[row, 2 * hidden + j] = dg
            dgx[row, 3 * hidden + j] = do
            dgh[row, j] = di
            dgh[row, hidden + j] = df
            dgh[row, 2 * hidden + j] = dg
            dgh[row, 3 * hidden + j] = do
            if active:
                dh_next[n, j] = zero
                dc_next[n, j] = dc * f
            else:
                dh_next[n, j] = dh
        else:
            r = gates[t, n, j]
            z = gates[t, n, hidden + j]
            cand = gates[t, n, 2 * hidden + j]
            gh_n = extra[t, n, j]
            keep_grad = one if active else zero
            dn = dh * (one - z) * (one - cand * cand) * keep_grad
            dz = dh * (hprev[t, n, j] - cand) * z * (one - z) * keep_grad
            dgx[row, hidden + j] = dz
            dgh[row, hidden + j] = dz
            dgx[row, 2 * hidden + j] = dn
            if mode == 3:
                dr = dn * gh_n * r * (one - r)
                dgx[row, j] = dr
                dgh[row, j] = dr
                dgh[row, 2 * hidden + j] = dn * r
            else:
                dgh[row, 2 * hidden + j] = dn  # dr needs dn W_hn first (reset_backward)
            dh_next[n, j] = dh * z if active else dh

    @cuda.jit(device=True)
    def reset_backward(t, n, j, d_rh, lengths, hprev, gates, dgx, dgh, dh_next):
        # gru_reset_before: the r gate's gradient, once d(r*h) = dn W_hn is known.
        batch = dh_next.shape[0]
        row = t * batch + n
        r = gates[t, n, j]
        if t < lengths[n]:
            dr = d_rh[n, j] * hprev[t, n, j] * r * (one - r)
            dh_next[n, j] += d_rh[n, j] * r
        else:
            dr = zero * r
        dgx[row, j] = dr
        dgh[row, j] = dr

    @cuda.jit(device=True)
    def project(w_t, bias, src, n, first, last, gh):
        # gh[n, g] = bias[g] + sum_k src[n, k] W_hh[g, k] for the gate rows g in [first, last).
        # W_hh comes transposed (w_t[k, g]), so the block's consecutive threads read consecutive addresses.
        for g in range(first + cuda.threadIdx.x, last, cuda.blockDim.x):
            acc = bias[g]
            for k in range(src.shape[1]):
                acc += src[n, k] * w_t[k, g]
            gh[n, g] = acc

    @cuda.jit(device=True)
    def carry(dgh, row, w_hh, first, last, dst, n, accumulate):
        # dst[n, k] (+)= sum_g dgh[row, g] W_hh[g, k] over the gate rows g in [first, last): dh through W_hh.
        for k in range(cuda.threadIdx.x, dst.shape[1], cuda.blockDim.x):
            acc = zero
            for g in range(first, last):
                acc += dgh[row, g] * w_hh[g, k]
            if accumulate:
                dst[n, k] += acc
            else:
                dst[n, k] = acc

    @cuda.jit
    def forward(mode, reverse, keep, gx, w_t, b_hh, h, c, lengths, out, hprev, cprev, gates, extra, gh, rh):
        # The whole time loop in one launch: block n runs sequence n, its state in h[n] / c[n]; a block
        # barrier separates the hidden projection from the gates, and the gates from the next step.
        n = cuda.blockIdx.x
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        seq_len, hidden, width = out.shape[0], out.shape[2], gh.shape[1]
        for s in range(seq_len):
            t = seq_len - 1 - s if reverse else s
            if mode == 4:
                slot = t if keep else 0
                project(w_t, b_hh, h, n, 0, 2 * hidden, gh)
                cuda.syncthreads()
                for j in range(tid, hidden, threads):
                    reset_hidden(t, n, j, gx, gh, h, slot, rh)
                cuda.syncthreads()
                project(w_t, b_hh, rh[slot], n, 2 * hidden, width, gh)
            else:
                project(w_t, b_hh, h, n, 0, width, gh)
            cuda.syncthreads()
            for j in range(tid, hidden, threads):
                cell(mode, t, n, j, gx, gh, h, c, lengths, out, keep, hprev, cprev, gates, extra)
            cuda.syncthreads()

    @cuda.jit
    def backward(mode, reverse, bptt_steps, grad_out, lengths, w_hh, dh_next, dc_next, hprev, cprev, gates, extra,
                 dgx, dgh, dh_all, d_rh):
        # BPTT in one launch, block n for sequence n, steps in reverse processing order.
        n = cuda.blockIdx.x
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        seq_len, batch, hidden = grad_out.shape
        width = dgh.shape[1]
        for s in range(seq_len - 1, -1, -1):
            t = seq_len - 1 - s if reverse else s
            row = t * batch + n
            for j in range(tid, hidden, threads):
                cell_backward(mode, t, n, j, grad_out, lengths, dh_next, dc_next, hprev, cprev, gates, extra,
                              dgx, dgh, dh_all)
            cuda.syncthreads()
            if mode == 4:
                carry(dgh, row, w_hh, 2 * hidden, width, d_rh, n, False)
                cuda.syncthreads()
                for j in range(tid, hidden, threads):
                    reset_backward(t, n, j, d_rh, lengths, hprev, gates, dgx, dgh, dh_next)
                cuda.syncthreads()
                carry(dgh, row, w_hh, 0, 2 * hidden, dh_next, n, True)
            else:
                carry(dgh, row, w_hh, 0, width, dh_next, n, True)
            cuda.syncthreads()
            if bptt_steps > 0 and s % bptt_steps == 0 and s > 0:
                for k in range(tid, hidden, threads):
                    dh_next[n, k] = zero
                    dc_next[n, k] = zero
                cuda.syncthreads()

    return SimpleNamespace(forward=forward, backward=backward)


def recurrent_forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, keep):
    x, w_ih, w_hh, b_ih, b_hh = (to_device(a) for a in (x, w_ih, w_hh, b_ih, b_hh))
    lengths = to_device(lengths)
    seq_len, batch, in_size = x.shape
    hidden = w_hh.shape[1]
    gate_width = GATE_COUNT[mode] * hidden
    dtype = x.dtype
    # Input projection of every step at once: gx = x W_ih^T + b_ih, (T*N, G*H).
    gx = broadcast_rows(b_ih, empty((seq_len * batch, gate_width), dtype))
    gemm(x.reshape(seq_len * batch, in_size), w_ih, gx, trans_b=True, beta=1.0)
    h = copy_into(to_device(h0), empty((batch, hidden), dtype))
    c = copy_into(to_device(c0), empty((batch, hidden), dtype)) if mode == "lstm" else h
    out = empty((seq_len, batch, hidden), dtype)
    if keep:
        hprev = empty((seq_len, batch, hidden), dtype)
        cprev = empty((seq_len, batch, hidden), dtype) if mode == "lstm" else hprev
        gates = empty((seq_len, batch, gate_width), dtype)
        extra = empty((seq_len, batch, hidden), dtype) if mode != "rnn_tanh" and mode != "rnn_relu" else hprev
    else:
        hprev = cprev = gates = extra = empty((1, 1, gate_width), dtype)  # unwritten placeholders
    rh = empty((seq_len if keep else 1, batch, hidden), dtype) if mode == "gru_reset_before" else hprev
    w_t = transpose(w_hh)  # W_hh^T: coalesced reads in the time loop
    gh = empty((batch, gate_width), dtype)
    _kernels(dtype).forward[batch, config.CUDA_RECURRENT_THREADS](
        MODE_IDS[mode], bool(reverse), bool(keep), gx, w_t, b_hh, h, c, lengths, out, hprev, cprev, gates, extra,
        gh, rh)
    saved = None
    if keep:
        saved = (mode, x, w_ih, w_hh, lengths, reverse, hprev, cprev, gates, extra,
                 rh if mode == "gru_reset_before" else None)
    return out, h, (c if mode == "lstm" else None), saved


def recurrent_backward(saved, grad_out, grad_h_n, grad_c_n, bptt_steps):
    mode, x, w_ih, w_hh, lengths, reverse, hprev, cprev, gates, extra, rh = saved
    grad_out = to_device(grad_out)
    seq_len, batch, in_size = x.shape
    hidden = w_hh.shape[1]
    gate_width = GATE_COUNT[mode] * hidden
    dtype = x.dtype
    state = (batch, hidden)
    dh_next = zeros(state, dtype) if grad_h_n is None else copy_into(to_device(grad_h_n), empty(state, dtype))
    dc_next = None
    if mode == "lstm":
        dc_next = zeros(state, dtype) if grad_c_n is None else copy_into(to_device(grad_c_n), empty(state, dtype))
    dgx = empty((seq_len * batch, gate_width), dtype)
    dgh = empty((seq_len * batch, gate_width), dtype)
    dh_all = empty((seq_len, batch * hidden), dtype)
    d_rh = empty(state, dtype) if mode == "gru_reset_before" else dh_next
    _kernels(dtype).backward[batch, config.CUDA_RECURRENT_THREADS](
        MODE_IDS[mode], bool(reverse), int(bptt_steps or 0), grad_out, lengths, w_hh, dh_next,
        dc_next if dc_next is not None else dh_next, hprev, cprev, gates, extra, dgx, dgh, dh_all, d_rh)
    x_rows = x.reshape(seq_len * batch, in_size)
    grad_x = gemm(dgx, w_ih, empty((seq_len * batch, in_size), dtype)).reshape(seq_len, batch, in_size)
    grad_w_ih = gemm(dgx, x_rows, empty(w_ih.shape, dtype), trans_a=True)
    grad_w_hh = empty(w_hh.shape, dtype)
    h_rows = hprev.reshape(seq_len * batch, hidden)
    if mode == "gru_reset_before":
        gemm(dgh[:, :2 * hidden], h_rows, grad_w_hh[:2 * hidden], trans_a=True)
        gemm(dgh[:, 2 * hidden:], rh.reshape(seq_len * batch, hidden), grad_w_hh[2 * hidden:], trans_a=True)
    else:
        gemm(dgh, h_rows, grad_w_hh, trans_a=True)
    grad_b_ih, grad_b_hh = column_sums(dgx), column_sums(dgh)
    norms = row_norms(dh_all)
    return grad_x, dh_next, dc_next, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, norms
