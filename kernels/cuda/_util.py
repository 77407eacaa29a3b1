"""Building blocks shared by the CUDA kernel modules: allocation, launch sizes, GEMM, reductions, copies.

Every kernel here works on numba device arrays of any layout (strided views
included); ``gemm`` is the one shared-memory tiled matrix product that
linear, recurrent and conv2d's weight gradient build on.
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda

from .. import config


def blocks_for(count: int, threads: int) -> int:
    return max(1, (count + threads - 1) // threads)


def to_device(array):
    """Device array as it is; a host array is copied (the functional layer documents this)."""
    if hasattr(array, "copy_to_host"):
        return array
    if hasattr(array, "__cuda_array_interface__"):
        return cuda.as_cuda_array(array)
    return cuda.to_device(np.ascontiguousarray(array))


def empty(shape, dtype):
    return cuda.device_array(tuple(int(s) for s in shape), dtype=np.dtype(dtype))


@cuda.jit
def _fill(out, value):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = value


def fill(array, value):
    """Set every element of a contiguous device array to ``value``."""
    flat = array.reshape(array.size)
    threads = config.CUDA_THREADS_PER_BLOCK
    _fill[blocks_for(flat.size, threads), threads](flat, array.dtype.type(value))
    return array


def zeros(shape, dtype):
    return fill(empty(shape, dtype), 0)


@cuda.jit
def _copy1(src, dst):
    i = cuda.grid(1)
    if i < dst.size:
        dst[i] = src[i]


@cuda.jit
def _copy2(src, dst):
    i = cuda.grid(1)
    if i < dst.size:
        cols = dst.shape[1]
        dst[i // cols, i % cols] = src[i // cols, i % cols]


@cuda.jit
def _copy3(src, dst):
    i = cuda.grid(1)
    if i < dst.size:
        b, c = dst.shape[1], dst.shape[2]
        p, q, r = i // (b * c), (i // c) % b, i % c
        dst[p, q, r] = src[p, q, r]


@cuda.jit
def _copy4(src, dst):
    i = cuda.grid(1)
    if i < dst.size:
        b, c, d = dst.shape[1], dst.shape[2], dst.shape[3]
        p, q, r, s = i // (b * c * d), (i // (c * d)) % b, (i // d) % c, i % d
        dst[p, q, r, s] = src[p, q, r, s]


_COPIES = {1: _copy1, 2: _copy2, 3: _copy3, 4: _copy4}


def copy_into(src, dst):
    """``dst[...] = src`` for device arrays of the same shape (1-4 dims, any strides)."""
    threads = config.CUDA_THREADS_PER_BLOCK
    _COPIES[len(dst.shape)][blocks_for(dst.size, threads), threads](src, dst)
    return dst


def contiguous_copy(src):
    """A C-contiguous device copy of a strided device view (1-4 dims)."""
    shape = tuple(src.shape)
    if len(shape) > 4:
        raise NotImplementedError("contiguous_copy: device views of more than 4 dimensions")
    return copy_into(src, empty(shape, src.dtype))


@cuda.jit
def _broadcast_rows(vec, out):
    i = cuda.grid(1)
    if i < out.size:
        cols = out.shape[1]
        out[i // cols, i % cols] = vec[i % cols]


def broadcast_rows(vec, out):
    """``out[i, :] = vec`` for every row of a 2-D device array (bias as a GEMM's starting value)."""
    threads = config.CUDA_THREADS_PER_BLOCK
    _broadcast_rows[blocks_for(out.size, threads), threads](vec, out)
    return out


def per_dtype(build):
    """Memoise a kernel factory per data type: ``build(nb_type)`` runs once for each NumPy dtype.

    CUDA kernels with shared-memory arrays or typed constants need the element type at
    compile time, so each module builds its kernels for a Numba type and calls the
    wrapped factory with the array's dtype.
    """
    built: dict = {}

    @functools.wraps(build)
    def get(dtype):
        key = np.dtype(dtype)
        if key not in built:
            built[key] = build(numba.from_dtype(key))
        return built[key]

    return get


# --- GEMM --------------------------------------------------------------------------------------
@per_dtype
def _gemm_kernel(nb_type):
    """The tiled GEMM kernel for one dtype (shared-memory tiles need a compile-time type)."""
    tile = config.CUDA_GEMM_TILE

    @cuda.jit
    def kernel(a, b, c, m, n, k, trans_a, trans_b, alpha, beta):
        tile_a = cuda.shared.array((tile, tile), nb_type)
        tile_b = cuda.shared.array((tile, tile), nb_type)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty
        col = cuda.blockIdx.x * tile + tx
        acc = nb_type(0)
        for start in range(0, k, tile):
            ka = start + tx
            if row < m and ka < k:
                tile_a[ty, tx] = a[ka, row] if trans_a else a[row, ka]
            else:
                tile_a[ty, tx] = 0
            kb = start + ty
            if kb < k and col < n:
                tile_b[ty, tx] = b[col, kb] if trans_b else b[kb, col]
            else:
                tile_b[ty, tx] = 0
            cuda.syncthreads()
            for q in range(tile):
                acc += tile_a[ty, q] * tile_b[q, tx]
            cuda.syncthreads()
        if row < m and col < n:
            if beta == 0:  # never read c: it may hold garbage (NaN) from device_array
                c[row, col] = alpha * acc
            else:
                c[row, col] = alpha * acc + beta * c[row, col]

    return kernel


def gemm(a, b, c, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """``c = alpha * op(a) @ op(b) + beta * c`` on the device; op is a transpose where asked.

    Any 2-D views work (slices of gate blocks included), so transposes and
    sub-blocks cost no copies.
    """
    m = a.shape[1] if trans_a else a.shape[0]
    k = a.shape[0] if trans_a else a.shape[1]
    n = b.shape[0] if trans_b else b.shape[1]
    tile = config.CUDA_GEMM_TILE
    dtype = c.dtype
    if k == 0:
        return fill(c, 0) if beta == 0 else c
    _gemm_kernel(dtype)[(blocks_for(n, tile), blocks_for(m, tile)), (tile, tile)](
        a, b, c, m, n, k, bool(trans_a), bool(trans_b), dtype.type(alpha), dtype.type(beta))
    return c


# --- reductions ----------------------------------------------------------------------------------
@per_dtype
def _colsum_kernel(nb_type):
    threads = config.CUDA_REDUCE_THREADS

    @cuda.jit
    def kernel(a, out, accumulate):
        # one block per column j of a (rows, cols): out[j] (+)= sum_i a[i, j]
        j = cuda.blockIdx.x
        partial = cuda.shared.array(threads, nb_type)
        t = cuda.threadIdx.x
        acc = nb_type(0)
        for i in range(t, a.shape[0], threads):
            acc += a[i, j]
        partial[t] = acc
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if t < step:
                partial[t] += partial[t + step]
            cuda.syncthreads()
            step //= 2
        if t == 0:
            out[j] = out[j] + partial[0] if accumulate else partial[0]

    return kernel


def column_sums(a, out=None, accumulate=False):
    """``out[j] (+)= sum_i a[i, j]`` for a 2-D device view (bias gradients)."""
    if out is None:
        out = empty((a.shape[1],), a.dtype)
        accumulate = False
    _colsum_kernel(a.dtype)[a.shape[1], config.CUDA_REDUCE_THREADS](a, out, bool(accumulate))
    return out



@per_dtype
def _row_norm_kernel(nb_type):
    threads = config.CUDA_REDUCE_THREADS

    @cuda.jit
    def kernel(a, out):
        # one block per row i of a (rows, cols): out[i] = sqrt(sum_j a[i, j]^2)
        i = cuda.blockIdx.x
        partial = cuda.shared.array(threads, nb_type)
        t = cuda.threadIdx.x
        acc = nb_type(0)
        for j in range(t, a.shape[1], threads):
            acc += a[i, j] * a[i, j]
        partial[t] = acc
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if t < step:
                partial[t] += partial[t + step]
            cuda.syncthreads()
            step //= 2
        if t == 0:
            out[i] = math.sqrt(partial[0])

    return kernel


def row_norms(a):
    """``sqrt(sum_j a[i, j]**2)`` per row of a 2-D device array."""
    out = empty((a.shape[0],), a.dtype)
    _row_norm_kernel(a.dtype)[a.shape[0], config.CUDA_REDUCE_THREADS](a, out)
    return out


@cuda.jit
def _transpose(src, dst):
    # dst[a, b] = src[b, a]
    i = cuda.grid(1)
    if i < dst.size:
        cols = dst.shape[1]
        dst[i // cols, i % cols] = src[i % cols, i // cols]


def transpose(src):
    """``src.T`` as a contiguous device copy of a 2-D device array.

    (Numba's own ``DeviceNDArray.T`` JIT-compiles a fresh transpose kernel on every call: ~100 ms.)
    """
    dst = empty((src.shape[1], src.shape[0]), src.dtype)
    threads = config.CUDA_THREADS_PER_BLOCK
    _transpose[blocks_for(dst.size, threads), threads](src, dst)
    return dst


@cuda.jit
def _swap_last_two(src, dst):
    # dst[a, b, d] = src[a, d, b]
    i = cuda.grid(1)
    if i < dst.size:
        b_size, d_size = dst.shape[1], dst.shape[2]
        a, b, d = i // (b_size * d_size), (i // d_size) % b_size, i % d_size
        dst[a, b, d] = src[a, d, b]


def swap_last_two(src):
    """``src.transpose(0, 2, 1)`` as a contiguous device copy of a 3-D device array."""
    dst = empty((src.shape[0], src.shape[2], src.shape[1]), src.dtype)
    threads = config.CUDA_THREADS_PER_BLOCK
    _swap_last_two[blocks_for(dst.size, threads), threads](src, dst)
    return dst


@cuda.jit
def _swap_first_two(src, dst):
    # dst[b, a, d] = src[a, b, d]
    i = cuda.grid(1)
    if i < dst.size:
        b_size, d_size = dst.shape[1], dst.shape[2]
        b, a, d = i // (b_size * d_size), (i // d_size) % b_size, i % d_size
        dst[b, a, d] = src[a, b, d]


def swap_first_two(src):
    """``src.transpose(1, 0, 2)`` as a contiguous device copy of a 3-D device array (time/batch major)."""
    dst = empty((src.shape[1], src.shape[0], src.shape[2]), src.dtype)
    threads = config.CUDA_THREADS_PER_BLOCK
    _swap_first_two[blocks_for(dst.size, threads), threads](src, dst)
    return dst


# --- elementwise arithmetic on flat contiguous arrays ---------------------------------------------
@cuda.jit
def _axpy(alpha, x, y):
    i = cuda.grid(1)
    if i < y.shape[0]:
        y[i] += alpha * x[i]


@cuda.jit
def _multiply(a, b, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] * b[i]


@cuda.jit
def _add(a, b, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] + b[i]


def axpy(alpha, x, y):
    """``y += alpha * x`` in place (contiguous device arrays of one shape; gradient accumulation)."""
    threads = config.CUDA_THREADS_PER_BLOCK
    _axpy[blocks_for(y.size, threads), threads](y.dtype.type(alpha), x.reshape(x.size), y.reshape(y.size))
    return y


def _binary(kernel, a, b):
    out = empty(a.shape, a.dtype)
    threads = config.CUDA_THREADS_PER_BLOCK
    kernel[blocks_for(out.size, threads), threads](a.reshape(a.size), b.reshape(b.size), out.reshape(out.size))
    return out


def multiply(a, b):
    """``a * b`` elementwise, a new device array (contiguous inputs of one shape)."""
    return _binary(_multiply, a, b)


def add(a, b):
    """``a + b`` elementwise, a new device array (contiguous inputs of one shape)."""
    return _binary(_add, a, b)


@cuda.jit
def _count_outside(values, low, high, count):
    i = cuda.grid(1)
    if i < values.shape[0]:
        v = values[i]
        if v < low or v >= high:
            cuda.atomic.add(count, 0, 1)


def count_outside(values, low, high):
    """How many entries of an integer device array lie outside ``[low, high)``: one kernel, one scalar back."""
    count = zeros((1,), np.int64)  # filled on the device: only the count travels, back
    if values.size:
        threads = config.CUDA_THREADS_PER_BLOCK
        flat = values.reshape(values.size)
        _count_outside[blocks_for(flat.size, threads), threads](flat, np.int64(low), np.int64(high), count)
    return int(count.copy_to_host()[0])
