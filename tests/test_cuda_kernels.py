"""Every CUDA kernel (activation, linear, pooling, conv2d) against the reference backend, float32 and float64."""
from __future__ import annotations

import numpy as np
import pytest

from _compare import assert_close
from _cuda import DTYPES, host, random, requires_cuda

pytestmark = requires_cuda


@pytest.fixture(scope="module")
def kernels():
    from fastml.kernels.cuda import activation, conv, linear, pool
    from fastml.kernels.reference import activation as ref_activation, conv as ref_conv
    from fastml.kernels.reference import linear as ref_linear, pool as ref_pool

    return {"activation": (activation, ref_activation), "conv": (conv, ref_conv), "linear": (linear, ref_linear),
            "pool": (pool, ref_pool)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["relu", "sigmoid", "tanh"])
def test_elementwise(kernels, rng, op, dtype):
    cuda_k, ref = kernels["activation"]
    x = (random(rng, 37, dtype) * 30).astype(dtype)
    x[:4] = [np.nan, np.inf, -np.inf, 0]
    assert_close(host(getattr(cuda_k, op)(x)), getattr(ref, op)(x), dtype=dtype)
    g = random(rng, 37, dtype)
    saved = x if op == "relu" else getattr(ref, op)(x)
    assert_close(host(getattr(cuda_k, f"{op}_backward")(g, saved)), getattr(ref, f"{op}_backward")(g, saved), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_row_ops(kernels, rng, op, dtype):
    cuda_k, ref = kernels["activation"]
    x = random(rng, (3, 19), dtype) * 20
    x[1, 2] = np.nan
    assert_close(host(getattr(cuda_k, op)(x)), getattr(ref, op)(x), dtype=dtype)
    y, g = getattr(ref, op)(x[[0, 2]]), random(rng, (2, 19), dtype)
    assert_close(host(getattr(cuda_k, f"{op}_backward")(g, y)), getattr(ref, f"{op}_backward")(g, y), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(kernels, rng, dtype, with_bias):
    cuda_k, ref = kernels["linear"]
    x, w = random(rng, (5, 7), dtype), random(rng, (6, 7), dtype)
    b = random(rng, 6, dtype) if with_bias else None
    assert_close(host(cuda_k.linear_forward(x, w, b)), ref.linear_forward(x, w, b), dtype=dtype)
    g = random(rng, (5, 6), dtype)
    for got, want in zip(cuda_k.linear_backward(g, x, w), ref.linear_backward(g, x, w)):
        assert_close(host(got), want, dtype=dtype)


MAX_POOL = [((2, 2), (2, 2), (0, 0), (1, 1)), ((3, 3), (1, 2), (1, 1), (1, 1)), ((2, 2), (1, 1), (0, 0), (2, 2))]


def _pool_out(size, k, s, p, d):
    return tuple((n + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for n, kk, ss, pp, dd in zip(size, k, s, p, d))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", MAX_POOL)
def test_max_pool(kernels, rng, dtype, geometry):
    cuda_k, ref = kernels["pool"]
    x = random(rng, (2, 2, 5, 6), dtype)
    x[0, 0, 1, 1], x[1, 1, 2, 2], x[1, 0] = np.nan, -np.inf, 1.0  # NaN, -inf, ties
    out_size = _pool_out((5, 6), *geometry)
    out, idx = cuda_k.max_pool2d_forward(x, *geometry, out_size)
    ref_out, ref_idx = ref.max_pool2d_forward(x, *geometry, out_size)
    assert_close(host(out), ref_out, dtype=dtype)
    np.testing.assert_array_equal(host(idx), ref_idx)
    assert host(idx).dtype == np.int64
    g = random(rng, ref_out.shape, dtype)
    assert_close(host(cuda_k.max_pool2d_backward(g, ref_idx, (5, 6))), ref.max_pool2d_backward(g, ref_idx, (5, 6)),
                 dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 1), (1, 1))])
