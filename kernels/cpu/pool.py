"""Max, average and adaptive pooling, Numba; parallel over the N*C planes.

Semantics are those of kernels/reference/pool.py (PyTorch's): max scans the
in-bounds part of each window in row order, taking a value if it is greater
than the best so far or NaN; indices are flat positions h*W + w in the plane.

How the loops are laid out (measurements in kernels/config.py):

* Every kernel works on whole rows: the innermost loop runs over the output
  columns ``j`` with a fixed window tap, so it is branch-free and LLVM
  vectorizes it (stride 1 and stride 2 get their own copy of the loop so the
  access pattern is a compile-time constant). Columns whose window crosses the
  left/right border are done one by one, with bounds checks, outside it.
* Max pooling is separable: a horizontal pass finds, for every input row, the
  best of the ``kw`` taps of each output column (value and column), then a
  vertical pass combines the ``kh`` rows of each window. The row-major scan
  rule ("take v if v > best or v is NaN") composes over consecutive groups of
  the scan, and each window row is such a group, so the result (first maximum,
  last NaN) is exactly the one of the direct scan. A 3x3 stride-1 window costs
  2 + 2 comparisons per output instead of 8.
* Average pooling adds the taps in PyTorch's order (row-major over the window)
  into the output row, then divides by the per-column divisor.
* Planes are split into a few tasks per thread (``POOL_TASKS_PER_THREAD``);
  each task allocates its row scratch once.
* Backward kernels zero and fill one plane at a time, so the plane stays in L1
  between the two steps (no separate np.zeros pass over the whole gradient).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .. import config
from .._jit import njit

# Indexing with unsigned integers skips Numba's negative-index wraparound, whose
# per-element select keeps LLVM from vectorizing the row loops.
_u = np.uint64


@njit(inline="always")
def _interior(size, out, kernel, stride, pad, dilation):
    """Range [lo, hi) of outputs whose whole window lies inside [0, size)."""
    lo = (pad + stride - 1) // stride
    last = size - 1 - (kernel - 1) * dilation + pad
    hi = last // stride + 1 if last >= 0 else 0
    hi = min(hi, out)
    lo = min(lo, hi)
    return lo, hi


@njit(inline="always")
def _taps_range(start, kernel, dilation, size):
    """Range [lo, hi) of taps a with 0 <= start + a*dilation < size."""
    lo = 0
    if start < 0:
        lo = (-start + dilation - 1) // dilation
    hi = kernel
    if start + (kernel - 1) * dilation >= size:
        hi = (size - 1 - start) // dilation + 1 if size - 1 - start >= 0 else 0
    return lo, max(lo, hi)


@njit(inline="always")
def _taps_range1(start, kernel, size):
    """_taps_range for dilation 1, without the integer divisions (border windows are hot)."""
    lo = max(0, -start)
    hi = min(kernel, size - start)
    return lo, max(lo, hi)


# ---------------------------------------------------------------- max pooling
@njit(inline="always")
def _takes(v, best):
    """PyTorch's scan rule: v replaces best if it is greater or NaN (so the first NaN, or the first of
    equal maxima, stays)."""
    return (v > best) | (v != v)


@njit(inline="always")
def _pick(v, best, at, v_at):
    """One step of the scan, carrying the index of the value kept."""
    take = _takes(v, best)
    return (v if take else best), (v_at if take else at)


@njit(inline="always")
def _best(v, best):
    """_pick without the index: the value the scan keeps."""
    return v if _takes(v, best) else best


@njit(inline="always")
def _max_window_row(x, p, h, width, j, kw, sw, pw):
    """Best value over the in-bounds taps of output column j in row h, and its column
    relative to the window start (scalar; every window has an in-bounds tap when dilation is 1)."""
    w0 = j * sw - pw
    b_lo, b_hi = _taps_range1(w0, kw, width)
    best, at = x[p, h * width + w0 + b_lo], np.int32(b_lo)
    for b in range(b_lo + 1, b_hi):
        best, at = _pick(x[p, h * width + w0 + b], best, at, np.int32(b))
    return best, at


@njit(inline="always")
def _max_vertical_row(hv, hc, hs, out, idx, p, i, height, width, kh, sh, ph, sw, pw, ow):
    """out/idx row i from the horizontal maxima of its window rows (hv/hc rows of stride hs); idx with no
    planes: values only.

    Candidates carry the int32 code a*width + c (a: window row, c: column in the window);
    the flat index is the window start plus the code. Constant codes keep the selects
    in 32-bit lanes next to the float ones.
    """
    h0 = i * sh - ph
    a_lo, a_hi = _taps_range1(h0, kh, height)
    rows = a_hi - a_lo
    r0 = (h0 + a_lo) * hs
    m0 = i * ow
    start = h0 * width - pw
    row1 = np.int32((a_lo + 1) * width)
    row2 = np.int32((a_lo + 2) * width)
    first = np.int32(a_lo * width)
    keep = idx.shape[0] > 0
    if rows == 1:
        for j in range(ow):
            out[p, _u(m0 + j)] = hv[_u(r0 + j)]
            if keep:
                idx[p, _u(m0 + j)] = np.int64(hc[_u(r0 + j)] + first) + (start + sw * j)
    elif rows == 2:
        for j in range(ow):
            best, at = hv[_u(r0 + j)], hc[_u(r0 + j)] + first
            best, at = _pick(hv[_u(r0 + hs + j)], best, at, hc[_u(r0 + hs + j)] + row1)
            out[p, _u(m0 + j)] = best
            if keep:
                idx[p, _u(m0 + j)] = np.int64(at) + (start + sw * j)
    elif rows == 3:
        for j in range(ow):
            best, at = hv[_u(r0 + j)], hc[_u(r0 + j)] + first
            best, at = _pick(hv[_u(r0 + hs + j)], best, at, hc[_u(r0 + hs + j)] + row1)
            best, at = _pick(hv[_u(r0 + 2 * hs + j)], best, at, hc[_u(r0 + 2 * hs + j)] + row2)
            out[p, _u(m0 + j)] = best
            if keep:
                idx[p, _u(m0 + j)] = np.int64(at) + (start + sw * j)
    else:
        for j in range(ow):
            best, at = hv[r0 + j], hc[r0 + j] + first
            for a in range(1, rows):
                best, at = _pick(hv[r0 + a * hs + j], best, at, hc[r0 + a * hs + j] + np.int32((a_lo + a) * width))
            out[p, m0 + j] = best
            if keep:
                idx[p, m0 + j] = np.int64(at) + (start + sw * j)


@njit(parallel=True)
def _max_pool_separable(x, height, width, kh, kw, sh, sw, ph, pw, oh, ow, out, idx, tasks):
    """Max pooling (dilation 1) as a horizontal then a vertical pass (see the module docstring).

    x is (planes, H*W), out/idx are (planes, oh*ow); H*W must fit in int32. idx with no planes: values
    only. The scratch rows hv (best value) / hc (its column in the window) have stride hs.
    """
    planes = x.shape[0]
    keep = idx.shape[0] > 0
    j_lo, j_hi = _interior(width, ow, kw, sw, pw, 1)
    i_lo, i_hi = _interior(height, oh, kh, sh, ph, 1)
    # Stride-1 rows: one loop over the whole plane (rows back to back), borders redone after.
    flat_h = sw == 1 and (kw == 2 or kw == 3) and ow <= width
    # 2-wide stride-2 windows tiling the row exactly: also one loop over the plane.
    pairs_h = sw == 2 and kw == 2 and pw == 0 and width == 2 * ow
    hs = width if flat_h else ow
    # Stride-1 windows with rows as long as the input's: one loop over the interior rows.
    # The flat index arithmetic there assumes window column j starts at input column
    # j - pw, so it needs horizontal stride 1 too (ow == width alone can hold with sw > 1).
    flat_v = sh == 1 and sw == 1 and (kh == 2 or kh == 3) and hs == ow and ow == width and i_lo < i_hi
    one, two = np.int32(1), np.int32(2)
    row1, row2 = np.int32(width), np.int32(2 * width)
    for t in prange(tasks):
        hv = np.empty(height * hs, dtype=x.dtype)
        hc = np.empty(height * hs, dtype=np.int32)
        for p in range(t * planes // tasks, (t + 1) * planes // tasks):
            if flat_h:
                k0, k1 = pw, height * width - (kw - 1) + pw
                if kw == 2:
                    for k in range(k0, k1):
                        w = k - pw
                        best, at = x[p, _u(w)], np.int32(0)
                        best, at = _pick(x[p, _u(w + 1)], best, at, one)
                        hv[_u(k)] = best
                        hc[_u(k)] = at
                else:
                    for k in range(k0, k1):
                        w = k - pw
                        best, at = x[p, _u(w)], np.int32(0)
                        best, at = _pick(x[p, _u(w + 1)], best, at, one)
                        best, at = _pick(x[p, _u(w + 2)], best, at, two)
                        hv[_u(k)] = best
                        hc[_u(k)] = at
                for h in range(height):
                    for j in range(j_lo):
                        hv[h * hs + j], hc[h * hs + j] = _max_window_row(x, p, h, width, j, kw, sw, pw)
                    for j in range(max(j_hi, j_lo), ow):
                        hv[h * hs + j], hc[h * hs + j] = _max_window_row(x, p, h, width, j, kw, sw, pw)
            elif pairs_h:
                for k in range(height * ow):
                    best, at = x[p, _u(2 * k)], np.int32(0)
                    best, at = _pick(x[p, _u(2 * k + 1)], best, at, one)
                    hv[_u(k)] = best
                    hc[_u(k)] = at
            else:
                for h in range(height):
                    for j in range(ow):
                        hv[h * hs + j], hc[h * hs + j] = _max_window_row(x, p, h, width, j, kw, sw, pw)
            if flat_v:
                shift = ph * ow
                start = -ph * width - pw
                if kh == 2:
                    for m in range(i_lo * ow, i_hi * ow):
                        r = m - shift
                        best, at = hv[_u(r)], hc[_u(r)]
                        best, at = _pick(hv[_u(r + ow)], best, at, hc[_u(r + ow)] + row1)
                        out[p, _u(m)] = best
                        if keep:
                            idx[p, _u(m)] = np.int64(at) + (start + m)
                else:
                    for m in range(i_lo * ow, i_hi * ow):
                        r = m - shift
                        best, at = hv[_u(r)], hc[_u(r)]
                        best, at = _pick(hv[_u(r + ow)], best, at, hc[_u(r + ow)] + row1)
                        best, at = _pick(hv[_u(r + 2 * ow)], best, at, hc[_u(r + 2 * ow)] + row2)
                        out[p, _u(m)] = best
                        if keep:
                            idx[p, _u(m)] = np.int64(at) + (start + m)
                for i in range(i_lo):
                    _max_vertical_row(hv, hc, hs, out, idx, p, i, height, width, kh, sh, ph, sw, pw, ow)
                for i in range(i_hi, oh):
                    _max_vertical_row(hv, hc, hs, out, idx, p, i, height, width, kh, sh, ph, sw, pw, ow)
            else:
                for i in range(oh):
                    _max_vertical_row(hv, hc, hs, out, idx, p, i, height, width, kh, sh, ph, sw, pw, ow)


@njit(parallel=True)
def _max_pool_2x2(x, width, oh, ow, out, idx, tasks):
    """2x2 windows, stride 2, no padding, all in bounds: one pass, four taps per output.

    The candidates' codes (0, 1, W, W+1: offsets from the window start) are
    loop constants, so the index selects stay in 32-bit lanes. idx with no planes: values only.
    """
    planes = x.shape[0]
    keep = idx.shape[0] > 0
    c1, c2, c3 = np.int32(1), np.int32(width), np.int32(width + 1)
    for t in prange(tasks):
        for p in range(t * planes // tasks, (t + 1) * planes // tasks):
            for i in range(oh):
                r0 = 2 * i * width
                r1 = r0 + width
                m0 = i * ow
                for j in range(ow):
                    best, at = x[p, _u(r0 + 2 * j)], np.int32(0)
                    best, at = _pick(x[p, _u(r0 + 2 * j + 1)], best, at, c1)
                    best, at = _pick(x[p, _u(r1 + 2 * j)], best, at, c2)
                    best, at = _pick(x[p, _u(r1 + 2 * j + 1)], best, at, c3)
                    out[p, _u(m0 + j)] = best
                    if keep:
                        idx[p, _u(m0 + j)] = np.int64(at) + (r0 + 2 * j)


@njit(parallel=True)
def _max_pool_3x3_same(x, height, width, out, tasks):
    """3x3 windows, stride 1, padding 1 (the output has the input's size; height, width >= 2), values
    only: each row's best of three columns, then the best of three such rows. Every loop runs over one
    row at index j, so it vectorises (the separable kernel's vertical pass over the whole plane, with
    its runtime row offsets, did not). Same scan rule as _pick, so NaN and ties agree with it.
    """
    planes = x.shape[0]
    last = width - 1
    for t in prange(tasks):
        hv = np.empty((height, width), dtype=x.dtype)
        for p in range(t * planes // tasks, (t + 1) * planes // tasks):
            for h in range(height):
                src, dst = x[p, h * width:(h + 1) * width], hv[h]
                dst[0] = _best(src[1], src[0])
                for j in range(1, last):
                    dst[_u(j)] = _best(src[_u(j + 1)], _best(src[_u(j)], src[_u(j - 1)]))
                dst[last] = _best(src[last], src[last - 1])
            for i in range(height):
                o = out[p, i * width:(i + 1) * width]
                r0, r1 = hv[max(i - 1, 0)], hv[min(i + 1, height - 1)]
                if 0 < i < height - 1:
                    mid = hv[i]
                    for j in range(width):
                        o[_u(j)] = _best(r1[_u(j)], _best(mid[_u(j)], r0[_u(j)]))
                else:  # top or bottom row: two window rows
                    for j in range(width):
                        o[_u(j)] = _best(r1[_u(j)], r0[_u(j)])


@njit(parallel=True)
def _max_pool_direct(x, kh, kw, sh, sw, ph, pw, dh, dw, out, idx):
    """The plain scan, window by window: the fallback for planes too large for int32 indices (idx with no
    planes: values only)."""
    planes, height, width = x.shape
    keep = idx.shape[0] > 0
    oh, ow = out.shape[1], out.shape[2]
    for p in prange(planes):
        for i in range(oh):
            h0 = i * sh - ph
            for j in range(ow):
                w0 = j * sw - pw
                best = x.dtype.type(-np.inf)
                best_at = -1
                for a in range(kh):
                    h = h0 + a * dh
                    if h < 0 or h >= height:
                        continue
                    for b in range(kw):
                        w = w0 + b * dw
                        if w < 0 or w >= width:
                            continue
                        v = x[p, h, w]
                        if best_at < 0 or v > best or np.isnan(v):
                            best = v
                            best_at = h * width + w
                out[p, i, j] = best
                if keep:
                    idx[p, i, j] = best_at


@njit(parallel=True)
def _max_pool_backward(g, idx, grad_x):
    """grad_x[p, idx[p, o]] += g[p, o], one plane at a time (zeroed here, not by the caller)."""
    planes, count = g.shape
    plane = grad_x.shape[1]
    zero = g.dtype.type(0)
    for p in prange(planes):
        for k in range(plane):
            grad_x[p, k] = zero
        for o in range(count):
            grad_x[p, idx[p, o]] += g[p, o]


# ------------------------------------------------------------ average pooling
@njit(inline="always")
def _cover(size, start, kernel, pad, count_include_pad):
    """How many window positions PyTorch counts along one dimension."""
    end = min(start + kernel, size + pad)
    if count_include_pad:
        return end - start
    return min(end, size) - max(start, 0)


@njit(inline="always")
def _valid_outputs(size, out, stride, offset):
    """Range [lo, hi) of j with 0 <= j*stride + offset < size."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    last = size - 1 - offset
    hi = last // stride + 1 if last >= 0 else 0
    hi = min(hi, out)
    return lo, max(lo, hi)


@njit(inline="always")
def _row_add(x, p, h, out, i, sw, off, j0, j1):
    """out[p, i, j] += x[p, h, j*sw + off] for j in [j0, j1)."""
    if sw == 1:
        for j in range(j0, j1):
            out[p, i, _u(j)] += x[p, h, _u(j + off)]
    elif sw == 2:
        for j in range(j0, j1):
            out[p, i, _u(j)] += x[p, h, _u(2 * j + off)]
    else:
        for j in range(j0, j1):
            out[p, i, _u(j)] += x[p, h, _u(sw * j + off)]


@njit(inline="always")
def _row_spread(share, grad_x, p, h, sw, off, j0, j1):
    """grad_x[p, h, j*sw + off] += share[j] for j in [j0, j1)."""
    if sw == 1:
        for j in range(j0, j1):
            grad_x[p, h, _u(j + off)] += share[_u(j)]
    elif sw == 2:
        for j in range(j0, j1):
            grad_x[p, h, _u(2 * j + off)] += share[_u(j)]
    else:
        for j in range(j0, j1):
            grad_x[p, h, _u(sw * j + off)] += share[_u(j)]


@njit(inline="always")
def _column_cover(width, ow, kw, sw, pw, count_include_pad, cols):
    for j in range(ow):
        cols[j] = _cover(width, j * sw - pw, kw, pw, count_include_pad)


@njit(parallel=True)
def _avg_pool(x, kh, kw, sh, sw, ph, pw, count_include_pad, divisor, out, tasks):
    planes, height, width = x.shape
    oh, ow = out.shape[1], out.shape[2]
    zero = x.dtype.type(0)
    for t in prange(tasks):
        cols = np.empty(ow, dtype=np.int64)
        _column_cover(width, ow, kw, sw, pw, count_include_pad, cols)
        div = np.empty(ow, dtype=x.dtype)
        for p in range(t * planes // tasks, (t + 1) * planes // tasks):
            for i in range(oh):
                h0 = i * sh - ph
                for j in range(ow):
                    out[p, i, j] = zero
                for h in range(max(h0, 0), min(h0 + kh, height)):
                    for b in range(kw):
                        off = b - pw
                        j0, j1 = _valid_outputs(width, ow, sw, off)
                        _row_add(x, p, h, out, i, sw, off, j0, j1)
                if divisor > 0:
                    d = x.dtype.type(divisor)
                    for j in range(ow):
                        out[p, i, j] = out[p, i, j] / d
                else:
                    rows = _cover(height, h0, kh, ph, count_include_pad)
                    for j in range(ow):
                        div[j] = x.dtype.type(rows * cols[j])
                    for j in range(ow):
                        out[p, i, j] = out[p, i, j] / div[j]


@njit(parallel=True)
def _avg_pool_backward(g, kh, kw, sh, sw, ph, pw, count_include_pad, divisor, grad_x, tasks):
    planes, height, width = grad_x.shape
    oh, ow = g.shape[1], g.shape[2]
    zero = g.dtype.type(0)
    for t in prange(tasks):
        cols = np.empty(ow, dtype=np.int64)
        _column_cover(width, ow, kw, sw, pw, count_include_pad, cols)
        share = np.empty(ow, dtype=g.dtype)
        for p in range(t * planes // tasks, (t + 1) * planes // tasks):
            for h in range(height):
                for w in range(width):
                    grad_x[p, h, w] = zero
            for i in range(oh):
                h0 = i * sh - ph
                if divisor > 0:
                    d = g.dtype.type(divisor)
                    for j in range(ow):
                        share[j] = g[p, i, j] / d
                else:
                    rows = _cover(height, h0, kh, ph, count_include_pad)
                    for j in range(ow):
                        share[j] = g[p, i, j] / g.dtype.type(rows * cols[j])
                for h in range(max(h0, 0), min(h0 + kh, height)):
                    for b in range(kw):
                        off = b - pw
                        j0, j1 = _valid_outputs(width, ow, sw, off)
                        _row_spread(share, grad_x, p, h, sw, off, j0, j1)


@njit(parallel=True)
def _avg_pool_2x2(x, width, oh, ow, divisor, out, tasks):
    """2x2 windows, stride 2, no padding, all in bounds; the sum in PyTorch's order."""
    planes = x.shape[0]
    d = x.dtype.type(divisor)
    for t in prange(tasks):
        for p in range(t * planes // tasks, (t + 1) * planes // tasks):
            for i in range(oh):
                r0 = 2 * i * width
                r1 = r0 + width
                m0 = i * ow
                for j in range(ow):
                    total = x[p, _u(r0 + 2 * j)] + x[p, _u(r0 + 2 * j + 1)]
                    total = (total + x[p, _u(r1 + 2 * j)]) + x[p, _u(r1 + 2 * j + 1)]
                    out[p, _u(m0 + j)] = total / d


@njit(parallel=True)
def _avg_pool_2x2_backward(g, height, width, divisor, grad_x, tasks):
    """Each input of a 2x2 stride-2 window gets g / divisor: written, not accumulated."""
    planes, oh, ow = g.shape
    d = g.dtype.type(divisor)
    zero = g.dtype.type(0)
    for t in prange(tasks):
        for p in range(t * planes // tasks, (t + 1) * planes // tasks):
            for i in range(oh):
                r0 = 2 * i * width
                r1 = r0 + width
                for j in range(ow):
                    share = g[p, i, _u(j)] / d
                    grad_x[p, _u(r0 + 2 * j)] = share
                    grad_x[p, _u(r0 + 2 * j + 1)] = share
                    grad_x[p, _u(r1 + 2 * j)] = share
                    grad_x[p, _u(r1 + 2 * j + 1)] = share
                for w in range(2 * ow, width):
                    grad_x[p, r0 + w] = zero
                    grad_x[p, r1 + w] = zero
            for k in range(2 * oh * width, height * width):
                grad_x[p, k] = zero


# ----------------------------------------------------------- adaptive pooling
@njit(inline="always")
def _adaptive_start(i, size, out):
    return (i * size) // out


@njit(inline="always")
def _adaptive_end(i, size, out):
    return -((-(i + 1) * size) // out)


# reassoc lets LLVM split the plane sum into vector lanes (no NaN/Inf assumption).
@njit(parallel=True, fastmath={"reassoc"})
def _global_avg(x, out):
    planes, count = x.shape
    for p in prange(planes):
        total = x.dtype.type(0)
        for k in range(count):
            total += x[p, k]
        out[p] = total / x.dtype.type(count)


@njit(parallel=True)
def _global_avg_backward(g, grad_x):
    planes, count = grad_x.shape
    for p in prange(planes):
        share = g[p] / g.dtype.type(count)
        for k in range(count):
            grad_x[p, k] = share


@njit(parallel=True)
def _adaptive_avg(x, out):
    planes, height, width = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for p in prange(planes):
        for i in range(oh):
            h0, h1 = _adaptive_start(i, height, oh), _adaptive_end(i, height, oh)
            for j in range(ow):
                w0, w1 = _adaptive_start(j, width, ow), _adaptive_end(j, width, ow)
                total = x.dtype.type(0)
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        total += x[p, h, w]
                out[p, i, j] = total / x.dtype.type((h1 - h0) * (w1 - w0))


@njit(parallel=True)
def _adaptive_avg_backward(g, grad_x):
    planes, height, width = grad_x.shape
    oh, ow = g.shape[1], g.shape[2]
    zero = g.dtype.type(0)
    for p in prange(planes):
        for h in range(height):
            for w in range(width):
                grad_x[p, h, w] = zero
        for i in range(oh):
            h0, h1 = _adaptive_start(i, height, oh), _adaptive_end(i, height, oh)
            for j in range(ow):
                w0, w1 = _adaptive_start(j, width, ow), _adaptive_end(j, width, ow)
                share = g[p, i, j] / g.dtype.type((h1 - h0) * (w1 - w0))
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        grad_x[p, h, w] += share


@njit(parallel=True)
def _adaptive_max(x, out, idx):
    planes, height, width = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for p in prange(planes):
        for i in range(oh):
            h0, h1 = _adaptive_start(i, height, oh), _adaptive_end(i, height, oh)
            for j in range(ow):
                w0, w1 = _adaptive_start(j, width, ow), _adaptive_end(j, width, ow)
                best = x[p, h0, w0]
                best_at = h0 * width + w0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        v = x[p, h, w]
                        if v > best or v != v:
                            best = v
                            best_at = h * width + w
                out[p, i, j] = best
                idx[p, i, j] = best_at


# ------------------------------------------------------------------ interface
def _tasks(x):
    """How many pieces the planes of x are split into (a few per thread, for balance)."""
    planes = x.shape[0] * x.shape[1]
    return max(1, min(planes, numba.get_num_threads() * config.POOL_TASKS_PER_THREAD))


def _planes(x):
    return x.reshape((-1,) + x.shape[2:])


def max_pool2d_algorithm(x, kernel, stride, padding, dilation, out_size, indices=True) -> str:
    """Which max-pooling kernel runs: "window2x2", "window3x3" (values only), "separable" or "direct"."""
    height, width = x.shape[2:]
    if dilation != (1, 1) or height * width >= config.POOL_INT32_PLANE_LIMIT:
        return "direct"
    if (not indices and kernel == (3, 3) and stride == (1, 1) and padding == (1, 1)
            and tuple(out_size) == (height, width) and height >= 2 and width >= 2):
        return "window3x3"
    if (kernel == (2, 2) and stride == (2, 2) and padding == (0, 0)
            and 2 * out_size[0] <= height and 2 * out_size[1] <= width):
        return "window2x2"
    return "separable"


def max_pool2d_forward(x, kernel, stride, padding, dilation, out_size, *, indices=True, algorithm=None):
    """(out, indices); ``indices=False`` skips them (None; the kernels then write values only, a third
    of the bytes of 2x2 pooling). ``algorithm`` forces a kernel (tests); the default asks
    :func:`max_pool2d_algorithm`.

    "window2x2" and "separable" require dilation 1 (each window then has an
    in-bounds tap), "window3x3" a 3x3 stride-1 padding-1 window on planes of
    at least 2x2 and indices=False; "direct" handles everything.
    """
    n, c, height, width = x.shape
    oh, ow = out_size
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    idx = np.empty((n, c, oh, ow) if indices else (0, 0, 0, 0), dtype=np.int64)
    if algorithm is None:
        algorithm = max_pool2d_algorithm(x, tuple(kernel), tuple(stride), tuple(padding), tuple(dilation), out_size,
                                         indices)
    if algorithm == "window3x3" and indices:
        raise ValueError("max_pool2d_forward: the window3x3 kernel makes values only (indices=False)")
    flat_x = x.reshape(n * c, height * width)
    flat_out = out.reshape(n * c, oh * ow)
    flat_idx = idx.reshape(n * c, oh * ow) if indices else np.empty((0, 0), np.int64)
    if algorithm == "window2x2":
        _max_pool_2x2(flat_x, width, oh, ow, flat_out, flat_idx, _tasks(x))
    elif algorithm == "window3x3":
        _max_pool_3x3_same(flat_x, height, width, flat_out, _tasks(x))
    elif algorithm == "separable":
        _max_pool_separable(flat_x, height, width, *kernel, *stride, *padding, oh, ow, flat_out, flat_idx, _tasks(x))
    else:
        _max_pool_direct(_planes(x), *kernel, *stride, *padding, *dilation, _planes(out),
                         _planes(idx) if indices else np.empty((0, 0, 0), np.int64))
    return out, (idx if indices else None)


def max_pool2d_backward(grad_out, indices, in_size):
    n, c = grad_out.shape[:2]
    grad_x = np.empty((n * c, in_size[0] * in_size[1]), dtype=grad_out.dtype)
    _max_pool_backward(grad_out.reshape(n * c, -1), indices.reshape(n * c, -1), grad_x)
    return grad_x.reshape((n, c) + tuple(in_size))


def avg_pool2d_algorithm(x_shape, kernel, stride, padding, out_size) -> str:
    """Which average-pooling kernel runs: "window2x2" or "rows"."""
    height, width = x_shape[-2:]
    if (tuple(kernel) == (2, 2) and tuple(stride) == (2, 2) and tuple(padding) == (0, 0)
            and 2 * out_size[0] <= height and 2 * out_size[1] <= width):
        return "window2x2"
    return "rows"


def avg_pool2d_forward(x, kernel, stride, padding, out_size, count_include_pad, divisor, *, algorithm=None):
    n, c, height, width = x.shape
    oh, ow = out_size
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    algorithm = algorithm or avg_pool2d_algorithm(x.shape, kernel, stride, padding, out_size)
    if algorithm == "window2x2":
        # No padding and whole windows: PyTorch's divisor is 4 either way.
        _avg_pool_2x2(x.reshape(n * c, height * width), width, oh, ow, divisor or 4,
                      out.reshape(n * c, oh * ow), _tasks(x))
    else:
        _avg_pool(_planes(x), *kernel, *stride, *padding, count_include_pad, divisor, _planes(out), _tasks(x))
    return out


def avg_pool2d_backward(grad_out, in_size, kernel, stride, padding, count_include_pad, divisor, *, algorithm=None):
    n, c = grad_out.shape[:2]
    height, width = in_size
    grad_x = np.empty((n, c, height, width), dtype=grad_out.dtype)
    algorithm = algorithm or avg_pool2d_algorithm(in_size, kernel, stride, padding, grad_out.shape[2:])
    if algorithm == "window2x2":
        _avg_pool_2x2_backward(_planes(grad_out), height, width, divisor or 4,
                               grad_x.reshape(n * c, height * width), _tasks(grad_x))
    else:
        _avg_pool_backward(_planes(grad_out), *kernel, *stride, *padding, count_include_pad, divisor,
                           _planes(grad_x), _tasks(grad_x))
    return grad_x


def adaptive_avg_pool2d_forward(x, out_size):
    n, c = x.shape[:2]
    out = np.empty((n, c) + tuple(out_size), dtype=x.dtype)
    if tuple(out_size) == (1, 1):
        _global_avg(x.reshape(n * c, -1), out.reshape(-1))
    else:
        _adaptive_avg(_planes(x), _planes(out))
    return out


def adaptive_avg_pool2d_backward(grad_out, in_size):
    n, c = grad_out.shape[:2]
    grad_x = np.empty((n, c) + tuple(in_size), dtype=grad_out.dtype)
    if grad_out.shape[2:] == (1, 1):
        _global_avg_backward(grad_out.reshape(-1), grad_x.reshape(n * c, -1))
    else:
        _adaptive_avg_backward(_planes(grad_out), _planes(grad_x))
    return grad_x


def adaptive_max_pool2d_forward(x, out_size):
    out = np.empty(x.shape[:2] + tuple(out_size), dtype=x.dtype)
    idx = np.empty(x.shape[:2] + tuple(out_size), dtype=np.int64)
    _adaptive_max(_planes(x), _planes(out), _planes(idx))
    return out, idx
