"""The one comparison helper every test uses, with tolerances per dtype (STYLE.md)."""
from __future__ import annotations

import numpy as np

TOLERANCES = {
    np.dtype(np.float32): dict(rtol=1e-5, atol=1e-5),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
}


def tolerance(dtype, reduction: int = 1) -> dict:
    """rtol/atol for ``dtype``; long reductions (sums over ``reduction`` terms) loosen float32 by sqrt(n)."""
    tol = dict(TOLERANCES[np.dtype(dtype)])
    if reduction > 1:
        scale = max(1.0, float(np.sqrt(reduction)) / 4)
        tol = {key: value * scale for key, value in tol.items()}
    return tol


def assert_close(actual, expected, *, dtype=None, reduction: int = 1, rtol=None, atol=None, check_dtype=True, err_msg=""):
    """Assert same shape, (optionally) same dtype, and closeness with the dtype's tolerance.

    NaN compares equal to NaN (NaN propagation is part of the contract).
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    dtype = np.dtype(dtype or actual.dtype)
    assert actual.shape == expected.shape, f"{err_msg} shape {actual.shape} != {expected.shape}"
    if check_dtype:
        assert actual.dtype == dtype, f"{err_msg} dtype {actual.dtype} != {dtype}"
    tol = tolerance(dtype, reduction)
    if rtol is not None:
        tol["rtol"] = rtol
    if atol is not None:
        tol["atol"] = atol
    np.testing.assert_allclose(actual, expected.astype(actual.dtype, copy=False) if expected.dtype != actual.dtype else expected,
                               equal_nan=True, err_msg=err_msg, **tol)


def numeric_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar function ``f`` at float64 ``x``."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f(x)
        flat[i] = old - eps
        minus = f(x)
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


# --- what the op test modules share -------------------------------------------------
try:  # PyTorch is a test peer only: the torch comparisons run when it is installed
    import torch
    import torch.nn.functional as TF

    torch.set_num_threads(1)  # tiny shapes; idle spinning torch threads would starve Numba's
except ImportError:  # pragma: no cover - depends on the environment
    torch = None
    TF = None

import pytest  # noqa: E402

DTYPES = [np.float32, np.float64]
# The NUMBA_BOUNDSCHECK=1 rerun compiles every kernel afresh; float32 alone keeps it quick
# (the index arithmetic does not depend on the dtype).
DTYPES_BOUNDSCHECKED = [pytest.param(np.float32, id="float32", marks=pytest.mark.boundscheck),
                        pytest.param(np.float64, id="float64")]
BACKENDS = ["reference", "cpu"]