@pytest.mark.parametrize("count_include_pad,divisor", [(True, 0), (False, 0), (True, 5)])
def test_avg_pool(kernels, rng, dtype, geometry, count_include_pad, divisor):
    cuda_k, ref = kernels["pool"]
    x = random(rng, (2, 2, 5, 6), dtype)
    out_size = _pool_out((5, 6), *geometry, (1, 1))
    assert_close(host(cuda_k.avg_pool2d_forward(x, *geometry, out_size, count_include_pad, divisor)),
                 ref.avg_pool2d_forward(x, *geometry, out_size, count_include_pad, divisor), dtype=dtype)
    g = random(rng, (2, 2) + out_size, dtype)
    assert_close(host(cuda_k.avg_pool2d_backward(g, (5, 6), *geometry, count_include_pad, divisor)),
                 ref.avg_pool2d_backward(g, (5, 6), *geometry, count_include_pad, divisor), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_size", [(2, 4), (1, 1)])
def test_adaptive_pool(kernels, rng, dtype, out_size):
    cuda_k, ref = kernels["pool"]
    x = random(rng, (2, 2, 5, 6), dtype)
    x[0, 1, 0, 0] = np.nan
    assert_close(host(cuda_k.adaptive_avg_pool2d_forward(x, out_size)), ref.adaptive_avg_pool2d_forward(x, out_size),
                 dtype=dtype)
    out, idx = cuda_k.adaptive_max_pool2d_forward(x, out_size)
    ref_out, ref_idx = ref.adaptive_max_pool2d_forward(x, out_size)
    assert_close(host(out), ref_out, dtype=dtype)
    np.testing.assert_array_equal(host(idx), ref_idx)
    g = random(rng, (2, 2) + out_size, dtype)
    assert_close(host(cuda_k.adaptive_avg_pool2d_backward(g, (5, 6))), ref.adaptive_avg_pool2d_backward(g, (5, 6)),
                 dtype=dtype)


# (N, C, H, W, K, R, S, stride, (top, bottom, left, right), dilation, groups)
CONV = [(2, 2, 5, 6, 3, 3, 2, (1, 1), (1, 1, 0, 0), (1, 1), 1),
        (1, 4, 6, 5, 4, 2, 3, (2, 1), (0, 1, 2, 1), (1, 2), 2),
        # implicit GEMM only: three 64-column blocks (2*9*9 columns), 10 output channels per group, 27
        # taps (depth steps of 8, the last one partial)
        (2, 6, 9, 9, 20, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV, ids=["pad", "stride-dilation-groups", "blocks"])
@pytest.mark.parametrize("algorithm", ["direct", "implicit_gemm"])
def test_conv2d(kernels, rng, dtype, case, algorithm):
    cuda_k, ref = kernels["conv"]
    n, c, h, w, k, r, s, stride, pad, dilation, groups = case
    if case is CONV[2] and algorithm == "direct":
        pytest.skip("the blocks case is for the implicit GEMM (the simulator is slow)")
    x, weight, bias = random(rng, (n, c, h, w), dtype), random(rng, (k, c // groups, r, s), dtype), random(rng, k, dtype)
    out_size = (
        (h + pad[0] + pad[1] - dilation[0] * (r - 1) - 1) // stride[0] + 1,
        (w + pad[2] + pad[3] - dilation[1] * (s - 1) - 1) // stride[1] + 1,
    )
    expected = ref.conv2d_forward(x, weight, bias, stride, pad, dilation, groups, out_size)
    got = cuda_k.conv2d_forward(x, weight, bias, stride, pad, dilation, groups, out_size, algorithm=algorithm)
    assert_close(host(got), expected, dtype=dtype)
    if algorithm == "direct":  # backward has one algorithm; run it once per case
        g = random(rng, expected.shape, dtype)
        for got, want in zip(cuda_k.conv2d_backward(g, x, weight, stride, pad, dilation, groups),
                             ref.conv2d_backward(g, x, weight, stride, pad, dilation, groups)):
            assert_close(host(got), want, dtype=dtype)
