"""The register-blocked products of kernels/cpu/_tile.py (the recurrent kernels' per-step GEMMs) against NumPy.

Shapes cover every tile kind: full 6-row tiles and the 1..5-row remainders,
wide and one-vector column tiles and the scalar column tail, reductions split
into depth blocks, A read row-major or transposed in place, and accumulate.
"""
from __future__ import annotations

import numpy as np
import pytest
from fastml.kernels import config
from fastml.kernels.cpu._tile import gemm_small

SHAPES = [  # (m, n, k)
    (1, 1, 1), (5, 7, 3), (6, 8, 1), (7, 16, 2), (12, 32, 257), (13, 33, 129), (128, 32, 385),
    (37, 19, 13), (6, 24, 2 * config.TILE_DEPTH + 1), (3, 5, 0),
]


def _operands(rng, dtype, m, n, k, transposed, pad):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n + pad)).astype(dtype)
    c = rng.standard_normal((m, n + pad)).astype(dtype)
    store, a_row, a_col = (np.ascontiguousarray(a.T), 1, m) if transposed else (a, k, 1)
    return a, store, a_row, a_col, b, c


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transposed", [False, True], ids=["a", "a_t"])
@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "add"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gemm_small_matches_numpy(shape, accumulate, transposed, dtype):
    m, n, k = shape
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    pad = 3  # row strides wider than the products: columns n.. must stay as they were
    a, store, a_row, a_col, b, c = _operands(rng, dtype, m, n, k, transposed, pad)
    before = c.copy()
    expected = a.astype(np.float64) @ b[:, :n] + (before[:, :n] if accumulate else 0)
    gemm_small(m, n, k, store.ravel(), a_row, a_col, b.ravel(), n + pad, c.ravel(), n + pad, accumulate)
    tol = (2e-6 if dtype == np.float32 else 1e-14) * max(k, 1) ** 0.5 * 4
    np.testing.assert_allclose(c[:, :n], expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(c[:, n:], before[:, n:])


def test_gemm_small_propagates_nan_and_inf():
    a = np.ones((6, 4), np.float32)
    b = np.ones((4, 16), np.float32)
    b[2, 3], b[1, 9] = np.nan, np.inf
    c = np.zeros((6, 16), np.float32)
    gemm_small(6, 16, 4, a.ravel(), 4, 1, b.ravel(), 16, c.ravel(), 16, False)
    np.testing.assert_array_equal(c, np.ones((6, 4), np.float32) @ b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_registered_copy_matches_and_checks_extents(dtype):
    """gemm_small_external (what the recurrent kernels call) runs the registered compiled copy, and refuses
    operand views shorter than the product needs instead of reading past them."""
    from fastml.kernels._jit import njit
    from fastml.kernels.cpu import _tile

    _tile.register(dtype)

    @njit
    def product(m, n, k, a, b, c):
        _tile.gemm_small_external(m, n, k, a, k, 1, b, n, c, n, False)

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 13)).astype(dtype), rng.standard_normal((13, 20)).astype(dtype)
    c = np.empty((7, 20), dtype)
    product(7, 20, 13, a.ravel(), b.ravel(), c.ravel())
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)
    with pytest.raises(IndexError, match="shorter than its extent"):
        product(7, 20, 13, a.ravel()[1:], b.ravel(), c.ravel())
