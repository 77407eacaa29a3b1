"""Optimisation helpers (optimisers such as SGD and Adam join this module later)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def clip_grad_norm_(grads, max_norm, norm_type=2.0, error_if_nonfinite=False, eps=1e-6):
    """Scale gradients in place so that their joint norm is at most ``max_norm``, as ``torch.nn.utils``.

    Args:
        grads: a dict of arrays (e.g. ``layer.grads``), an iterable of arrays, or one array.
        max_norm: the largest allowed total norm.
        norm_type: p of the p-norm over all entries together (``float("inf")`` for the max).
        error_if_nonfinite: raise if the total norm is NaN or Inf.
        eps: added to the norm in the scale ``max_norm / (norm + eps)``, as PyTorch does.

    Returns:
        The total norm before clipping, a Python float.

    Example:
        >>> total = clip_grad_norm_(lstm.grads, max_norm=1.0)
    """
    fn = "clip_grad_norm_"
    if isinstance(grads, Mapping):
        arrays = list(grads.values())
    elif isinstance(grads, np.ndarray):
        arrays = [grads]
    else:
        arrays = list(grads)
    arrays = [g for g in arrays if g is not None]
    for g in arrays:
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            raise TypeError(f"{fn}: every gradient must be a float ndarray, got {type(g).__name__}"
                            f"{'' if not isinstance(g, np.ndarray) else ' of dtype ' + str(g.dtype)}")
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if norm_type <= 0:
        raise ValueError(f"{fn}: `norm_type` must be > 0, got {norm_type}")
    if not arrays:
        return 0.0
    if norm_type == np.inf:
        total = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in arrays)
    else:
        total = float(sum(np.sum(np.abs(g.astype(np.float64)) ** norm_type) for g in arrays) ** (1.0 / norm_type))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"{fn}: the total norm of order {norm_type} is non-finite ({total}), so it can't be "
                           f"clipped; pass error_if_nonfinite=False to scale anyway")
    scale = max_norm / (total + eps)
    if scale < 1.0:
        for g in arrays:
            g *= g.dtype.type(scale)
    return total


__all__ = ["clip_grad_norm_"]
