"""Activations on the CUDA device: one thread per element; softmax rows one block each.

Same functions and signatures as ``kernels/reference/activation.py``:
elementwise ops take flat 1-D device arrays, softmax/log_softmax a 2-D
``(rows, classes)`` array normalised along its last axis. Stable forms as in
the reference: sigmoid from exp(-|x|), softmax with the row maximum subtracted.
NaN propagates (max uses ``m != m`` checks, relu keeps NaN).
"""
from __future__ import annotations

import math

from numba import cuda

from .. import config
from ._util import blocks_for, empty, per_dtype, to_device


def _launch(kernel, count, *args):
    threads = config.CUDA_THREADS_PER_BLOCK
    kernel[blocks_for(count, threads), threads](*args)




@per_dtype
def _elementwise(nb_type):
    """The elementwise kernels for one dtype: constants typed as the data (no float64 promotion of float32 math)."""
    zero, one = nb_type(0), nb_type(1)

    @cuda.jit
    def _relu(x, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            v = x[i]
            out[i] = zero if v < zero else v  # NaN is not < 0: it stays NaN


    @cuda.jit
    def _relu_backward(g, x, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            out[i] = zero if x[i] <= zero else g[i]


    @cuda.jit
    def _sigmoid(x, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            v = x[i]
            z = math.exp(-abs(v))
            out[i] = one / (one + z) if v >= zero else z / (one + z)


    @cuda.jit
    def _sigmoid_backward(g, y, out):
        i = cuda.grid(1)
        if i < y.shape[0]:
            out[i] = g[i] * y[i] * (one - y[i])


    @cuda.jit
    def _tanh(x, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            out[i] = math.tanh(x[i])


    @cuda.jit
    def _tanh_backward(g, y, out):
        i = cuda.grid(1)
        if i < y.shape[0]:
            out[i] = g[i] * (one - y[i] * y[i])

    kernels = {"relu": _relu, "relu_backward": _relu_backward, "sigmoid": _sigmoid,
               "sigmoid_backward": _sigmoid_backward, "tanh": _tanh, "tanh_backward": _tanh_backward}
    return kernels


def _unary(name, x):
    x = to_device(x)
    out = empty(x.shape, x.dtype)
    _launch(_elementwise(x.dtype)[name], x.shape[0], x, out)
    return out


def _binary(name, g, saved):
    g, saved = to_device(g), to_device(saved)
    out = empty(saved.shape, saved.dtype)
    _launch(_elementwise(saved.dtype)[name], saved.shape[0], g, saved, out)
    return out


def relu(x):
    return _unary("relu", x)


def relu_backward(grad_out, x):
    return _binary("relu_backward", grad_out, x)


def sigmoid(x):
    return _unary("sigmoid", x)


def sigmoid_backward(grad_out, y):
    return _binary("sigmoid_backward", grad_out, y)


def tanh(x):
    return _unary("tanh", x)


def tanh_backward(grad_out, y):
    return _binary("tanh_backward", grad_out, y)


# --- row ops: one block per row, shared-memory tree reductions --------------------------------------

SOFTMAX, LOG_SOFTMAX, SOFTMAX_BACKWARD, LOG_SOFTMAX_BACKWARD = 0, 1, 2, 3


@per_dtype
def _row_kernel(nb_type):
    threads = config.CUDA_REDUCE_THREADS

    @cuda.jit(device=True)
    def block_reduce(partial, value, take_max):
        t = cuda.threadIdx.x
        partial[t] = value
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if t < step:
                a, b = partial[t], partial[t + step]
                if take_max:
                    partial[t] = a if (a > b or a != a) else b  # NaN wins, as in the reference max
                else:
                    partial[t] = a + b
            cuda.syncthreads()
            step //= 2
        result = partial[0]
        cuda.syncthreads()
        return result

    @cuda.jit
    def kernel(op, a, b, out):
        row = cuda.blockIdx.x
        t = cuda.threadIdx.x
        cols = a.shape[1]
        partial = cuda.shared.array(threads, nb_type)
        if op == SOFTMAX or op == LOG_SOFTMAX:
            best = nb_type(-math.inf)
            for j in range(t, cols, threads):
                v = a[row, j]
                if v > best or v != v:
                    best = v
            best = block_reduce(partial, nb_type(best), True)
            acc = nb_type(0)
            for j in range(t, cols, threads):
                acc += math.exp(a[row, j] - best)
            total = block_reduce(partial, acc, False)
            if op == SOFTMAX:
                for j in range(t, cols, threads):
                    out[row, j] = math.exp(a[row, j] - best) / total
            else:
                log_total = math.log(total)
                for j in range(t, cols, threads):
                    out[row, j] = (a[row, j] - best) - log_total
        else:
            # a = grad_out, b = y
            acc = nb_type(0)
            for j in range(t, cols, threads):
                acc += a[row, j] * b[row, j] if op == SOFTMAX_BACKWARD else a[row, j]
            total = block_reduce(partial, acc, False)
            for j in range(t, cols, threads):
                if op == SOFTMAX_BACKWARD:
                    out[row, j] = b[row, j] * (a[row, j] - total)
                else:
                    out[row, j] = a[row, j] - math.exp(b[row, j]) * total

    return kernel


def _rows(op, a, b=None):
    a = to_device(a)
    b = a if b is None else to_device(b)
    out = empty(a.shape, a.dtype)
    _row_kernel(a.dtype)[a.shape[0], config.CUDA_REDUCE_THREADS](op, a, b, out)
    return out


def softmax(x):
    return _rows(SOFTMAX, x)


def log_softmax(x):
    return _rows(LOG_SOFTMAX, x)


def softmax_backward(grad_out, y):
    return _rows(SOFTMAX_BACKWARD, grad_out, y)


def log_softmax_backward(grad_out, y):
    return _rows(LOG_SOFTMAX_BACKWARD, grad_out, y)
