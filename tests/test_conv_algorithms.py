"""Every algorithm and fast path of the CPU conv2d kernel against the reference backend.

The CPU kernel picks its algorithm from thresholds in ``kernels/config.py``;
here each one is forced through those thresholds (monkeypatched), including
the batch tiling under a tiny workspace cap, and compared with
``kernels/reference/conv.py`` on forward and all three gradients.
"""
from __future__ import annotations

import numpy as np
import pytest
from _compare import assert_close
from fastml.kernels import config
from fastml.kernels.cpu import conv as cpu_conv
from fastml.kernels.reference import conv as ref_conv

from fastml.shapes import conv_output_size

# name -> config overrides that force it
ALGORITHMS = {
    "auto": {},
    "shifted": {"CONV_SHIFTED_MIN_CHANNELS": 1, "CONV_DIRECT_MAX_CHANNELS": 0, "CONV_TILED_MAX_CHANNELS": 0},
    "lowered": {"CONV_SHIFTED_MIN_CHANNELS": 10**9, "CONV_DIRECT_MAX_CHANNELS": 0, "CONV_TILED_MAX_CHANNELS": 0},
    "direct": {"CONV_DIRECT_MAX_CHANNELS": 10**9, "CONV_DIRECT_MAX_WORK": 10**18, "CONV_TILED_MAX_CHANNELS": 0},
    # the register-blocked tiles wherever they apply (one group, >= 6 output channels, stride 1 or output
    # rows at least one tile wide); with 4
    # "threads" the work items are chunks of output channels unless the batch has 4 images
    "tiled": {"CONV_TILED_MAX_CHANNELS": 10**9},
    "tiled-4threads": {"CONV_TILED_MAX_CHANNELS": 10**9, "threads": 4},
    # one image per tile: the workspace cap is far below one image's buffers
    "shifted-tile1": {"CONV_SHIFTED_MIN_CHANNELS": 1, "CONV_DIRECT_MAX_CHANNELS": 0, "CONV_TILED_MAX_CHANNELS": 0,
                      "CONV_WORKSPACE_BYTES": 1},
    "lowered-tile1": {"CONV_SHIFTED_MIN_CHANNELS": 10**9, "CONV_DIRECT_MAX_CHANNELS": 0, "CONV_TILED_MAX_CHANNELS": 0,
                      "CONV_WORKSPACE_BYTES": 1},
    # uneven tiles (2 images per tile over batches of 3 and 5)
    "shifted-tile2": {"CONV_SHIFTED_MIN_CHANNELS": 1, "CONV_DIRECT_MAX_CHANNELS": 0, "CONV_TILED_MAX_CHANNELS": 0,
                      "tile": 2},
    "lowered-tile2": {"CONV_SHIFTED_MIN_CHANNELS": 10**9, "CONV_DIRECT_MAX_CHANNELS": 0, "CONV_TILED_MAX_CHANNELS": 0,
                      "tile": 2},
    # the serial driver (one tile loop, BLAS's own threads) instead of prange workers
    "shifted-serial": {"CONV_SHIFTED_MIN_CHANNELS": 1, "CONV_DIRECT_MAX_CHANNELS": 0, "CONV_TILED_MAX_CHANNELS": 0,
                       "CONV_PARALLEL_MIN_IMAGES_PER_THREAD": 10**9, "threads": 1, "tile": 2},
    # a batch smaller than the thread count: the workers split the GEMM columns
    "shifted-columns": {"CONV_SHIFTED_MIN_CHANNELS": 1, "CONV_DIRECT_MAX_CHANNELS": 0, "CONV_TILED_MAX_CHANNELS": 0,
                        "CONV_PARALLEL_MIN_IMAGES_PER_THREAD": 10**9, "tile": 2},
    "lowered-serial": {"CONV_SHIFTED_MIN_CHANNELS": 10**9, "CONV_DIRECT_MAX_CHANNELS": 0, "CONV_TILED_MAX_CHANNELS": 0,
                       "CONV_PARALLEL_MIN_IMAGES_PER_THREAD": 10**9},
}

