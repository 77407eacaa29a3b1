"""2-D convolution (cross-correlation) on the CUDA device.

Same functions and signatures as ``kernels/reference/conv.py``:

out[n, k, i, j] = bias[k] + sum_{c, r, s} x_pad[n, g*Cg + c, i*sh + r*dh, j*sw + s*dw] * w[k, c, r, s]

Forward picks one of two kernels (threshold in ``kernels/config.py``):

* direct: one block per (image, output channel) and span of output pixels;
  the channel's whole ``(Cg, R, S)`` filter is staged in shared memory once
  per block, each thread sums the taps of one output pixel. Good when the
  filter is small (few input channels, conv a/b of the benchmarks).
* implicit GEMM: per group, ``W (K, Cg*R*S) @ X̂ (Cg*R*S, N*oh*ow)`` with the
  im2col matrix X̂ never stored: its tiles are gathered from the input into
  shared memory as the GEMM reduction walks over (c, r, s), through a table
  of each tap's input offset (no division per element). Blocks of
  ``CUDA_CONV_BLOCK`` x ``CUDA_CONV_BLOCK`` outputs, each of the 16 x 16
  threads accumulating a register tile of (BLOCK/16)^2 of them.

Backward: the input gradient gathers, per input pixel, the output positions
whose windows cover it (no atomics); each weight gradient entry is one
block's reduction over (n, i, j); the bias gradient one block's per channel.
Padding is implicit (bounds checks), never materialised.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from .. import config
from ._util import blocks_for, contiguous_copy, empty, per_dtype, to_device


def _tile_shape():
    """(CUDA_CONV_BLOCK, CUDA_CONV_DEPTH) of the implicit GEMM, checked to tile 16 x 16 threads."""
    block, depth = config.CUDA_CONV_BLOCK, config.CUDA_CONV_DEPTH
    if not (block % 16 == 0 and 256 % block == 0 and 256 % depth == 0 and block % (256 // depth) == 0
            and depth % (256 // block) == 0):
        raise ValueError(f"kernels.config: CUDA_CONV_BLOCK={block} / CUDA_CONV_DEPTH={depth} don't tile 16 x 16 "
                         "threads (BLOCK a multiple of 16 dividing 256, DEPTH dividing 256, and each staging "
                         "pass a whole number of rows)")
    return block, depth


@per_dtype
def _kernels(nb_type):
    max_taps = config.CUDA_CONV_DIRECT_MAX_TAPS
    reduce_threads = config.CUDA_REDUCE_THREADS
    block, depth = _tile_shape()
    per = block // 16  # register tile edge of each of the 16 x 16 threads
    w_rows, x_rows = 256 // depth, 256 // block  # W-tile rows / X^-tile taps staged per pass of the 256 threads
    w_cols = block + 1  # the W tile's row length: + 1 spreads its column stores over more banks

    @cuda.jit
    def direct(x, w, bias, has_bias, sh, sw, pt, pl, dh, dw, groups, out):
        n_k = cuda.blockIdx.y
        n, k = n_k // out.shape[1], n_k % out.shape[1]
        c_group, kh, kw = w.shape[1], w.shape[2], w.shape[3]
        taps = c_group * kh * kw
        filt = cuda.shared.array(max_taps, nb_type)
        for t in range(cuda.threadIdx.x, taps, cuda.blockDim.x):
            filt[t] = w[k, t // (kh * kw), (t // kw) % kh, t % kw]
        cuda.syncthreads()
        out_w = out.shape[3]
        p = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if p >= out.shape[2] * out_w:
            return
        i, j = p // out_w, p % out_w
        c0 = (k // (out.shape[1] // groups)) * c_group
        height, width = x.shape[2], x.shape[3]
        acc = nb_type(0)
        for c in range(c_group):
            for r in range(kh):
                row = i * sh - pt + r * dh
                if 0 <= row < height:
                    for s in range(kw):
                        col = j * sw - pl + s * dw
                        if 0 <= col < width:
                            acc += x[n, c0 + c, row, col] * filt[(c * kh + r) * kw + s]
        if has_bias:
            acc += bias[k]
        out[n, k, i, j] = acc

    @cuda.jit
    def implicit_gemm(x, x_flat, w, taps, bias, has_bias, sh, sw, pt, pl, groups, out):
        # One block: a (BLOCK output channels of group g) x (BLOCK columns (n, i, j)) tile of
        # W (K/groups rows of w, Cg*R*S) @ X^ (Cg*R*S, N*oh*ow), 16 x 16 threads with a PER x PER
        # register tile each (rows ty + 16*m, columns tx + 16*u). The reduction walks DEPTH taps at a
        # time; the W tile and the gathered im2col tile of X^ go through shared memory. taps[q] = (input
        # offset of tap q inside one group's (Cg, H, W) block, its row offset, its column offset), so the
        # gather divides nothing per element.
        g = cuda.blockIdx.z
        k_group = out.shape[1] // groups
        out_h, out_w = out.shape[2], out.shape[3]
        channels, height, width = x.shape[1], x.shape[2], x.shape[3]
        reduction = w.shape[1]
        columns = out.shape[0] * out_h * out_w
        w_tile = cuda.shared.array((depth, w_cols), nb_type)
        x_tile = cuda.shared.array((depth, block), nb_type)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * 16 + tx
        row0, col0 = cuda.blockIdx.y * block, cuda.blockIdx.x * block
        # what this thread stages: X^ column `lane` at taps tid // block + step*u; W row `w_row` + rows_per*u
        # at tap tid % depth (consecutive threads read consecutive taps of a weight row)
        lane = tid % block
        column = col0 + lane
        n = column // (out_h * out_w)
        i, j = (column // out_w) % out_h, column % out_w
        top, left = i * sh - pt, j * sw - pl
        base = ((n * channels + g * (channels // groups)) * height + top) * width + left
        w_row, w_tap = tid // depth, tid % depth
        acc = cuda.local.array((per, per), nb_type)
        for m in range(per):
            for u in range(per):
                acc[m, u] = 0
        for start in range(0, reduction, depth):
            for u in range(block // w_rows):
                k_local = row0 + w_row + w_rows * u
                q = start + w_tap
                value = nb_type(0)
                if k_local < k_group and q < reduction:
                    value = w[g * k_group + k_local, q]
                w_tile[w_tap, w_row + w_rows * u] = value
            for u in range(depth // x_rows):
                d = tid // block + x_rows * u
                q = start + d
                value = nb_type(0)
                if column < columns and q < reduction:
                    row, col = top + taps[q, 1], left + taps[q, 2]
                    if 0 <= row < height and 0 <= col < width:
                        value = x_flat[base + taps[q, 0]]
                x_tile[d, lane] = value
            cuda.syncthreads()
            for d in range(depth):
                for m in range(per):
                    a = w_tile[d, ty + 16 * m]
                    for u in range(per):
                        acc[m, u] += a * x_tile[d, tx + 16 * u]
            cuda.syncthreads()
        for m in range(per):
            k_local = row0 + ty + 16 * m
            if k_local < k_group:
                k = g * k_group + k_local
                for u in range(per):
                    column = col0 + tx + 16 * u
                    if column < columns:
                        value = acc[m, u]
                        if has_bias:
                            value += bias[k]
                        out[column // (out_h * out_w), k, (column // out_w) % out_h, column % out_w] = value

    @cuda.jit
    def backward_input(grad_out, w, sh, sw, pt, pl, dh, dw, groups, grad_x):
        index = cuda.grid(1)
        channels, height, width = grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]
        if index >= grad_x.shape[0] * channels * height * width:
            return
        col = index % width
        row = (index // width) % height
        ch = (index // (width * height)) % channels
        n = index // (width * height * channels)
        c_group, kh, kw = w.shape[1], w.shape[2], w.shape[3]
        k_group = w.shape[0] // groups
        g, c = ch // c_group, ch % c_group
        out_h, out_w = grad_out.shape[2], grad_out.shape[3]
        acc = nb_type(0)
        for r in range(kh):
            top = row + pt - r * dh  # = i * sh
            if top < 0 or top % sh != 0 or top // sh >= out_h:
                continue
            i = top // sh
            for s in range(kw):
                left = col + pl - s * dw
                if left < 0 or left % sw != 0 or left // sw >= out_w:
                    continue
                j = left // sw
                for kk in range(k_group):
                    k = g * k_group + kk
                    acc += grad_out[n, k, i, j] * w[k, c, r, s]
        grad_x[n, ch, row, col] = acc

    @cuda.jit(device=True)
    def block_sum(partial, value):
        t = cuda.threadIdx.x
        partial[t] = value
        cuda.syncthreads()
        step = reduce_threads // 2
        while step > 0:
            if t < step:
                partial[t] += partial[t + step]
            cuda.syncthreads()
            step //= 2
        return partial[0]

    @cuda.jit
    def backward_weight(grad_out, x, sh, sw, pt, pl, dh, dw, groups, grad_w):
        # one block per weight entry (k, c, r, s)
        entry = cuda.blockIdx.x
        c_group, kh, kw = grad_w.shape[1], grad_w.shape[2], grad_w.shape[3]
        s = entry % kw
        r = (entry // kw) % kh
        c = (entry // (kw * kh)) % c_group
        k = entry // (kw * kh * c_group)
        ch = (k // (grad_w.shape[0] // groups)) * c_group + c
        out_h, out_w = grad_out.shape[2], grad_out.shape[3]
        height, width = x.shape[2], x.shape[3]
        pixels = grad_out.shape[0] * out_h * out_w
        partial = cuda.shared.array(reduce_threads, nb_type)
        acc = nb_type(0)
        for p in range(cuda.threadIdx.x, pixels, reduce_threads):
            n = p // (out_h * out_w)
            i, j = (p // out_w) % out_h, p % out_w
            row, col = i * sh - pt + r * dh, j * sw - pl + s * dw
            if 0 <= row < height and 0 <= col < width:
                acc += grad_out[n, k, i, j] * x[n, ch, row, col]
        total = block_sum(partial, acc)
        if cuda.threadIdx.x == 0:
            grad_w[k, c, r, s] = total

    @cuda.jit
    def backward_bias(grad_out, grad_b):
        k = cuda.blockIdx.x
        out_h, out_w = grad_out.shape[2], grad_out.shape[3]
        pixels = grad_out.shape[0] * out_h * out_w
        partial = cuda.shared.array(reduce_threads, nb_type)
        acc = nb_type(0)
        for p in range(cuda.threadIdx.x, pixels, reduce_threads):
            n = p // (out_h * out_w)
            acc += grad_out[n, k, (p // out_w) % out_h, p % out_w]
        total = block_sum(partial, acc)
        if cuda.threadIdx.x == 0:
            grad_b[k] = total

    return (direct, implicit_gemm, backward_input, backward_weight, backward_bias)


@functools.lru_cache(maxsize=64)
def _tap_table(c_group, kh, kw, height, width, dh, dw):
    """Device (Cg*R*S, 3) int64: tap (c, r, s) -> (c*H*W + r*dh*W + s*dw, r*dh, s*dw) for the implicit GEMM."""
    c, r, s = np.meshgrid(np.arange(c_group), np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
    table = np.stack([(c * height + r) * width + s, r, s], axis=-1).reshape(-1, 3).astype(np.int64)
    return to_device(table)


def conv2d_algorithm(weight_shape) -> str:
    """``"direct"`` while one output channel's filter fits the shared-memory stage, else ``"implicit_gemm"``."""
    taps = weight_shape[1] * weight_shape[2] * weight_shape[3]
    return "direct" if taps <= config.CUDA_CONV_DIRECT_MAX_TAPS else "implicit_gemm"


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, out_size, *, algorithm=None):
    x, weight = to_device(x), to_device(weight)
    has_bias = bias is not None
    bias = to_device(bias) if has_bias else weight.reshape(weight.size)  # unread placeholder
    n, k_out = x.shape[0], weight.shape[0]
    out = empty((n, k_out) + tuple(out_size), x.dtype)
    geometry = (stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1], groups)
    direct, implicit_gemm = _kernels(x.dtype)[:2]
    algorithm = algorithm or conv2d_algorithm(weight.shape)
    if algorithm == "direct":
        threads = config.CUDA_CONV_DIRECT_THREADS
        grid = (blocks_for(out_size[0] * out_size[1], threads), n * k_out)
        direct[grid, threads](x, weight, bias, has_bias, *geometry, out)
    else:
        if not x.is_c_contiguous():
            x = contiguous_copy(x)
        if not weight.is_c_contiguous():
            weight = contiguous_copy(weight)
        block = config.CUDA_CONV_BLOCK
        grid = (blocks_for(n * out_size[0] * out_size[1], block), blocks_for(k_out // groups, block), groups)
        taps = _tap_table(*weight.shape[1:], x.shape[2], x.shape[3], dilation[0], dilation[1])
        implicit_gemm[grid, (16, 16)](x, x.reshape(x.size), weight.reshape(k_out, weight.size // k_out), taps, bias,
                                      has_bias, stride[0], stride[1], padding[0], padding[2], groups, out)
    return out


def conv2d_backward(grad_out, x, weight, stride, padding, dilation, groups,
                    need_input=True, need_weight=True, need_bias=True):
    grad_out, x, weight = to_device(grad_out), to_device(x), to_device(weight)
    geometry = (stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1], groups)
    _, _, backward_input, backward_weight, backward_bias = _kernels(x.dtype)
    grad_x = grad_w = grad_b = None
    if need_input:
        grad_x = empty(x.shape, x.dtype)
        threads = config.CUDA_THREADS_PER_BLOCK
        backward_input[blocks_for(grad_x.size, threads), threads](grad_out, weight, *geometry, grad_x)
    if need_weight:
        grad_w = empty(weight.shape, weight.dtype)
        backward_weight[grad_w.size, config.CUDA_REDUCE_THREADS](grad_out, x, *geometry, grad_w)
    if need_bias:
        grad_b = empty((weight.shape[0],), weight.dtype)
        backward_bias[weight.shape[0], config.CUDA_REDUCE_THREADS](grad_out, grad_b)
    return grad_x, grad_w, grad_b
