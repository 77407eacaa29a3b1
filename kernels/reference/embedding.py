"""Embedding lookup and its gradient, NumPy (indices flat, validated, int64; weight ``(num_embeddings, dim)``).

``padding_idx`` is a row index, or -1 for none: that row receives no gradient.
"""
from __future__ import annotations

import numpy as np


def embedding_forward(idx, weight):
    """``out[r] = weight[idx[r]]``: ``(n, dim)``."""
    return weight[idx]


def embedding_backward(grad_out, idx, num_embeddings, padding_idx):
    """``grad_weight[idx[r]] += grad_out[r]`` (repeated indices add up), the padding row left at zero."""
    grad_weight = np.zeros((num_embeddings, grad_out.shape[1]), dtype=grad_out.dtype)
    np.add.at(grad_weight, idx, grad_out)
    if padding_idx >= 0:
        grad_weight[padding_idx] = 0
    return grad_weight


__all__ = ["embedding_backward", "embedding_forward"]
