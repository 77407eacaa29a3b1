"""Every CPU pooling algorithm, forced, against the reference backend.

kernels/cpu/pool.py picks between specialised kernels ("window2x2",
"separable", "rows") and the general ones ("direct", "rows"); each is run
here on the shapes that select it and on ones that exercise its borders, in
float32 and float64, with NaN, -inf and ties in the data.
"""
import numpy as np
import pytest

from _compare import assert_close
from fastml.kernels.cpu import pool as cpu
from fastml.kernels.reference import pool as ref
from fastml.shapes import pool_output_size

DTYPES = [np.float32, np.float64]


def _out_size(in_size, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
    return tuple(pool_output_size(n, k, s, p, d, ceil_mode)
                 for n, k, s, p, d in zip(in_size, kernel, stride, padding, dilation))


def _data(rng, shape, dtype, specials=True):
    # Small integers make ties common; NaN and -inf are sprinkled in.
    x = rng.integers(-3, 4, shape).astype(dtype)
    if specials:
        x[rng.random(shape) < 0.04] = np.nan
        x[rng.random(shape) < 0.04] = -np.inf
    return x


def _check_max(x, kernel, stride, padding, dilation, out_size, algorithm):
    out, idx = cpu.max_pool2d_forward(x, kernel, stride, padding, dilation, out_size, algorithm=algorithm)
    expected, expected_idx = ref.max_pool2d_forward(x, kernel, stride, padding, dilation, out_size)
    assert out.dtype == x.dtype and idx.dtype == np.int64
    assert_close(out, expected, err_msg=algorithm)
    np.testing.assert_array_equal(idx, expected_idx, err_msg=algorithm)
    g = np.random.default_rng(5).standard_normal(out.shape).astype(x.dtype)
    assert_close(cpu.max_pool2d_backward(g, idx, x.shape[2:]), ref.max_pool2d_backward(g, expected_idx, x.shape[2:]))
    # values only (inference): the same maxima, NaN included, and no indices
    values, none = cpu.max_pool2d_forward(x, kernel, stride, padding, dilation, out_size, indices=False,
                                          algorithm=algorithm)
    assert none is None
    np.testing.assert_array_equal(values, out, err_msg=f"{algorithm} indices=False")


# (in_size, kernel, stride, padding, ceil_mode)
MAX_CASES = [
    ((32, 32), (2, 2), (2, 2), (0, 0), False),
    ((7, 9), (2, 2), (2, 2), (0, 0), False),      # odd sizes: last row/column unused
    ((7, 9), (2, 2), (2, 2), (0, 0), True),       # ceil mode: clipped last windows
    ((32, 32), (3, 3), (1, 1), (1, 1), False),
    ((5, 6), (3, 3), (1, 1), (1, 1), False),
    ((5, 6), (3, 3), (1, 1), (0, 0), False),
    ((6, 5), (2, 2), (1, 1), (1, 1), False),      # output wider than the input
    ((6, 7), (3, 2), (2, 1), (1, 1), True),
    ((8, 8), (3, 3), (2, 2), (1, 1), True),
    ((5, 9), (4, 3), (3, 2), (2, 1), False),
    ((1, 1), (1, 1), (1, 1), (0, 0), False),
    ((4, 4), (1, 3), (1, 3), (0, 1), False),
    # stride 1 down, 2 across, and padding that makes the output as wide as the input:
    # the separable kernel's flat vertical pass once took this for a stride-1 row
    ((2, 2), (2, 2), (1, 2), (0, 1), False),
    ((4, 6), (3, 2), (1, 2), (1, 1), False),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_size,kernel,stride,padding,ceil_mode", MAX_CASES)
def test_max_pool_algorithms_match_reference(rng, dtype, in_size, kernel, stride, padding, ceil_mode):
    x = _data(rng, (2, 3) + in_size, dtype)
    out_size = _out_size(in_size, kernel, stride, padding, ceil_mode=ceil_mode)
    chosen = cpu.max_pool2d_algorithm(x, kernel, stride, padding, (1, 1), out_size)
    for algorithm in sorted({"direct", "separable", chosen}):
        _check_max(x, kernel, stride, padding, (1, 1), out_size, algorithm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_size", [(32, 32), (2, 2), (2, 5), (7, 3), (5, 9)])
def test_max_pool_3x3_same_values_match_reference(rng, dtype, in_size):
    """The values-only 3x3 stride-1 padding-1 kernel (chosen when no indices are asked for): the
    reference's maxima with NaN, -inf and ties in the data, borders and 2-row/2-column planes included."""
    x = _data(rng, (2, 3) + in_size, dtype)
    args = ((3, 3), (1, 1), (1, 1), (1, 1), in_size)
    assert cpu.max_pool2d_algorithm(x, *args, indices=False) == "window3x3"
    out, none = cpu.max_pool2d_forward(x, *args, indices=False)
    assert none is None and out.dtype == x.dtype
    np.testing.assert_array_equal(out, ref.max_pool2d_forward(x, *args)[0])
    with pytest.raises(ValueError, match="values only"):
        cpu.max_pool2d_forward(x, *args, algorithm="window3x3")


def test_fast_paths_are_chosen():
    x = np.zeros((1, 1, 32, 32), np.float32)
    assert cpu.max_pool2d_algorithm(x, (2, 2), (2, 2), (0, 0), (1, 1), (16, 16)) == "window2x2"
    assert cpu.max_pool2d_algorithm(x, (3, 3), (1, 1), (1, 1), (1, 1), (32, 32)) == "separable"
    assert cpu.max_pool2d_algorithm(x, (3, 3), (1, 1), (1, 1), (2, 2), (30, 30)) == "direct"
    assert cpu.avg_pool2d_algorithm(x.shape, (2, 2), (2, 2), (0, 0), (16, 16)) == "window2x2"
    assert cpu.avg_pool2d_algorithm(x.shape, (2, 2), (2, 2), (1, 1), (17, 17)) == "rows"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dilation,padding", [((2, 2), (1, 1)), ((2, 1), (2, 0)), ((1, 3), (0, 3))])
def test_max_pool_direct_dilation(rng, dtype, dilation, padding):
    x = _data(rng, (2, 2, 9, 10), dtype)
    out_size = _out_size((9, 10), (3, 3), (1, 2), padding, dilation)
    _check_max(x, (3, 3), (1, 2), padding, dilation, out_size, None)


@pytest.mark.parametrize("algorithm", ["window2x2", "separable", "direct"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_special_values(dtype, algorithm):
    # Ties keep the first index, NaN wins (the last NaN of the scan), all -inf picks the first.
    x = np.array([[1, 1, -np.inf, -np.inf],
                  [1, 1, -np.inf, -np.inf],
                  [np.nan, 2, 5, np.nan],
                  [3, np.nan, np.nan, 5]], dtype=dtype)[None, None]
    out, idx = cpu.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1), (2, 2), algorithm=algorithm)
    assert_close(out[0, 0], np.array([[1, -np.inf], [np.nan, np.nan]], dtype))
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [13, 14]])
    _check_max(x, (2, 2), (2, 2), (0, 0), (1, 1), (2, 2), algorithm)


@pytest.mark.boundscheck
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_size,kernel,stride,padding,ceil_mode", [
    ((3, 3), (2, 2), (2, 2), (0, 0), True),
    ((3, 4), (3, 3), (1, 1), (1, 1), False),
    ((2, 3), (2, 2), (1, 1), (1, 1), False),
    ((2, 1), (2, 1), (2, 1), (0, 0), False),
])
def test_pool_tiny_shapes(rng, dtype, in_size, kernel, stride, padding, ceil_mode):
    x = _data(rng, (1, 2) + in_size, dtype)
    out_size = _out_size(in_size, kernel, stride, padding, ceil_mode=ceil_mode)
    if min(out_size) < 1:
        pytest.skip("no output")
    for algorithm in ("direct", "separable", cpu.max_pool2d_algorithm(x, kernel, stride, padding, (1, 1), out_size)):
        _check_max(x, kernel, stride, padding, (1, 1), out_size, algorithm)
    _check_avg(x, kernel, stride, padding, out_size, True, 0, "rows")


