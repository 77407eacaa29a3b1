"""2-D convolution on the CPU: a direct Numba kernel for few channels, shifted GEMMs otherwise.

The trick shared by every path (the "padded-width" formulation): pad a tile
of images and split it into its ``sh*sw`` stride phases, ``xp[c, ph, pw, n, a, b]
= x_pad[n, c, a*sh + ph, b*sw + pw]``, every phase plane flattened to ``Hq*Wq``
columns and the tile's images laid side by side. Output position ``(n, i, j)``
becomes column ``q = n*Hq*Wq + i*Wq + j``, and kernel tap ``(r, s)`` reads phase
``(r*dh % sh, s*dw % sw)`` at column ``q + (r*dh // sh)*Wq + (s*dw // sw)``: a
*contiguous* column slice of that phase. Columns ``j >= out_w`` (and rows
``i >= out_h``) of the result are garbage and are dropped when it is scattered
to NCHW. Algorithms (chosen in ``conv2d_forward``/``conv2d_backward`` from the
thresholds in ``config.py``, where the measurements are):

* ``tiled`` (forward, dilation 1, one group, at least ``TILE_ROWS`` output
  channels, stride 1 or output rows at least 16 wide; conv a-e): no BLAS.
  Register-blocked tiles of 6 output channels by 16 (float32) output
  positions, or 3 by 24, that keep their sums in registers over every
  (channel, kernel row, kernel column) tap and start from the bias. Output rows at least 16 wide are tiled along
  the rows and stored straight into the NCHW output (``_tile.conv_rows``:
  no garbage columns, no copy out; an unpadded input is read in place);
  narrower ones use the padded-width layout (``_tile.conv_tiles``) and the
  copy out. With a column stride (conv d) each padded plane is split into
  its column phases, so a tap still reads adjacent elements; the row stride
  only steps the rows. prange over images; with fewer images than threads,
  over bands of output rows (conv e: each band pads just the input rows it
  reads), or chunks of output channels for the narrow rows
  (``_tiled_forward``).
* ``direct`` (C/groups <= CONV_DIRECT_MAX_CHANNELS; conv a, b): no BLAS. prange
  over images. Forward (where the tiles don't apply), per image, two output
  channels at a time, each pass over the contiguous plane adds a whole kernel
  row of taps (``_row_taps``), so every store carries 2*S multiply-adds. Backward for stride 1: grad_input is the
  same kernel run as a transposed conv (flipped, transposed weight),
  grad_weight is register-blocked dot products (``_row_dots``) into per-worker
  accumulators.
* ``shifted`` (C/groups >= CONV_SHIFTED_MIN_CHANNELS; the backward of c, e): R*S GEMMs
  ``ext += W_rs @ xp[:, phase_rs, off_rs : off_rs + L]`` (beta = 1, leading
  dimensions instead of copies), no im2col at all. Backward: grad_weight is
  ``gext @ xp_slice.T`` per tap, grad_input ``W_rs.T @ gext`` added into the
  matching slice of a phase-split buffer, then un-split; ``gext`` is
  grad_output in the column layout with zeros in the garbage columns.
* ``lowered`` (the rest): the R*S shifted slices are copied into ``col`` (each
  row a memcpy) and one GEMM per group does the work.

Parallelism is one kind at a time (ANCHORS.md: mixing prange with threaded
BLAS thrashes 2 cores): the GEMM paths run whole batch tiles on prange
workers with SciPy's OpenBLAS set to one thread for the call (or split the
GEMM columns when the batch is smaller than the thread count); the serial
driver with BLAS's own threads is the fallback when that OpenBLAS can't be
found. BLAS is reached through Numba's own ``numba_xxgemm`` helper (SciPy's
cython_blas underneath), resolved by symbol name, so ``cache=True`` keeps
working (no function pointer is baked into the compiled code). The batch is
tiled so the scratch buffers of one call (all workers together) stay under
``config.CONV_WORKSPACE_BYTES``, read at call time.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .. import config
from .._jit import njit
from ._blas import N as _N
from ._blas import T as _T
from ._blas import blas_threads as _blas_threads
from ._blas import gemm as _gemm
from ._blas import run_parallel as _run_parallel
from ._tile import TILE_ROWS, conv_rows, conv_tiles, conv_width_multiple

# ---------------------------------------------------------------------------
# Layout helpers (serial; memory-bound copies).


@njit
def _copy(dst, src):
    """dst[:] = src for 1-D arrays of one length, as a loop: Numba's slice assignment checks
    overlap and broadcasting per call, which made the row copies of the layout helpers run at
    4-5 GB/s (67 us per 64-channel 34x34 image, as long as a grad_weight pass over it)."""
    for t in range(dst.shape[0]):
        dst[t] = src[t]


@njit
def _fill(dst, value):
    for t in range(dst.shape[0]):
        dst[t] = value


@njit
def _split_phases(x, n0, n1, pt, pl, sh, sw, hq, wq, xp):
    """xp[c, (ph*sw + pw)*tile + n - n0, a*wq + b] = x_pad[n, c, a*sh + ph, b*sw + pw] (zeros outside x)."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    tile = xp.shape[1] // (sh * sw)
    zero = x.dtype.type(0)
    for c in range(channels):
        for ph in range(sh):
            for pw in range(sw):
                # the columns b whose source w = b*sw + pw - pl lies inside the image
                b_lo = min(wq, max(0, (pl - pw + sw - 1) // sw))
                b_hi = max(b_lo, min(wq, (width - 1 + pl - pw) // sw + 1))
                for n in range(n0, n1):
                    plane = xp[c, (ph * sw + pw) * tile + n - n0]
                    if sw == 1:
                        # data rows are copies; everything between them (one row's right
                        # padding, the next one's left padding, padding rows) one fill each
                        done = 0
                        for a in range(hq):
                            h = a * sh + ph - pt
                            if 0 <= h < height:
                                start = a * wq + b_lo
                                _fill(plane[done:start], zero)
                                _copy(plane[start:start + b_hi - b_lo], x[n, c, h, b_lo - pl:b_hi - pl])
                                done = start + b_hi - b_lo
                        _fill(plane[done:], zero)
                        continue
                    # strided: flat indices into the plane, and the source row from its first column
                    # read, indexed from 0 (no negative-index wraparound). A view per row took 177 us per
                    # 64x32x32 image at stride 2, this 80-98 (49 with _split_columns' constant stride)
                    src = x[n, c]
                    first = b_lo * sw + pw - pl  # >= 0
                    for a in range(hq):
                        h = a * sh + ph - pt
                        base = a * wq
                        if h < 0 or h >= height:
                            for b in range(wq):
                                plane[base + b] = zero
                            continue
                        for b in range(b_lo):
                            plane[base + b] = zero
                        row = src[h, first:]
                        for b in range(b_hi - b_lo):
                            plane[base + b_lo + b] = row[b * sw]
                        for b in range(b_hi, wq):
                            plane[base + b] = zero


@njit
def _merge_phases(dxp, n0, n1, pt, pl, sh, sw, wq, grad_x):
    """Adjoint of _split_phases restricted to the real pixels: grad_x[n, c, h, w] = dxp[...]."""
    channels, height, width = grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]
    tile = dxp.shape[1] // (sh * sw)
    for c in range(channels):
        for n in range(n0, n1):
            for h in range(height):
                hp = h + pt
                ph, a = hp % sh, hp // sh
                dst = grad_x[n, c, h]
                if sw == 1:
                    _copy(dst, dxp[c, ph * tile + n - n0, a * wq + pl:a * wq + pl + width])
                    continue
                for w in range(width):
                    wp = w + pl
                    pw, b = wp % sw, wp // sw
                    dst[w] = dxp[c, (ph * sw + pw) * tile + n - n0, a * wq + b]


@njit
def _scatter_out(ext, n0, n1, hq, wq, k0, bias, has_bias, out):
    """out[n, k0 + k, i, j] = ext[k, (n - n0)*hq*wq + i*wq + j] (+ bias)."""
    k_count = ext.shape[0]
    oh, ow = out.shape[2], out.shape[3]
    plane = hq * wq
    zero = out.dtype.type(0)
    for n in range(n0, n1):
        base = (n - n0) * plane
        for k in range(k_count):
            shift = bias[k0 + k] if has_bias else zero
            for i in range(oh):
                src = ext[k, base + i * wq:base + i * wq + ow]
                dst = out[n, k0 + k, i]
                for j in range(ow):
                    dst[j] = src[j] + shift


@njit
def _gather_grad(grad_out, n0, n1, hq, wq, k0, gext):
    """gext[k, (n - n0)*hq*wq + i*wq + j] = grad_out[n, k0 + k, i, j]; zeros in the garbage columns."""
    k_count = gext.shape[0]
    oh, ow = grad_out.shape[2], grad_out.shape[3]
    plane = hq * wq
    zero = gext.dtype.type(0)
    for k in range(k_count):
        for n in range(n0, n1):
            base = (n - n0) * plane
            for i in range(hq):
                row = gext[k, base + i * wq:base + (i + 1) * wq]
                if i >= oh:
                    _fill(row, zero)
                    continue
                _copy(row[:ow], grad_out[n, k0 + k, i])
                _fill(row[ow:], zero)


@njit
def _tap(r, s, sh, sw, dh, dw, wq, tile, hq):
    """(first row of the tap's phase block in xp, column offset) of kernel tap (r, s)."""
    ph, pw = (r * dh) % sh, (s * dw) % sw
    return (ph * sw + pw) * tile, ((r * dh) // sh) * wq + (s * dw) // sw


@njit
def _lower(xp, c0, c_count, kh, kw, sh, sw, dh, dw, hq, wq, width, col):
    """col[(c*kh + r)*kw + s, :width] = xp row c0 + c, phase of (r, s), shifted by the tap's offset."""
    tile = xp.shape[1] // (sh * sw)
    flat = xp.reshape(xp.shape[0], xp.shape[1] * xp.shape[2])
    for c in range(c_count):
        for r in range(kh):
            for s in range(kw):
                block, off = _tap(r, s, sh, sw, dh, dw, wq, tile, hq)
                start = block * hq * wq + off
                col[(c * kh + r) * kw + s, :width] = flat[c0 + c, start:start + width]


@njit
def _unlower_add(dcol, c0, c_count, kh, kw, sh, sw, dh, dw, hq, wq, width, dxp):
    """Adjoint of _lower: add each row of dcol into the slice of dxp it was copied from."""
    tile = dxp.shape[1] // (sh * sw)
    flat = dxp.reshape(dxp.shape[0], dxp.shape[1] * dxp.shape[2])
    for c in range(c_count):
        for r in range(kh):
            for s in range(kw):
                block, off = _tap(r, s, sh, sw, dh, dw, wq, tile, hq)
                start = block * hq * wq + off
                dst = flat[c0 + c, start:start + width]
                src = dcol[(c * kh + r) * kw + s, :width]
                for q in range(width):
                    dst[q] += src[q]


# ---------------------------------------------------------------------------
# Direct kernel for few input channels (conv a, b): no BLAS, prange over images.
#
# Per image the input is zero-padded (and phase-split) into ``xp`` and two
# output channels are accumulated at a time over the padded-width plane
# ``ext[q], q = i*wq + j``: for each input channel and kernel row, all S taps
# of the row are summed in one pass over the contiguous plane, so each store
# of ``ext`` carries 2*S FMAs and the inner loop is FMA-bound, not store-bound.
# ``contract`` lets LLVM fuse the multiply-adds (no NaN/Inf assumptions).


@njit(fastmath={"contract"})
def _row_taps_unit(e0, e1, xrow, off, width, w0, w1, kw):
    """_row_taps for adjacent taps (step 1), written so that LLVM vectorizes it.

    Indices must be provably non-negative (``range(width)`` over a sliced view
    and literal tap offsets): an index with a runtime offset keeps Numba's
    negative-index wraparound in the loop and ran 12x slower, unvectorized.
    """
    xs = xrow[off:]
    if kw == 3:
        a0, a1, a2 = w0[0], w0[1], w0[2]
        b0, b1, b2 = w1[0], w1[1], w1[2]
        for q in range(width):
            v0, v1, v2 = xs[q], xs[q + 1], xs[q + 2]
            e0[q] += a0 * v0 + a1 * v1 + a2 * v2
            e1[q] += b0 * v0 + b1 * v1 + b2 * v2
    elif kw == 5:
        a0, a1, a2, a3, a4 = w0[0], w0[1], w0[2], w0[3], w0[4]
        b0, b1, b2, b3, b4 = w1[0], w1[1], w1[2], w1[3], w1[4]
        for q in range(width):
            v0, v1, v2, v3, v4 = xs[q], xs[q + 1], xs[q + 2], xs[q + 3], xs[q + 4]
            e0[q] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3 + a4 * v4
            e1[q] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3 + b4 * v4
    else:
        _row_taps_any(e0, e1, xrow, off, 1, width, w0, w1, kw)


@njit(fastmath={"contract"})
def _row_taps_any(e0, e1, xrow, off, step, width, w0, w1, kw):
    for s in range(kw):
        a, b = w0[s], w1[s]
        xs = xrow[off + s * step:]
        for q in range(width):
            v = xs[q]
            e0[q] += a * v
            e1[q] += b * v


@njit(fastmath={"contract"})
def _row_taps_single(e0, xrow, off, step, width, w0, kw):
    """_row_taps with one output (an odd channel's self-pair): half the work."""
    if step == 1 and kw == 3:
        xs = xrow[off:]
        a0, a1, a2 = w0[0], w0[1], w0[2]
        for q in range(width):
            e0[q] += a0 * xs[q] + a1 * xs[q + 1] + a2 * xs[q + 2]
    elif step == 1 and kw == 5:
        xs = xrow[off:]
        a0, a1, a2, a3, a4 = w0[0], w0[1], w0[2], w0[3], w0[4]
        for q in range(width):
            e0[q] += a0 * xs[q] + a1 * xs[q + 1] + a2 * xs[q + 2] + a3 * xs[q + 3] + a4 * xs[q + 4]
    else:
        for s in range(kw):
            a = w0[s]
            xs = xrow[off + s * step:]
            for q in range(width):
                e0[q] += a * xs[q]


@njit(fastmath={"contract"})
def _row_taps_three(e0, e1, e2, xrow, off, width, w0, w1, w2):
    """_row_taps_unit for three outputs and three adjacent taps: 9 weights, 3 inputs and 3 sums fill
    the 16 AVX2 registers. It serves the odd last channel triple (k_group = 3 is conv b's grad_input)."""
    xs = xrow[off:]
    a0, a1, a2 = w0[0], w0[1], w0[2]
    b0, b1, b2 = w1[0], w1[1], w1[2]
    c0, c1, c2 = w2[0], w2[1], w2[2]
    for q in range(width):
        v0, v1, v2 = xs[q], xs[q + 1], xs[q + 2]
        e0[q] += a0 * v0 + a1 * v1 + a2 * v2
        e1[q] += b0 * v0 + b1 * v1 + b2 * v2
        e2[q] += c0 * v0 + c1 * v1 + c2 * v2


@njit
def _row_taps(e0, e1, xrow, off, step, width, w0, w1, kw):
    """e0[q] += sum_s w0[s] * xrow[off + s*step + q] (and e1 with w1), for q < width."""
    if step == 1:
        _row_taps_unit(e0, e1, xrow, off, width, w0, w1, kw)
    else:
        _row_taps_any(e0, e1, xrow, off, step, width, w0, w1, kw)


@njit(parallel=True)
def _direct_forward(x, weight, bias, has_bias, sh, sw, pt, pl, dh, dw, groups, hq, wq, out):
    n, channels = x.shape[0], x.shape[1]
    k_out, c_group, kh, kw = weight.shape
    k_group = k_out // groups
    oh, ow = out.shape[2], out.shape[3]
    plane = hq * wq
    width = (oh - 1) * wq + ow
    zero = x.dtype.type(0)
    # output channels in blocks of two; an odd count ends with a block of three (3 adjacent taps)
    # or of one (the self-pair below)
    triple = k_group % 2 == 1 and k_group >= 3 and kw == 3 and dw == 1 and sw == 1
    blocks = (k_group + 1) // 2 - (1 if triple else 0)
    for image in prange(n):
        xp = np.empty((channels, sh * sw, plane), x.dtype)
        _split_phases(x[image:image + 1], 0, 1, pt, pl, sh, sw, hq, wq, xp)
        ext = np.empty((3, width), x.dtype)
        for block in range(groups * blocks):
            g = block // blocks
            k = g * k_group + 2 * (block % blocks)
            size = min(2, (g + 1) * k_group - k)
            if triple and block % blocks == blocks - 1:
                size = 3
            # a lone last channel pairs with itself; the copy is discarded
            k1 = k + 1 if size > 1 else k
            ext[:size] = zero
            for c in range(c_group):
                for r in range(kh):
                    phase_r, row_r = (r * dh) % sh, (r * dh) // sh
                    if size == 3:
                        xrow = xp[g * c_group + c, phase_r * sw]
                        _row_taps_three(ext[0], ext[1], ext[2], xrow, row_r * wq, width,
                                        weight[k, c, r], weight[k + 1, c, r], weight[k + 2, c, r])
                        continue
                    for pw in range(sw):
                        # the taps s of this kernel row that fall in column phase pw
                        s0 = 0
                        while s0 < kw and (s0 * dw) % sw != pw:
                            s0 += 1
                        if s0 >= kw:
                            continue
                        step_s = 1
                        while (step_s * dw) % sw != 0:
                            step_s += 1
                        count = (kw - s0 + step_s - 1) // step_s
                        xrow = xp[g * c_group + c, phase_r * sw + pw]
                        off = row_r * wq + (s0 * dw) // sw
                        if k1 == k:
                            _row_taps_single(ext[0], xrow, off, (step_s * dw) // sw, width,
                                             weight[k, c, r, s0::step_s], count)
                        else:
                            _row_taps(ext[0], ext[1], xrow, off, (step_s * dw) // sw, width,
                                      weight[k, c, r, s0::step_s], weight[k1, c, r, s0::step_s], count)
            _scatter_out(ext[:size], image, image + 1, hq, wq, k, bias, has_bias, out)


# Tiled kernel (dilation 1, one group, at least TILE_ROWS output channels, stride 1 or rows at least
# one tile wide; conv a-e forward): register-blocked tiles of a few output channels by 2-3 SIMD vectors of output
# positions, each tile summing every (channel, kernel row, kernel column) tap with its accumulators
# in registers (the pass-per-kernel-row kernel above stores and reloads its sums every kernel row).
# Output rows at least one wide tile long are tiled along the rows and stored straight into NCHW
# (_tile.conv_rows); narrower ones use the flat padded-width layout and the copy out
# (_tile.conv_tiles, _scatter_out).


@njit
def _split_columns(x, image, pt, pl, sw, hq, wq, planes):
    """Image ``image`` padded, its columns split into sw phases (_split_phases with row stride 1). The
    strides the tiled path meets are constants here, so their loops compile for them (stride 2 split
    twice as fast as with a run-time stride: 50 vs 85 us per 64x32x32 image)."""
    one = x[image:image + 1]
    if sw == 1:
        _split_phases(one, 0, 1, pt, pl, 1, 1, hq, wq, planes)
    elif sw == 2:
        _split_phases(one, 0, 1, pt, pl, 1, 2, hq, wq, planes)
    else:
        _split_phases(one, 0, 1, pt, pl, 1, sw, hq, wq, planes)


@njit(parallel=True)
def _tiled_forward(x, weight, bias, pt, pl, sh, sw, hq, wq, bands, chunks, rows_per_call, out):
    """Work items are (image, band of output rows, chunk of output channels): one of each per image when
    there are enough images for the workers. Else the work of an image is shared out: output rows at
    least a tile wide in bands of rows (conv e: one image), each item padding just the input rows its
    band reads; narrower ones in chunks of output channels, the padded planes made once for all chunks
    first. bias: k_out values (zeros for none). (hq, wq) from _tiled_geometry: with stride sw > 1
    (output rows at least a tile wide) each channel's padded plane is split into its sw column phases,
    hq x wq each; rows are never split. rows_per_call: output rows per tile call (_rows_per_call)."""
    n, channels, height, width_in = x.shape
    k_out, _, kh, kw = weight.shape
    oh, ow = out.shape[2], out.shape[3]
    wide = conv_width_multiple(x)
    by_rows = ow >= wide
    used = (oh - 1) * wq + ow
    width = (used + wide - 1) // wide * wide  # flat layout: whole tiles, the extra columns dropped below
    plane = hq * wq + (0 if by_rows else wide)  # the flat layout's extra columns read past the plane
    padded = not by_rows or sw != 1 or hq != height or wq != width_in  # else the tiles read x itself
    taps = weight.reshape(k_out, channels * kh * kw)
    # the padding fill covers the extra room
    shared = np.empty((n if chunks > 1 and padded else 0, channels, sw, plane), x.dtype)
    for image in prange(shared.shape[0]):
        _split_columns(x, image, pt, pl, sw, hq, wq, shared[image])
    for item in prange(n * bands * chunks):
        image, part = item // (bands * chunks), item % (bands * chunks)
        band, chunk = part // chunks, part % chunks
        k0, k1 = chunk * k_out // chunks, (chunk + 1) * k_out // chunks
        if by_rows:
            y0, y1 = band * oh // bands, (band + 1) * oh // bands
            if padded:
                rows = (y1 - y0 - 1) * sh + kh  # the padded input rows the band reads
                planes = np.empty((channels, sw, rows * wq), x.dtype)
                _split_columns(x, image, pt - y0 * sh, pl, sw, rows, wq, planes)
                xp, b_plane = planes.ravel(), rows * wq
            else:
                xp, b_plane = x[image].ravel()[y0 * sh * wq:], plane
            conv_rows(k1 - k0, y1 - y0, ow, channels, kh, kw, taps[k0:k1], xp, sw * b_plane, wq, bias[k0:k1],
                      out[image, k0:k1].ravel()[y0 * ow:], True, sh, sw, b_plane, oh * ow, rows_per_call)
            continue
        if not padded:
            xp = x[image].ravel()
        elif chunks > 1:
            xp = shared[image].ravel()
        else:
            planes = np.empty((channels, sw, plane), x.dtype)
            _split_columns(x, image, pt, pl, sw, hq, wq, planes)
            xp = planes.ravel()
        ext = np.empty((k1 - k0, width), x.dtype)
        conv_tiles(k1 - k0, width, channels, kh, kw, taps[k0:k1], xp, plane, wq, bias[k0:k1], ext)
        _scatter_out(ext, image, image + 1, hq, wq, k0, bias, False, out)


def _rows_per_call(weight, out_size):
    """Output rows each tile call of conv_rows runs (kernels/config.py CONV_ROWS_PER_CALL_MAX_TAPS): all of
    them for a short reduction, where a call's fixed cost is a large part of its work; else one."""
    taps = weight.shape[1] * weight.shape[2] * weight.shape[3]
    return out_size[0] if taps <= config.CONV_ROWS_PER_CALL_MAX_TAPS else 1


def _tile_split(n, k_out, out_size, wide):
    """(bands, chunks) of each image for _tiled_forward: enough work items for every worker. Output rows
    at least ``wide`` (a wide tile) long are shared out in bands of rows, narrower ones in chunks of
    output channels, each chunk at least TILE_ROWS channels."""
    shares = max(1, -(-numba.get_num_threads() // n))
    if out_size[1] >= wide:
        return min(shares, out_size[0]), 1
    return 1, max(1, min(shares, k_out // TILE_ROWS))


@njit(fastmath={"contract", "reassoc"})
def _row_dots(g0, g1, xrow, off, step, width, kw, acc0, acc1):
    """acc0[s] += sum_q g0[q] * xrow[off + s*step + q] (and acc1 with g1), for q < width.

    ``reassoc`` lets LLVM split each dot product over vector lanes (the
    summation order changes, within float32 tolerance); indices stay
    provably non-negative as in _row_taps_unit.
    """
    zero = g0.dtype.type(0)
    xs = xrow[off:]
    if kw == 3 and step == 1:
        t00 = t01 = t02 = t10 = t11 = t12 = zero
        for q in range(width):
            v0, v1, v2 = xs[q], xs[q + 1], xs[q + 2]
            a, b = g0[q], g1[q]
            t00 += a * v0
            t01 += a * v1
            t02 += a * v2
            t10 += b * v0
            t11 += b * v1
            t12 += b * v2
        acc0[0] += t00
        acc0[1] += t01
        acc0[2] += t02
        acc1[0] += t10
        acc1[1] += t11
        acc1[2] += t12
    elif kw == 5 and step == 1:
        t00 = t01 = t02 = t03 = t04 = t10 = t11 = t12 = t13 = t14 = zero
        for q in range(width):
            v0, v1, v2, v3, v4 = xs[q], xs[q + 1], xs[q + 2], xs[q + 3], xs[q + 4]
            a, b = g0[q], g1[q]
            t00 += a * v0
            t01 += a * v1
            t02 += a * v2
            t03 += a * v3
            t04 += a * v4
            t10 += b * v0
            t11 += b * v1
            t12 += b * v2
            t13 += b * v3
            t14 += b * v4
        acc0[0] += t00
        acc0[1] += t01
        acc0[2] += t02
        acc0[3] += t03
        acc0[4] += t04
        acc1[0] += t10
        acc1[1] += t11
        acc1[2] += t12
        acc1[3] += t13
        acc1[4] += t14
    else:
        for s in range(kw):
            xt = xrow[off + s * step:]
            t0 = t1 = zero
            for q in range(width):
                v = xt[q]
                t0 += g0[q] * v
                t1 += g1[q] * v
            acc0[s] += t0
            acc1[s] += t1


@njit(parallel=True)
def _direct_grad_weight(grad_out, x, k_out, kh, kw, pt, pl, dh, dw, groups, hq, wq, acc):
    """Stride-1 grad_weight for few input channels; acc (workers, K, Cg, R, S) holds private sums."""
    n, channels = x.shape[0], x.shape[1]
    workers = acc.shape[0]
    c_group = channels // groups
    k_group = k_out // groups
    oh, ow = grad_out.shape[2], grad_out.shape[3]
    plane = hq * wq
    width = (oh - 1) * wq + ow
    pairs = (k_group + 1) // 2
    for w in prange(workers):
        worker = np.int64(w)
        first, last = worker * n // workers, (worker + 1) * n // workers
        xp = np.empty((channels, 1, plane), x.dtype)
        gext = np.empty((k_out, plane), x.dtype)
        spare = np.zeros(kw, x.dtype)  # the unused second output of an odd channel's self-pair
        for image in range(first, last):
            _split_phases(x, image, image + 1, pt, pl, 1, 1, hq, wq, xp)
            _gather_grad(grad_out, image, image + 1, hq, wq, 0, gext)
            for pair in range(groups * pairs):
                g = pair // pairs
                k = g * k_group + 2 * (pair % pairs)
                k1 = min(k + 1, (g + 1) * k_group - 1)
                for c in range(c_group):
                    xrow = xp[g * c_group + c, 0]
                    for r in range(kh):
                        _row_dots(gext[k], gext[k1], xrow, r * dh * wq, dw, width, kw,
                                  acc[worker, k, c, r], acc[worker, k1, c, r] if k1 != k else spare)


# ---------------------------------------------------------------------------
# GEMM drivers. One tile of images at a time; ``*_serial`` runs every tile on
# the calling thread with BLAS's own threads, ``*_parallel`` hands whole tiles
# to prange workers (each with private buffers and single-threaded BLAS).


@njit
def _forward_tile(x, weight, wtap, bias, has_bias, sh, sw, pt, pl, dh, dw, groups, hq, wq, lowered,
                  n0, n1, xp, ext, col, out):
    k_out, c_group, kh, kw = weight.shape
    k_group = k_out // groups
    plane = hq * wq
    rows = c_group * kh * kw
    ld_x = xp.shape[1] * plane
    ld_ext = ext.shape[1]
    tile = xp.shape[1] // (sh * sw)
    wflat = wtap.reshape(wtap.size)
    xflat = xp.reshape(xp.size)
    eflat = ext.reshape(ext.size)
    # the last valid column + 1: images before the last one are whole planes
    width = (n1 - n0 - 1) * plane + (out.shape[2] - 1) * wq + out.shape[3]
    _split_phases(x, n0, n1, pt, pl, sh, sw, hq, wq, xp)
    for g in range(groups):
        if lowered:
            _lower(xp, g * c_group, c_group, kh, kw, sh, sw, dh, dw, hq, wq, width, col)
            _gemm(_N, _N, k_group, width, rows, wflat[g * k_group * rows:], rows,
                  col.reshape(col.size), ld_ext, 0.0, eflat, ld_ext)
        else:
            for r in range(kh):
                for s in range(kw):
                    block, off = _tap(r, s, sh, sw, dh, dw, wq, tile, hq)
                    a_at = ((r * kw + s) * k_out + g * k_group) * c_group
                    b_at = g * c_group * ld_x + block * plane + off
                    _gemm(_N, _N, k_group, width, c_group, wflat[a_at:], c_group,
                          xflat[b_at:], ld_x, 0.0 if (r == 0 and s == 0) else 1.0, eflat, ld_ext)
        _scatter_out(ext, n0, n1, hq, wq, g * k_group, bias, has_bias, out)


@njit
def _forward_buffers(x, weight, hq, wq, tile, groups, sh, sw, lowered):
    k_out, c_group, kh, kw = weight.shape
    plane = hq * wq
    xp = np.empty((x.shape[1], sh * sw * tile, plane), x.dtype)
    ext = np.empty((k_out // groups, tile * plane), x.dtype)
    col = np.empty((c_group * kh * kw if lowered else 0, tile * plane), x.dtype)
    return xp, ext, col


@njit
def _forward_serial(x, weight, wtap, bias, has_bias, sh, sw, pt, pl, dh, dw, groups, hq, wq, tile, lowered, out):
    xp, ext, col = _forward_buffers(x, weight, hq, wq, tile, groups, sh, sw, lowered)
    for n0 in range(0, x.shape[0], tile):
        _forward_tile(x, weight, wtap, bias, has_bias, sh, sw, pt, pl, dh, dw, groups, hq, wq, lowered,
                      n0, min(x.shape[0], n0 + tile), xp, ext, col, out)


@njit(parallel=True)
def _forward_parallel(x, weight, wtap, bias, has_bias, sh, sw, pt, pl, dh, dw, groups, hq, wq, tile, lowered,
                      workers, out):
    n = x.shape[0]
    for w in prange(workers):
        worker = np.int64(w)  # prange indices may be unsigned; keep the arithmetic signed
        # an even share of images per worker, cut into tiles
        first, last = worker * n // workers, (worker + 1) * n // workers
        xp, ext, col = _forward_buffers(x, weight, hq, wq, tile, groups, sh, sw, lowered)
        for n0 in range(first, last, tile):
            _forward_tile(x, weight, wtap, bias, has_bias, sh, sw, pt, pl, dh, dw, groups, hq, wq, lowered,
                          n0, min(last, n0 + tile), xp, ext, col, out)


@njit(parallel=True)
def _forward_columns(x, weight, wtap, bias, has_bias, sh, sw, pt, pl, dh, dw, groups, hq, wq, tile, workers, out):
    """Shifted GEMMs for batches smaller than the thread count (conv e, N=1): the workers split the columns."""
    n = x.shape[0]
    k_out, c_group, kh, kw = weight.shape
    k_group = k_out // groups
    oh, ow = out.shape[2], out.shape[3]
    plane = hq * wq
    xp, ext, _ = _forward_buffers(x, weight, hq, wq, tile, groups, sh, sw, False)
    ld_x = xp.shape[1] * plane
    ld_ext = ext.shape[1]
    wflat = wtap.reshape(wtap.size)
    xflat = xp.reshape(xp.size)
    eflat = ext.reshape(ext.size)
    zero = x.dtype.type(0)
    for n0 in range(0, n, tile):
        n1 = min(n, n0 + tile)
        width = (n1 - n0 - 1) * plane + (oh - 1) * wq + ow
        _split_phases(x, n0, n1, pt, pl, sh, sw, hq, wq, xp)
        # column chunks of whole cache lines
        chunk = ((width + workers - 1) // workers + 15) // 16 * 16
        for w in prange(workers):
            q0 = min(width, np.int64(w) * chunk)
            q1 = min(width, q0 + chunk)
            if q1 <= q0:
                continue
            for g in range(groups):
                for r in range(kh):
                    for s in range(kw):
                        block, off = _tap(r, s, sh, sw, dh, dw, wq, tile, hq)
                        a_at = ((r * kw + s) * k_out + g * k_group) * c_group
                        b_at = g * c_group * ld_x + block * plane + off + q0
                        _gemm(_N, _N, k_group, q1 - q0, c_group, wflat[a_at:], c_group,
                              xflat[b_at:], ld_x, 0.0 if (r == 0 and s == 0) else 1.0, eflat[q0:], ld_ext)
                # scatter the output rows (segments) that fall in [q0, q1)
                for k in range(k_group):
                    shift = bias[g * k_group + k] if has_bias else zero
                    for image in range(n1 - n0):
                        for i in range(oh):
                            start = image * plane + i * wq
                            j0, j1 = max(0, q0 - start), min(ow, q1 - start)
                            for j in range(j0, j1):
                                out[n0 + image, g * k_group + k, i, j] = ext[k, start + j] + shift


@njit
def _backward_tile(grad_out, x, weight, wtap, sh, sw, pt, pl, dh, dw, groups, hq, wq, lowered,
                   need_input, need_weight, n0, n1, xp, dxp, gext, col, grad_x, grad_wtap, grad_w2d):
    k_out, c_group, kh, kw = weight.shape
    k_group = k_out // groups
    oh, ow = grad_out.shape[2], grad_out.shape[3]
    plane = hq * wq
    rows = c_group * kh * kw
    tile = gext.shape[1] // plane
    ld_x = sh * sw * tile * plane
    ld_ext = gext.shape[1]
    wflat = wtap.reshape(wtap.size)
    gwflat = grad_wtap.reshape(grad_wtap.size)
    gw2flat = grad_w2d.reshape(grad_w2d.size)
    xflat = xp.reshape(xp.size)
    dxflat = dxp.reshape(dxp.size)
    gflat = gext.reshape(gext.size)
    cflat = col.reshape(col.size)
    width = (n1 - n0 - 1) * plane + (oh - 1) * wq + ow
    if need_weight:
        _split_phases(x, n0, n1, pt, pl, sh, sw, hq, wq, xp)
    if need_input:
        dxp[:] = 0
    for g in range(groups):
        _gather_grad(grad_out, n0, n1, hq, wq, g * k_group, gext)
        if lowered:
            if need_weight:
                _lower(xp, g * c_group, c_group, kh, kw, sh, sw, dh, dw, hq, wq, width, col)
                # grad_w[g] (k_group, rows) += gext (k_group, width) @ col.T
                _gemm(_N, _T, k_group, rows, width, gflat, ld_ext, cflat, ld_ext,
                      1.0, gw2flat[g * k_group * rows:], rows)
            if need_input:
                # dcol (rows, width) = w[g].T @ gext
                _gemm(_T, _N, rows, width, k_group, wflat[g * k_group * rows:], rows,
                      gflat, ld_ext, 0.0, cflat, ld_ext)
                _unlower_add(col, g * c_group, c_group, kh, kw, sh, sw, dh, dw, hq, wq, width, dxp)
        else:
            for r in range(kh):
                for s in range(kw):
                    block, off = _tap(r, s, sh, sw, dh, dw, wq, tile, hq)
                    a_at = ((r * kw + s) * k_out + g * k_group) * c_group
                    b_at = g * c_group * ld_x + block * plane + off
                    if need_weight:
                        # grad_w_rs (k_group, c_group) += gext @ xp_slice.T
                        _gemm(_N, _T, k_group, c_group, width, gflat, ld_ext, xflat[b_at:], ld_x,
                              1.0, gwflat[a_at:], c_group)
                    if need_input:
                        # dxp_slice (c_group, width) += w_rs.T @ gext
                        _gemm(_T, _N, c_group, width, k_group, wflat[a_at:], c_group, gflat, ld_ext,
                              1.0, dxflat[b_at:], ld_x)
    if need_input:
        _merge_phases(dxp, n0, n1, pt, pl, sh, sw, wq, grad_x)


@njit
def _backward_buffers(x, weight, hq, wq, tile, groups, sh, sw, lowered, need_input, need_weight):
    k_out, c_group, kh, kw = weight.shape
    plane = hq * wq
    channels = x.shape[1]
    xp = np.empty((channels if need_weight else 0, sh * sw * tile, plane), x.dtype)
    dxp = np.empty((channels if need_input else 0, sh * sw * tile, plane), x.dtype)
    gext = np.empty((k_out // groups, tile * plane), x.dtype)
    col = np.empty((c_group * kh * kw if lowered else 0, tile * plane), x.dtype)
    return xp, dxp, gext, col


@njit
def _backward_serial(grad_out, x, weight, wtap, sh, sw, pt, pl, dh, dw, groups, hq, wq, tile, lowered,
                     need_input, need_weight, grad_x, grad_wtap, grad_w2d):
    xp, dxp, gext, col = _backward_buffers(x, weight, hq, wq, tile, groups, sh, sw, lowered,
                                           need_input, need_weight)
    for n0 in range(0, x.shape[0], tile):
        _backward_tile(grad_out, x, weight, wtap, sh, sw, pt, pl, dh, dw, groups, hq, wq, lowered,
                       need_input, need_weight, n0, min(x.shape[0], n0 + tile), xp, dxp, gext, col,
                       grad_x, grad_wtap, grad_w2d)


@njit(parallel=True)
def _backward_parallel(grad_out, x, weight, wtap, sh, sw, pt, pl, dh, dw, groups, hq, wq, tile, lowered,
                       need_input, need_weight, workers, grad_x, grad_wtap, grad_w2d):
    """grad_wtap / grad_w2d carry a leading worker axis: private accumulators, summed by the caller."""
    n = x.shape[0]
    for w in prange(workers):
        worker = np.int64(w)  # prange indices may be unsigned; keep the arithmetic signed
        first, last = worker * n // workers, (worker + 1) * n // workers
        xp, dxp, gext, col = _backward_buffers(x, weight, hq, wq, tile, groups, sh, sw, lowered,
                                               need_input, need_weight)
        gw_tap = grad_wtap[min(worker, grad_wtap.shape[0] - 1)]
        gw_2d = grad_w2d[min(worker, grad_w2d.shape[0] - 1)]
        for n0 in range(first, last, tile):
            _backward_tile(grad_out, x, weight, wtap, sh, sw, pt, pl, dh, dw, groups, hq, wq, lowered,
                           need_input, need_weight, n0, min(last, n0 + tile), xp, dxp, gext, col,
                           grad_x, gw_tap, gw_2d)


@njit(fastmath={"reassoc"})
def _bias_grad(grad_out, grad_b):
    """grad_b[k] = sum over (n, i, j) of grad_out; ``reassoc`` vectorizes the sums (12x faster, measured)."""
    n, k_out, oh, ow = grad_out.shape
    flat = grad_out.reshape(n, k_out, oh * ow)
    for k in range(k_out):
        total = grad_out.dtype.type(0)
        for i in range(n):
            row = flat[i, k]
            for q in range(oh * ow):
                total += row[q]
        grad_b[k] = total


# ---------------------------------------------------------------------------
# Non-finite data in the backward. The fast paths multiply zeros by the data
# (grad_output's garbage columns and zero padding), and 0 * NaN or 0 * Inf would
# put NaN where the reference (and torch) have none. So conv2d_backward zeroes
# the non-finite entries, runs the fast path, and these kernels add back exactly
# the reference's products that involve a non-finite factor (a finite sum plus
# non-finite terms is NaN or +-Inf whatever the order). Their cost is the number
# of non-finite entries times one window; they only run when there are some.


@njit(fastmath={"reassoc"})
def _all_finite(a):
    """No NaN or Inf in a: x * 0 is 0 for finite x and NaN otherwise (0.15 ms on conv c's 8 MiB input)."""
    flat = a.reshape(a.size)
    zero = a.dtype.type(0)
    total = zero
    for i in range(flat.size):
        total += flat[i] * zero
    return total == zero


@njit
def _restore_grad_input(grad_out, weight, bad_weight, bad_grad, sh, sw, pt, pl, dh, dw, groups, grad_x):
    """grad_x += the products grad_out * weight with a non-finite factor (listed as index rows)."""
    n, k_out, oh, ow = grad_out.shape
    c_group, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
    k_group = k_out // groups
    height, width = grad_x.shape[2], grad_x.shape[3]
    for e in range(bad_weight.shape[0]):
        k, c, r, s = bad_weight[e, 0], bad_weight[e, 1], bad_weight[e, 2], bad_weight[e, 3]
        channel = (k // k_group) * c_group + c
        value = weight[k, c, r, s]
        for image in range(n):
            for i in range(oh):
                h = i * sh + r * dh - pt
                if h < 0 or h >= height:
                    continue
                for j in range(ow):
                    w = j * sw + s * dw - pl
                    # pairs with a non-finite grad_output are the second loop's
                    if 0 <= w < width and np.isfinite(grad_out[image, k, i, j]):
                        grad_x[image, channel, h, w] += grad_out[image, k, i, j] * value
    for e in range(bad_grad.shape[0]):
        image, k, i, j = bad_grad[e, 0], bad_grad[e, 1], bad_grad[e, 2], bad_grad[e, 3]
        value = grad_out[image, k, i, j]
        channel0 = (k // k_group) * c_group
        for c in range(c_group):
            for r in range(kh):
                h = i * sh + r * dh - pt
                if h < 0 or h >= height:
                    continue
                for s in range(kw):
                    w = j * sw + s * dw - pl
                    if 0 <= w < width:
                        grad_x[image, channel0 + c, h, w] += value * weight[k, c, r, s]


@njit
def _restore_grad_weight(grad_out, x, bad_x, bad_grad, sh, sw, pt, pl, dh, dw, groups, grad_w):
    """grad_w += the products grad_out * x_pad with a non-finite factor (listed as index rows)."""
    k_out, oh, ow = grad_out.shape[1], grad_out.shape[2], grad_out.shape[3]
    c_group, kh, kw = grad_w.shape[1], grad_w.shape[2], grad_w.shape[3]
    k_group = k_out // groups
    height, width = x.shape[2], x.shape[3]
    zero = x.dtype.type(0)
    for e in range(bad_x.shape[0]):
        image, channel, h, w = bad_x[e, 0], bad_x[e, 1], bad_x[e, 2], bad_x[e, 3]
        value = x[image, channel, h, w]
        g, c = channel // c_group, channel % c_group
        for r in range(kh):
            hi = h + pt - r * dh
            if hi < 0 or hi % sh != 0 or hi // sh >= oh:
                continue
            i = hi // sh
            for s in range(kw):
                wj = w + pl - s * dw
                if wj < 0 or wj % sw != 0 or wj // sw >= ow:
                    continue
                j = wj // sw
                for k in range(g * k_group, (g + 1) * k_group):
                    # pairs with a non-finite grad_output are the second loop's
                    if np.isfinite(grad_out[image, k, i, j]):
                        grad_w[k, c, r, s] += grad_out[image, k, i, j] * value
    for e in range(bad_grad.shape[0]):
        image, k, i, j = bad_grad[e, 0], bad_grad[e, 1], bad_grad[e, 2], bad_grad[e, 3]
        value = grad_out[image, k, i, j]
        channel0 = (k // k_group) * c_group
        for c in range(c_group):
            for r in range(kh):
                h = i * sh + r * dh - pt
                for s in range(kw):
                    w = j * sw + s * dw - pl
                    # the zero padding counts: NaN * 0 is NaN in the reference too
                    inside = 0 <= h < height and 0 <= w < width
                    grad_w[k, c, r, s] += value * (x[image, channel0 + c, h, w] if inside else zero)


# ---------------------------------------------------------------------------
# Python-level planning: geometry, algorithm choice, batch tile, BLAS threads.


def _phase_geometry(x_shape, stride, padding):
    (sh, sw), (pt, pb, pl, pr) = stride, padding
    hp, wp = x_shape[2] + pt + pb, x_shape[3] + pl + pr
    return -(-hp // sh), -(-wp // sw)


def _use_lowered(c_group):
    return c_group < config.CONV_SHIFTED_MIN_CHANNELS


def _workers(n):
    """prange workers for the GEMM drivers: 1 (serial driver, threaded BLAS) unless every worker gets images."""
    threads = numba.get_num_threads()
    blas = _blas_threads()  # also makes sure SciPy's BLAS is loaded
    if threads < 2 or n < threads * config.CONV_PARALLEL_MIN_IMAGES_PER_THREAD or not blas.available:
        return 1
    return threads


def _plan(x, weight, stride, padding, buffers_per_column, workers=1):
    """(hq, wq, tile): phase-plane size and images per tile, all workers' buffers under the workspace cap."""
    n = -(-x.shape[0] // workers)
    hq, wq = _phase_geometry(x.shape, stride, padding)
    per_image = buffers_per_column * hq * wq * x.itemsize
    by_memory = config.CONV_WORKSPACE_BYTES // workers // max(per_image, 1)
    by_cache = max(1, config.CONV_TILE_COLUMNS // (hq * wq))
    tile = int(max(1, min(n, by_memory, by_cache)))
    # even tiles: 16 images in tiles of at most 7 run as 6+5+5, not 7+7+2
    return hq, wq, -(-n // -(-n // tile))


def _taps(weight):
    """weight (K, Cg, R, S) -> (R*S, K, Cg): the A operand of each tap's GEMM, contiguous."""
    return np.ascontiguousarray(weight.transpose(2, 3, 0, 1))


def _tiled_geometry(x_shape, stride, padding):
    """(hq, wq) of the tiled kernel's planes: the padded rows whole, the columns split into stride phases."""
    return _phase_geometry(x_shape, (1, stride[1]), padding)


def _use_tiled(x, weight, stride, padding, dilation, groups, out_size, chunks):
    """Dilation 1, one group, >= TILE_ROWS output channels, stride 1 or output rows at least a wide tile
    long (the strided tiles run along the rows only), and one work item's buffers (its padded planes
    and output block, plus the planes shared by the chunks) for every worker under the cap (a band of
    rows pads no more than the whole image)."""
    k_out, c_group = weight.shape[0], weight.shape[1]
    wide = conv_width_multiple(x)
    by_rows = out_size[1] >= wide
    if tuple(dilation) != (1, 1) or groups != 1 or k_out < TILE_ROWS or (tuple(stride) != (1, 1) and not by_rows):
        return False
    hq, wq = _tiled_geometry(x.shape, stride, padding)
    if by_rows:  # tiles along the output rows: no output block
        plane, width = hq * wq * stride[1], 0
    else:
        plane, width = hq * wq + wide, out_size[0] * wq + wide
    per_item = c_group * plane + -(-k_out // chunks) * width
    shared = x.shape[0] * c_group * plane if chunks > 1 else 0
    need = (per_item * numba.get_num_threads() + shared) * x.itemsize
    return c_group <= config.CONV_TILED_MAX_CHANNELS and need <= config.CONV_WORKSPACE_BYTES


def _use_direct(x, weight, out_size):
    """Few input channels per group, and enough images to keep every thread busy."""
    n = x.shape[0]
    c_group = weight.shape[1]
    work = n * weight.shape[0] * c_group * weight.shape[2] * weight.shape[3] * out_size[0] * out_size[1]
    return (c_group <= config.CONV_DIRECT_MAX_CHANNELS and n >= config.CONV_DIRECT_MIN_IMAGES
            and work <= config.CONV_DIRECT_MAX_WORK)


def _use_direct_backward(x, weight, stride, padding, dilation, groups):
    """grad_input by the direct kernel: stride 1, padding within the kernel extent, few channels."""
    k_out, c_group, kh, kw = weight.shape
    (pt, pb, pl, pr), (dh, dw) = padding, dilation
    fits = max(pt, pb) <= (kh - 1) * dh and max(pl, pr) <= (kw - 1) * dw
    return (tuple(stride) == (1, 1) and fits and c_group <= config.CONV_DIRECT_MAX_CHANNELS
            and x.shape[0] >= config.CONV_DIRECT_MIN_IMAGES
            and k_out // groups <= config.CONV_DIRECT_BACKWARD_MAX_OUT_CHANNELS)


def _direct_weight_gradient(grad_out, x, weight, padding, dilation, groups):
    k_out, _, kh, kw = weight.shape
    (pt, pb, pl, pr), (dh, dw) = padding, dilation
    hq, wq = x.shape[2] + pt + pb, x.shape[3] + pl + pr
    workers = max(1, min(numba.get_num_threads(), x.shape[0]))
    acc = np.zeros((workers,) + weight.shape, x.dtype)
    _direct_grad_weight(grad_out, x, k_out, kh, kw, pt, pl, dh, dw, groups, hq, wq, acc)
    return acc.sum(axis=0) if workers > 1 else acc[0]


def _transposed_direct(grad_out, x_shape, weight, padding, dilation, groups):
    k_out, c_group, kh, kw = weight.shape
    k_group = k_out // groups
    (pt, pb, pl, pr), (dh, dw) = padding, dilation
    # w_t[g*Cg + c, k, r, s] = w[g*Kg + k, c, R-1-r, S-1-s]
    w_t = np.ascontiguousarray(
        weight[:, :, ::-1, ::-1].reshape(groups, k_group, c_group, kh, kw).transpose(0, 2, 1, 3, 4)
    ).reshape(groups * c_group, k_group, kh, kw)
    top, left = (kh - 1) * dh - pt, (kw - 1) * dw - pl
    bottom, right = (kh - 1) * dh - pb, (kw - 1) * dw - pr
    hq, wq = grad_out.shape[2] + top + bottom, grad_out.shape[3] + left + right
    grad_x = np.empty(x_shape, grad_out.dtype)
    _direct_forward(grad_out, w_t, np.zeros(0, grad_out.dtype), False, 1, 1, top, left, dh, dw, groups,
                    hq, wq, grad_x)
    return grad_x


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, out_size):
    k_out, c_group, kh, kw = weight.shape
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, padding, dilation
    has_bias = bias is not None
    bias_arr = bias if has_bias else np.zeros(0, dtype=x.dtype)
    out = np.empty((x.shape[0], k_out) + tuple(out_size), dtype=x.dtype)
    bands, chunks = _tile_split(x.shape[0], k_out, out_size, conv_width_multiple(x))
    if _use_tiled(x, weight, stride, padding, dilation, groups, out_size, chunks):
        hq, wq = _tiled_geometry(x.shape, stride, padding)
        _tiled_forward(np.ascontiguousarray(x), np.ascontiguousarray(weight),
                       bias if has_bias else np.zeros(k_out, x.dtype), pt, pl, sh, sw, hq, wq, bands, chunks,
                       _rows_per_call(weight, out_size), out)
        return out
    if _use_direct(x, weight, out_size):
        hq, wq = _phase_geometry(x.shape, stride, padding)
        _direct_forward(x, weight, bias_arr, has_bias, sh, sw, pt, pl, dh, dw, groups, hq, wq, out)
        return out
    lowered = _use_lowered(c_group)
    columns = x.shape[1] * sh * sw + k_out // groups + (c_group * kh * kw if lowered else 0)
    workers = _workers(x.shape[0])
    hq, wq, tile = _plan(x, weight, stride, padding, columns, workers)
    wtap = weight if lowered else _taps(weight)
    args = (x, weight, wtap, bias_arr, has_bias, sh, sw, pt, pl, dh, dw, groups, hq, wq, tile, lowered)
    if workers > 1:
        _run_parallel(_forward_parallel, *args, workers, out)
    elif not lowered and numba.get_num_threads() > 1 and _blas_threads().available:
        _run_parallel(_forward_columns, *args[:-1], numba.get_num_threads(), out)
    else:
        _forward_serial(*args, out)
    return out


def conv2d_backward(grad_out, x, weight, stride, padding, dilation, groups,
                    need_input=True, need_weight=True, need_bias=True):
    k_out = weight.shape[0]
    grad_b = None
    if need_bias:
        grad_b = np.empty(k_out, dtype=x.dtype)
        _bias_grad(grad_out, grad_b)
    if not (need_input or need_weight):
        return None, None, grad_b
    # Every algorithm sums zeros (garbage columns, padded grad_output) times the data, which is
    # only exact while the data is finite. So non-finite weights (for grad_input) or inputs (for
    # grad_weight) are zeroed for the fast path and their products added back exactly after.
    bad_weight = need_input and not _all_finite(weight)
    bad_x = need_weight and not _all_finite(x)
    if not (bad_weight or bad_x):
        return (*_backward(grad_out, x, weight, stride, padding, dilation, groups, need_input, need_weight),
                grad_b)
    bad_grad = not _all_finite(grad_out)
    grad_x, grad_w = _backward(_finite_part(grad_out) if bad_grad else grad_out, _finite_part(x) if bad_x else x,
                               _finite_part(weight) if bad_weight else weight,
                               stride, padding, dilation, groups, need_input, need_weight)
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, padding, dilation
    bad_grad_at = _nonfinite_at(grad_out) if bad_grad else np.zeros((0, 4), np.int64)
    if need_input:
        _restore_grad_input(grad_out, weight, _nonfinite_at(weight) if bad_weight else np.zeros((0, 4), np.int64),
                            bad_grad_at, sh, sw, pt, pl, dh, dw, groups, grad_x)
    if need_weight:
        _restore_grad_weight(grad_out, x, _nonfinite_at(x) if bad_x else np.zeros((0, 4), np.int64),
                             bad_grad_at, sh, sw, pt, pl, dh, dw, groups, grad_w)
    return grad_x, grad_w, grad_b


def _finite_part(a):
    return np.where(np.isfinite(a), a, a.dtype.type(0))


def _nonfinite_at(a):
    return np.argwhere(~np.isfinite(a)).astype(np.int64)


def _backward(grad_out, x, weight, stride, padding, dilation, groups, need_input, need_weight):
    """(grad_x, grad_w), exact while x and weight are finite (see conv2d_backward)."""
    k_out, c_group, kh, kw = weight.shape
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, padding, dilation
    if need_input and _use_direct_backward(x, weight, stride, padding, dilation, groups):
        # grad_input of a stride-1 conv is a full correlation of grad_output with the
        # flipped, transposed kernel: the direct kernel computes it like a forward conv
        grad_x = _transposed_direct(grad_out, x.shape, weight, padding, dilation, groups)
        grad_w = _direct_weight_gradient(grad_out, x, weight, padding, dilation, groups) if need_weight else None
        return grad_x, grad_w
    lowered = _use_lowered(c_group)
    columns = (x.shape[1] * sh * sw * (int(need_input) + int(need_weight)) + k_out // groups
               + (c_group * kh * kw if lowered else 0))
    workers = _workers(x.shape[0])
    hq, wq, tile = _plan(x, weight, stride, padding, columns, workers)
    grad_x = np.empty_like(x) if need_input else np.empty((0, 0, 0, 0), x.dtype)
    # weight-gradient accumulators, one per worker (summed below), in the layout of each algorithm
    rows = c_group * kh * kw
    acc = workers if need_weight else 1
    grad_w2d = np.zeros((acc, k_out, rows) if (lowered and need_weight) else (1, 0, 0), x.dtype)
    grad_wtap = np.zeros((acc, kh, kw, k_out, c_group) if (need_weight and not lowered) else (1, 0, 0, 0, 0),
                         x.dtype)
    wtap = weight if lowered else _taps(weight)
    args = (grad_out, x, weight, wtap, sh, sw, pt, pl, dh, dw, groups, hq, wq, tile, lowered,
            need_input, need_weight)
    if workers > 1:
        _run_parallel(_backward_parallel, *args, workers, grad_x, grad_wtap, grad_w2d)
    else:
        _backward_serial(*args, grad_x, grad_wtap[0], grad_w2d[0])
    grad_w = None
    if need_weight:
        grad_w = (grad_w2d.sum(axis=0).reshape(weight.shape) if lowered
                  else np.ascontiguousarray(grad_wtap.sum(axis=0).transpose(2, 3, 0, 1)))
    return (grad_x if need_input else None), grad_w
