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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k_out,channels,kh,kw", [(1, 1, 1, 1), (6, 2, 3, 3), (13, 3, 3, 3), (32, 1, 5, 5),
                                                  (8, 2, 2, 4), (7, 1, 4, 2)])
def test_conv_tiles_match_numpy(k_out, channels, kh, kw, dtype):
    """conv_tiles: every (channel, kernel row, kernel column) tap of each output column, for the unrolled
    kernel widths (3, 5), the general loop, and every tail of output-channel blocks."""
    from fastml.kernels.cpu._tile import _row_blocks, conv_tiles, conv_width_multiple

    rng = np.random.default_rng(k_out * 7 + kw)
    wide = conv_width_multiple(np.zeros(1, dtype))
    width, row = 3 * wide, 11
    plane = width + (kh - 1) * row + kw
    xp = rng.standard_normal(channels * plane).astype(dtype)
    weight = rng.standard_normal((k_out, channels * kh * kw)).astype(dtype)
    bias = rng.standard_normal(k_out).astype(dtype)
    ext = np.full((k_out, width + 5), 7.0, dtype)
    conv_tiles(k_out, width, channels, kh, kw, weight, xp, plane, row, bias, ext)
    planes = xp.reshape(channels, plane).astype(np.float64)
    w = weight.reshape(k_out, channels, kh, kw).astype(np.float64)
    expected = np.zeros((k_out, width)) + bias[:, None]
    for c in range(channels):
        for r in range(kh):
            for s in range(kw):
                expected += w[:, c, r, s, None] * planes[c, r * row + s:r * row + s + width][None, :]
    tol = (2e-6 if dtype == np.float32 else 1e-14) * 4 * (channels * kh * kw) ** 0.5
    np.testing.assert_allclose(ext[:, :width], expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(ext[:, width:], 7.0)
    starts = _row_blocks(k_out)
    assert starts[0] == 0 and starts[-1] == k_out and np.all(np.diff(starts) >= 1) and np.all(np.diff(starts) <= 6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows_per_call", [1, 2])
@pytest.mark.parametrize("use_long", [True, False])
@pytest.mark.parametrize("k_out,channels,kh,kw,ow", [(32, 1, 5, 5, 24), (13, 3, 3, 3, 56), (5, 2, 3, 3, 40),
                                                     (7, 2, 2, 4, 28), (2, 1, 1, 1, 16), (1, 3, 3, 3, 24),
                                                     (11, 1, 5, 5, 20), (4, 2, 3, 3, 17), (9, 2, 5, 3, 20)])
def test_conv_rows_match_numpy(k_out, channels, kh, kw, ow, use_long, rows_per_call, dtype):
    """conv_rows: tiles along each output row stored straight into (k_out, oh, ow), for row widths made of
    long and wide tiles, ones ending in an overlapping (shifted) wide tile, every block tail of both tile
    shapes and every tap variant (3x3 and 5x5 unrolled, run-time loops), one output row per tile call or
    two (of three: a call that repeats its tile and one that doesn't); nothing outside the block is
    written."""
    from fastml.kernels.cpu._tile import _long_blocks, conv_rows

    rng = np.random.default_rng(k_out * 11 + ow)
    oh = 3
    wq = ow + kw - 1 + 2  # two columns of the row that no tap may use: NaN
    hq = oh + kh - 1
    planes = rng.standard_normal((channels, hq, wq)).astype(dtype)
    planes[:, :, ow + kw - 1:] = np.nan
    weight = rng.standard_normal((k_out, channels * kh * kw)).astype(dtype)
    bias = rng.standard_normal(k_out).astype(dtype)
    out = np.full(k_out * oh * ow + 5, 7.0, dtype)
    conv_rows(k_out, oh, ow, channels, kh, kw, weight, planes.ravel(), hq * wq, wq, bias, out, use_long,
              rows_per_call=rows_per_call)
    w = weight.reshape(k_out, channels, kh, kw).astype(np.float64)
    expected = np.zeros((k_out, oh, ow)) + bias[:, None, None]
    for c in range(channels):
        for r in range(kh):
            for s in range(kw):
                expected += w[:, c, r, s, None, None] * planes[c, r:r + oh, s:s + ow].astype(np.float64)[None]
    tol = (2e-6 if dtype == np.float32 else 1e-14) * 4 * (channels * kh * kw) ** 0.5
    np.testing.assert_allclose(out[:-5].reshape(k_out, oh, ow), expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(out[-5:], 7.0)
    starts = _long_blocks(k_out)
    assert starts[0] == 0 and starts[-1] == k_out and np.all(np.diff(starts) >= 1) and np.all(np.diff(starts) <= 4)


def test_tap_kinds():
    """tap_kind picks each conv tile variant the tests above and below run: 3x3 kernels at column stride 1
    and 2 and 5x5 kernels at stride 1 with every tap of a channel unrolled, the rest with run-time loops."""
    from fastml.kernels.cpu import _tile

    expected = {(3, 3, 1): _tile._KIND_3X3, (3, 3, 2): _tile._KIND_3X3_S2, (5, 5, 1): _tile._KIND_5X5,
                (3, 3, 3): _tile._KIND_ANY, (5, 5, 2): _tile._KIND_ANY, (2, 3, 1): _tile._KIND_ANY,
                (5, 3, 1): _tile._KIND_ANY, (2, 4, 1): _tile._KIND_ANY, (1, 7, 4): _tile._KIND_ANY,
                (1, 1, 1): _tile._KIND_ANY}
    assert {shape: _tile.tap_kind(*shape) for shape in expected} == expected
    assert sorted(set(expected.values())) == sorted(_tile._KINDS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows_per_call", [1, 2])
@pytest.mark.parametrize("k_out,channels,kh,kw,ow,sh,sw", [(13, 3, 3, 3, 16, 2, 2), (7, 2, 3, 3, 24, 2, 2),
                                                           (5, 2, 5, 5, 20, 1, 2), (6, 1, 3, 4, 17, 3, 3),
                                                           (4, 2, 2, 3, 16, 2, 1), (3, 1, 1, 7, 24, 1, 4),
                                                           (6, 2, 3, 3, 16, 1, 3)])
def test_conv_rows_strided_match_numpy(k_out, channels, kh, kw, ow, sh, sw, rows_per_call, dtype):
    """conv_rows with row stride sh and column stride sw: each channel's padded plane split into its sw
    column phases (built here from the padded input, independently of the kernels' own split), for the
    unrolled 3x3 taps at column stride 2 and the run-time loops (any other stride or kernel), wide,
    shifted and long tiles, one or two output rows per tile call (a repeated tile steps sh input rows)."""
    from fastml.kernels.cpu._tile import conv_rows

    rng = np.random.default_rng(k_out * 7 + ow + sw)
    oh = 3
    hp, wp = (oh - 1) * sh + kh, (ow - 1) * sw + kw
    padded = rng.standard_normal((channels, hp, wp)).astype(dtype)
    wq = -(-wp // sw) + 2  # two more columns per phase that no tap may use: NaN
    phases = np.full((channels, sw, hp, wq), np.nan, dtype)
    for p in range(sw):
        cols = padded[:, :, p::sw]
        phases[:, p, :, :cols.shape[2]] = cols
    weight = rng.standard_normal((k_out, channels * kh * kw)).astype(dtype)
    bias = rng.standard_normal(k_out).astype(dtype)
    out = np.full(k_out * oh * ow + 5, 7.0, dtype)
    conv_rows(k_out, oh, ow, channels, kh, kw, weight, phases.ravel(), sw * hp * wq, wq, bias, out, True, sh, sw,
              hp * wq, rows_per_call=rows_per_call)
    w = weight.reshape(k_out, channels, kh, kw).astype(np.float64)
    expected = np.zeros((k_out, oh, ow)) + bias[:, None, None]
    for c in range(channels):
        for r in range(kh):
            for s in range(kw):
                window = padded[c, r:r + (oh - 1) * sh + 1:sh, s:s + (ow - 1) * sw + 1:sw].astype(np.float64)
                expected += w[:, c, r, s, None, None] * window[None]
    tol = (2e-6 if dtype == np.float32 else 1e-14) * 4 * (channels * kh * kw) ** 0.5
    np.testing.assert_allclose(out[:-5].reshape(k_out, oh, ow), expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(out[-5:], 7.0)