def _check_avg(x, kernel, stride, padding, out_size, count_include_pad, divisor, algorithm):
    out = cpu.avg_pool2d_forward(x, kernel, stride, padding, out_size, count_include_pad, divisor, algorithm=algorithm)
    assert out.dtype == x.dtype
    assert_close(out, ref.avg_pool2d_forward(x, kernel, stride, padding, out_size, count_include_pad, divisor),
                 err_msg=algorithm)
    g = np.random.default_rng(6).standard_normal(out.shape).astype(x.dtype)
    grad = cpu.avg_pool2d_backward(g, x.shape[2:], kernel, stride, padding, count_include_pad, divisor,
                                   algorithm=algorithm)
    assert grad.dtype == x.dtype
    assert_close(grad, ref.avg_pool2d_backward(g, x.shape[2:], kernel, stride, padding, count_include_pad, divisor),
                 err_msg=algorithm)


AVG_CASES = [
    ((32, 32), (2, 2), (2, 2), (0, 0), False),
    ((7, 9), (2, 2), (2, 2), (0, 0), False),
    ((7, 9), (2, 2), (2, 2), (0, 0), True),
    ((6, 7), (3, 3), (1, 1), (1, 1), False),
    ((6, 7), (3, 2), (2, 1), (1, 1), True),
    ((5, 9), (4, 3), (3, 2), (2, 1), True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor", [0, 3])
@pytest.mark.parametrize("in_size,kernel,stride,padding,ceil_mode", AVG_CASES)
def test_avg_pool_algorithms_match_reference(rng, dtype, count_include_pad, divisor, in_size, kernel, stride,
                                             padding, ceil_mode):
    x = rng.standard_normal((2, 3) + in_size).astype(dtype)
    x[0, 0, 0, 0] = np.nan
    out_size = _out_size(in_size, kernel, stride, padding, ceil_mode=ceil_mode)
    for algorithm in sorted({"rows", cpu.avg_pool2d_algorithm(x.shape, kernel, stride, padding, out_size)}):
        _check_avg(x, kernel, stride, padding, out_size, count_include_pad, divisor, algorithm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_size,out_size", [((32, 32), (1, 1)), ((7, 5), (1, 1)), ((7, 5), (3, 2)), ((4, 4), (4, 4))])
def test_adaptive_pooling_match_reference(rng, dtype, in_size, out_size):
    x = _data(rng, (2, 3) + in_size, dtype, specials=False)
    assert_close(cpu.adaptive_avg_pool2d_forward(x, out_size), ref.adaptive_avg_pool2d_forward(x, out_size),
                 reduction=in_size[0] * in_size[1])
    g = rng.standard_normal((2, 3) + out_size).astype(dtype)
    assert_close(cpu.adaptive_avg_pool2d_backward(g, in_size), ref.adaptive_avg_pool2d_backward(g, in_size))
    x = _data(rng, (2, 3) + in_size, dtype)
    out, idx = cpu.adaptive_max_pool2d_forward(x, out_size)
    expected, expected_idx = ref.adaptive_max_pool2d_forward(x, out_size)
    assert_close(out, expected)
    np.testing.assert_array_equal(idx, expected_idx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_parallel_matches_serial(rng, dtype):
    """The prange kernels give the same bits with one task as with many."""
    x = _data(rng, (4, 5, 11, 12), dtype)
    flat = x.reshape(20, -1)
    results = []
    for tasks in (1, 7, 20):
        out = np.empty((20, 11 * 12), dtype)
        idx = np.empty((20, 11 * 12), np.int64)
        cpu._max_pool_separable(flat, 11, 12, 3, 3, 1, 1, 1, 1, 11, 12, out, idx, tasks)
        results.append((out, idx))
    for out, idx in results[1:]:
        np.testing.assert_array_equal(out, results[0][0])
        np.testing.assert_array_equal(idx, results[0][1])
