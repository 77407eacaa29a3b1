"""Embedding lookup and its gradient on the CUDA device.

Same functions and signatures as ``kernels/reference/embedding.py``. The
lookup is a gather, one thread per output element; the gradient a
scatter-add, one thread per element of ``grad_out``, with atomic adds so
that repeated indices accumulate (their order, and so the last bits of a
float sum, may differ from the reference's sequential ``np.add.at``).
Indices arrive validated (in range) and flat, int64 or another integer type.
"""
from __future__ import annotations

from numba import cuda

from .. import config
from ._util import blocks_for, empty, to_device, zeros


@cuda.jit
def _gather(idx, weight, out):
    i = cuda.grid(1)
    if i < out.size:
        dim = out.shape[1]
        r, c = i // dim, i % dim
        out[r, c] = weight[idx[r], c]


@cuda.jit
def _scatter_add(grad_out, idx, padding_idx, grad_weight):
    i = cuda.grid(1)
    if i < grad_out.size:
        dim = grad_out.shape[1]
        r, c = i // dim, i % dim
        row = idx[r]
        if row != padding_idx:
            cuda.atomic.add(grad_weight, (row, c), grad_out[r, c])


def _launch(kernel, count, *args):
    threads = config.CUDA_THREADS_PER_BLOCK
    kernel[blocks_for(count, threads), threads](*args)


def embedding_forward(idx, weight):
    idx, weight = to_device(idx), to_device(weight)
    out = empty((idx.shape[0], weight.shape[1]), weight.dtype)
    if out.size:
        _launch(_gather, out.size, idx, weight, out)
    return out


def embedding_backward(grad_out, idx, num_embeddings, padding_idx):
    grad_out, idx = to_device(grad_out), to_device(idx)
    grad_weight = zeros((num_embeddings, grad_out.shape[1]), grad_out.dtype)
    if grad_out.size:
        _launch(_scatter_add, grad_out.size, grad_out, idx, padding_idx, grad_weight)
    return grad_weight


__all__ = ["embedding_backward", "embedding_forward"]