# (N, C, H, W), (K, C/groups, R, S), stride, padding (top, bottom, left, right), dilation, groups
GEOMETRIES = [
    pytest.param(((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1), id="3x3-pad1"),
    pytest.param(((3, 1, 9, 9), (5, 1, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1), id="5x5-C1-valid"),
    pytest.param(((3, 4, 9, 8), (6, 2, 3, 2), (2, 3), (1, 0, 2, 1), (1, 2), 2), id="strided-dilated-groups-asym"),
    pytest.param(((2, 6, 9, 9), (3, 2, 2, 2), (1, 1), (0, 1, 0, 1), (2, 1), 3), id="same-even-kernel-dilated"),
    pytest.param(((2, 6, 5, 5), (3, 6, 1, 1), (3, 3), (0, 0, 0, 0), (1, 1), 1), id="1x1-stride-gt-kernel"),
    pytest.param(((5, 3, 8, 8), (4, 3, 3, 3), (1, 2), (1, 1, 1, 1), (1, 1), 1), id="stride-w-only"),
    pytest.param(((2, 4, 6, 7), (4, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 4), id="depthwise-stride2"),
    pytest.param(((1, 2, 4, 4), (2, 2, 4, 4), (1, 1), (0, 0, 0, 0), (1, 1), 1), id="kernel-covers-input"),
    # 5 output channels per group, 3x3, column stride 1: the direct kernel's pair + three-channel block
    pytest.param(((2, 4, 7, 6), (10, 2, 3, 3), (2, 1), (1, 1, 0, 1), (1, 1), 2), id="odd-out-channels"),
    # stride 1, one group, >= 6 output channels: the direct path's register-blocked tiles (6 + 6 + 1
    # channels; padded-width columns not a multiple of the tile width; asymmetric padding)
    pytest.param(((3, 2, 9, 11), (13, 2, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1), id="tiled-13-out"),
    pytest.param(((2, 1, 12, 12), (8, 1, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1), id="tiled-5x5-C1"),
    pytest.param(((2, 3, 6, 5), (7, 3, 3, 2), (1, 1), (1, 0, 2, 1), (1, 1), 1), id="tiled-asym-pad"),
    # one image, 20 channels in, 14 out: the tiles share the output channels out in chunks
    pytest.param(((1, 20, 7, 9), (14, 20, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1), id="tiled-one-image"),
    # output rows at least one tile wide: tiles along the rows, stored straight into the output (float32:
    # one long tile per 24-column row, read from the unpadded input; 21 columns: a shifted last tile;
    # 56 = 24 + 16 + 16 on one image, in chunks)
    pytest.param(((2, 1, 27, 28), (9, 1, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1), id="tiled-rows-valid"),
    pytest.param(((2, 3, 6, 19), (7, 3, 3, 2), (1, 1), (1, 0, 2, 1), (1, 1), 1), id="tiled-rows-shifted"),
    pytest.param(((1, 4, 5, 56), (8, 4, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1), id="tiled-rows-one-image"),
    # strided, rows at least one tile wide: the tiles read the columns' stride phases (conv d's path).
    # 17 columns: a shifted last tile; 24 columns of stride (1, 2): a long tile (float32); stride 3
    # with a 5-wide kernel on one image, in chunks, asymmetric padding
    pytest.param(((2, 3, 33, 34), (7, 3, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1), id="tiled-rows-stride2"),
    pytest.param(((2, 2, 5, 48), (8, 2, 3, 3), (1, 2), (1, 1, 1, 1), (1, 1), 1), id="tiled-rows-stride2-long"),
    pytest.param(((1, 2, 7, 75), (13, 2, 3, 5), (2, 3), (0, 1, 2, 1), (1, 1), 1), id="tiled-rows-stride3"),
    # a padded width (35) that is no multiple of the stride: the last phase row is one column short
    pytest.param(((2, 3, 9, 33), (7, 3, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1), id="tiled-rows-stride2-odd-width"),
    # a row stride alone, unpadded (x read in place, every other row) and padded
    pytest.param(((2, 2, 9, 20), (6, 2, 3, 3), (2, 1), (0, 0, 0, 0), (1, 1), 1), id="tiled-rows-row-stride"),
    pytest.param(((2, 2, 9, 20), (6, 2, 3, 3), (2, 1), (1, 0, 1, 1), (1, 1), 1), id="tiled-rows-row-stride-pad"),
]
# the geometries above that must reach the tiled kernel with a stride (the row-wise strided tiles)
STRIDED_TILED = [g for g in GEOMETRIES if g.id.startswith("tiled-rows-") and "stride" in g.id]


def _output_size(x_shape, w_shape, stride, padding, dilation):
    return (conv_output_size(x_shape[2], w_shape[2], stride[0], padding[0] + padding[1], dilation[0]),
            conv_output_size(x_shape[3], w_shape[3], stride[1], padding[2] + padding[3], dilation[1]))


def _force(monkeypatch, algorithm, x_shape=None, stride=None, padding=None):
    for name, value in ALGORITHMS[algorithm].items():
        if name == "threads":
            monkeypatch.setattr(cpu_conv.numba, "get_num_threads", lambda value=value: value)
        elif name == "tile":
            # that many images per tile: the cache budget of exactly `value` phase planes
            hq, wq = cpu_conv._phase_geometry(x_shape, stride, padding)
            monkeypatch.setattr(config, "CONV_TILE_COLUMNS", value * hq * wq)
        else:
            monkeypatch.setattr(config, name, value)


def _check(monkeypatch, algorithm, dtype, x_shape, w_shape, stride, padding, dilation, groups, seed=0):
    _force(monkeypatch, algorithm, x_shape, stride, padding)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal(w_shape).astype(dtype)
    bias = rng.standard_normal(w_shape[0]).astype(dtype)
    out_size = _output_size(x_shape, w_shape, stride, padding, dilation)
    geometry = (stride, padding, dilation, groups)
    reduction = w_shape[1] * w_shape[2] * w_shape[3]

    out = cpu_conv.conv2d_forward(x, weight, bias, *geometry, out_size)
    assert_close(out, ref_conv.conv2d_forward(x, weight, bias, *geometry, out_size),
                 reduction=reduction, err_msg="forward")
    out_nobias = cpu_conv.conv2d_forward(x, weight, None, *geometry, out_size)
    assert_close(out_nobias, ref_conv.conv2d_forward(x, weight, None, *geometry, out_size),
                 reduction=reduction, err_msg="forward without bias")

    grad_out = rng.standard_normal(out.shape).astype(dtype)
    got = cpu_conv.conv2d_backward(grad_out, x, weight, *geometry, True, True, True)
    want = ref_conv.conv2d_backward(grad_out, x, weight, *geometry, True, True, True)
    plane = out_size[0] * out_size[1]
    reductions = (w_shape[0] // groups * w_shape[2] * w_shape[3], x_shape[0] * plane, x_shape[0] * plane)
    for name, a, b, n in zip(("grad_input", "grad_weight", "grad_bias"), got, want, reductions):
        assert_close(a, b, reduction=n, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_algorithm_matches_reference(monkeypatch, algorithm, geometry, dtype):
    _check(monkeypatch, algorithm, dtype, *geometry)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", STRIDED_TILED)
def test_strided_geometries_take_the_tiles(geometry, dtype):
    """The strided tiled geometries really run the tiles (else they would pass through another algorithm)."""
    x_shape, w_shape, stride, padding, dilation, groups = geometry
    x, weight = np.zeros(x_shape, dtype), np.zeros(w_shape, dtype)
    out_size = _output_size(x_shape, w_shape, stride, padding, dilation)
    assert stride != (1, 1)
    _, chunks = cpu_conv._tile_split(x_shape[0], w_shape[0], out_size, 32 // x.itemsize * 2)
    assert cpu_conv._use_tiled(x, weight, stride, padding, dilation, groups, out_size, chunks)


@pytest.mark.boundscheck
@pytest.mark.parametrize("algorithm", ["shifted-tile1", "lowered-tile2", "direct"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_shapes(monkeypatch, algorithm, dtype):
    """Small enough for NUMBA_BOUNDSCHECK=1; strided, dilated, grouped, asymmetric padding."""
    _check(monkeypatch, algorithm, dtype, (3, 4, 6, 5), (4, 2, 2, 3), (2, 1), (1, 0, 0, 2), (1, 2), 2)


@pytest.mark.parametrize("algorithm", ["shifted", "lowered", "direct", "shifted-serial", "lowered-serial"])
@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False), (False, False, True),
                                  (False, False, False), (True, True, False)])
def test_gradient_subsets(monkeypatch, algorithm, mask):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 7, 7)).astype(np.float32)
    weight = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    geometry = ((1, 2), (1, 1, 0, 1), (1, 1), 2)
    _force(monkeypatch, algorithm, x.shape, *geometry[:2])
    out_size = _output_size(x.shape, weight.shape, *geometry[:3])
    grad_out = rng.standard_normal((3, 6) + out_size).astype(np.float32)
    got = cpu_conv.conv2d_backward(grad_out, x, weight, *geometry, *mask)
    want = ref_conv.conv2d_backward(grad_out, x, weight, *geometry, *mask)
    for needed, a, b in zip(mask, got, want):
        if needed:
            assert_close(a, b, reduction=64)
        else:
            assert a is None


def test_workspace_is_read_at_call_time(monkeypatch):
    """A smaller cap gives smaller tiles (more of them), same numbers."""
    x = np.random.default_rng(2).standard_normal((64, 8, 10, 10)).astype(np.float32)
    weight = np.random.default_rng(3).standard_normal((8, 8, 3, 3)).astype(np.float32)
    geometry = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    monkeypatch.setattr(config, "CONV_DIRECT_MAX_CHANNELS", 0)
    _, _, big = cpu_conv._plan(x, weight, geometry[0], geometry[1], 20)
    expected = cpu_conv.conv2d_forward(x, weight, None, *geometry, (10, 10))
    monkeypatch.setattr(config, "CONV_WORKSPACE_BYTES", 20 * 144 * 4 * 3)
    _, _, small = cpu_conv._plan(x, weight, geometry[0], geometry[1], 20)
    assert small == 3 < big
    # with two workers each gets half the cap
    assert cpu_conv._plan(x, weight, geometry[0], geometry[1], 20, workers=2)[2] == 1
    assert_close(cpu_conv.conv2d_forward(x, weight, None, *geometry, (10, 10)), expected, reduction=72)


def test_large_batch_stays_under_workspace_cap(monkeypatch):
    """N=1024 tiles: the scratch of one call stays under CONV_WORKSPACE_BYTES."""
    x = np.zeros((1024, 16, 16, 16), np.float32)
    weight = np.zeros((16, 16, 3, 3), np.float32)
    monkeypatch.setattr(config, "CONV_WORKSPACE_BYTES", 4 * 1024 * 1024)
    monkeypatch.setattr(config, "CONV_TILE_COLUMNS", 10**9)
    columns = 16 + 16 + 16
    for workers in (1, 2, 4):
        hq, wq, tile = cpu_conv._plan(x, weight, (1, 1), (1, 1, 1, 1), columns, workers)
        assert 1 <= tile < 1024
        assert workers * tile * columns * hq * wq * 4 <= config.CONV_WORKSPACE_BYTES


# --- NaN / Inf: the fast paths multiply zeros (garbage columns, zero padding) by the data; the
# results must still hold exactly the reference's NaN and Inf, on every algorithm.


def _assert_same_nonfinite(actual, expected, reduction, err_msg):
    for name, mask in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        np.testing.assert_array_equal(mask(actual), mask(expected), err_msg=f"{err_msg}: {name} positions differ")
    finite = np.isfinite(expected)
    assert_close(actual[finite], expected[finite], reduction=reduction, err_msg=err_msg)


def _with_nonfinite(a, rng, fraction):
    flat = a.reshape(-1)
    idx = rng.choice(flat.size, size=min(flat.size, max(3, flat.size // fraction)), replace=False)
    flat[idx[0::3]], flat[idx[1::3]], flat[idx[2::3]] = np.nan, np.inf, -np.inf
    return a


@pytest.mark.parametrize("algorithm", ["direct", "shifted", "lowered"])
def test_nonfinite_weight_examples(monkeypatch, algorithm):
    """A NaN tap reaches grad_input only through valid outputs: grad_x[0, 2] sees w[0, 1] only."""
    _force(monkeypatch, algorithm)
    x = np.zeros((2, 1, 3, 3), np.float32)
    weight = np.ones((1, 1, 2, 2), np.float32)
    weight[0, 0, 0, 0] = np.nan
    grad_out = np.ones((2, 1, 2, 2), np.float32)
    geometry = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    grad_x, _, _ = cpu_conv.conv2d_backward(grad_out, x, weight, *geometry)
    assert grad_x[0, 0, 0, 2] == 1.0
    want = ref_conv.conv2d_backward(grad_out, x, weight, *geometry, True, True, True)[0]
    np.testing.assert_array_equal(grad_x, want)


@pytest.mark.parametrize("algorithm", ["direct", "shifted", "lowered"])
def test_nonfinite_input_examples(monkeypatch, algorithm):
    """An Inf pixel that only garbage columns (dilation holes) pair with zero gradient stays out of grad_weight."""
    _force(monkeypatch, algorithm)
    x = np.ones((2, 1, 5, 5), np.float32)
    x[0, 0, 1, 1] = np.inf
    weight = np.ones((1, 1, 2, 2), np.float32)
    grad_out = np.ones((2, 1, 3, 3), np.float32)
    geometry = ((1, 1), (0, 0, 0, 0), (2, 2), 1)
    _, grad_w, _ = cpu_conv.conv2d_backward(grad_out, x, weight, *geometry)
    assert grad_w[0, 0, 0, 1] == 18.0  # 9 per image
    want = ref_conv.conv2d_backward(grad_out, x, weight, *geometry, True, True, True)[1]
    np.testing.assert_array_equal(grad_w, want)


NONFINITE_ALGORITHMS = ["auto", "direct", "shifted", "lowered", "shifted-tile2", "shifted-serial",
                        "shifted-columns", "lowered-serial"]


@pytest.mark.parametrize("where", ["input", "weight", "grad", "all"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("algorithm", NONFINITE_ALGORITHMS)
def test_nonfinite_matches_reference(monkeypatch, algorithm, geometry, where):
    """NaN, +Inf and -Inf in the input, weight, grad_output or all three: same masks as the reference."""
    x_shape, w_shape, stride, padding, dilation, groups = geometry
    _force(monkeypatch, algorithm, x_shape, stride, padding)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape).astype(np.float32)
    weight = rng.standard_normal(w_shape).astype(np.float32)
    if where in ("input", "all"):
        x = _with_nonfinite(x, rng, 25)
    if where in ("weight", "all"):
        weight = _with_nonfinite(weight, rng, 12)
    out_size = _output_size(x_shape, w_shape, stride, padding, dilation)
    geometry = (stride, padding, dilation, groups)
    grad_out = rng.standard_normal((x_shape[0], w_shape[0]) + out_size).astype(np.float32)
    if where in ("grad", "all"):
        grad_out = _with_nonfinite(grad_out, rng, 25)
    with np.errstate(invalid="ignore", over="ignore"):
        _assert_same_nonfinite(cpu_conv.conv2d_forward(x, weight, None, *geometry, out_size),
                               ref_conv.conv2d_forward(x, weight, None, *geometry, out_size),
                               w_shape[1] * w_shape[2] * w_shape[3], "forward")
        got = cpu_conv.conv2d_backward(grad_out, x, weight, *geometry, True, True, True)
        want = ref_conv.conv2d_backward(grad_out, x, weight, *geometry, True, True, True)
    plane = out_size[0] * out_size[1]
    reductions = (w_shape[0] // groups * w_shape[2] * w_shape[3], x_shape[0] * plane, x_shape[0] * plane)
    for name, a, b, n in zip(("grad_input", "grad_weight", "grad_bias"), got, want, reductions):
        _assert_same_nonfinite(a, b, n, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows_per_call", [1, 4])
@pytest.mark.parametrize("bands", [1, 2, 3, 5])
@pytest.mark.parametrize("geometry", [((2, 3, 11, 40), (8, 3, 3, 3), (1, 1), (1, 1, 1, 1)),
                                      ((1, 4, 12, 36), (7, 4, 3, 3), (2, 2), (1, 0, 1, 1)),
                                      ((2, 2, 9, 30), (6, 2, 5, 5), (1, 1), (0, 0, 0, 0)),
                                      ((1, 3, 10, 34), (6, 3, 3, 3), (2, 1), (2, 1, 1, 0))])
def test_tiled_bands_match_reference(geometry, bands, rows_per_call, dtype):
    """_tiled_forward with each image's output rows shared out in bands (how one image is split between
    workers): each band pads just the input rows it reads, or reads the unpadded input in place; the tiles
    run one output row per call, or four (more than some bands hold)."""
    x_shape, w_shape, stride, padding = geometry
    rng = np.random.default_rng(bands)
    x, weight = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    bias = rng.standard_normal(w_shape[0]).astype(dtype)
    out_size = _output_size(x_shape, w_shape, stride, padding, (1, 1))
    assert out_size[1] >= 32 // x.itemsize * 2 and bands <= out_size[0]  # rows at least a wide tile long
    hq, wq = cpu_conv._tiled_geometry(x_shape, stride, padding)
    out = np.full((x_shape[0], w_shape[0]) + out_size, np.nan, dtype)
    cpu_conv._tiled_forward(x, weight, bias, padding[0], padding[2], *stride, hq, wq, bands, 1, rows_per_call, out)
    want = ref_conv.conv2d_forward(x, weight, bias, stride, padding, (1, 1), 1, out_size)
    assert_close(out, want, reduction=w_shape[1] * w_shape[2] * w_shape[3])
