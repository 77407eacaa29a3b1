"""conv2d: reference against SciPy, cpu against reference and PyTorch, gradients, layouts."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

import fastml
from _compare import BACKENDS, DTYPES, DTYPES_BOUNDSCHECKED, TF, assert_close, numeric_grad, torch
from fastml.functional import grad
from fastml.shapes import conv_padding



def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def scipy_conv2d(x, weight, bias, stride=1, padding=0, dilation=1, groups=1):
    """conv2d spelled with scipy.signal.correlate2d, independently of fastml's kernels.

    The input is zero-padded explicitly, the kernel dilated by inserting zeros,
    each output channel is a sum of 'valid' correlations over its group's input
    channels, and stride slices the stride-1 result.
    """
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    k_out, c_group, kh, kw = weight.shape
    if isinstance(padding, str):
        top, bottom, left, right = {"valid": (0, 0, 0, 0)}.get(padding) or (
            dh * (kh - 1) // 2, dh * (kh - 1) - dh * (kh - 1) // 2,
            dw * (kw - 1) // 2, dw * (kw - 1) - dw * (kw - 1) // 2)
    else:
        ph, pw = _pair(padding)
        top, bottom, left, right = ph, ph, pw, pw
    x_pad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    w_dilated = np.zeros((k_out, c_group, dh * (kh - 1) + 1, dw * (kw - 1) + 1), dtype=weight.dtype)
    w_dilated[:, :, ::dh, ::dw] = weight
    k_group = k_out // groups
    planes = []
    for n in range(x.shape[0]):
        row = []
        for k in range(k_out):
            g = k // k_group
            full = sum(signal.correlate2d(x_pad[n, g * c_group + c], w_dilated[k, c], mode="valid")
                       for c in range(c_group))
            row.append(full[::sh, ::sw] + (0 if bias is None else bias[k]))
        planes.append(row)
    return np.array(planes)


# --- reference against SciPy ---------------------------------------------------------------

SCIPY_CASES = [
    # (N, C, H, W), (K, R, S), kwargs
    ((1, 1, 5, 5), (1, 3, 3), {}),
    ((2, 3, 7, 6), (4, 3, 2), {"stride": 2}),
    ((1, 2, 6, 7), (3, 2, 3), {"stride": (1, 3), "padding": (2, 1)}),
    ((2, 2, 9, 8), (2, 3, 3), {"dilation": 2, "padding": 1}),
    ((1, 3, 8, 9), (2, 2, 3), {"dilation": (3, 1), "stride": (2, 1)}),
    ((1, 4, 6, 6), (6, 3, 3), {"groups": 2, "padding": 1}),
    ((2, 6, 7, 5), (3, 1, 2), {"groups": 3, "stride": 2, "dilation": (1, 2)}),
    ((1, 4, 5, 5), (4, 3, 3), {"groups": 4}),  # depthwise
    ((1, 2, 6, 5), (2, 4, 2), {"padding": "same"}),  # even kernel: extra row/column bottom/right
    ((1, 2, 7, 6), (3, 3, 4), {"padding": "same", "dilation": 2}),
    ((1, 2, 5, 6), (3, 2, 3), {"padding": "valid"}),
]


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("x_shape,w_shape,kwargs", SCIPY_CASES)
def test_reference_matches_scipy(x_shape, w_shape, kwargs, with_bias, rng):
    groups = kwargs.get("groups", 1)
    x = rng.standard_normal(x_shape)
    weight = rng.standard_normal((w_shape[0], x_shape[1] // groups) + w_shape[1:])
    bias = rng.standard_normal(w_shape[0]) if with_bias else None
    out = fastml.F.conv2d(x, weight, bias, backend="reference", **kwargs)
    assert_close(out, scipy_conv2d(x, weight, bias, **kwargs))


@st.composite
def conv_configs(draw, max_size_extra=4):
    """A valid conv2d configuration: geometry first, then the smallest input it accepts plus a margin."""
    groups = draw(st.integers(1, 3))
    c_group, k_group = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = draw(st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding_kind = draw(st.sampled_from(["int", "pair", "valid", "same"]))
    if padding_kind == "same":
        stride = draw(st.sampled_from([1, (1, 1)]))
        padding = "same"
    else:
        stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
        padding = {"int": st.integers(0, 2), "pair": st.tuples(st.integers(0, 3), st.integers(0, 3)),
                   "valid": st.just("valid")}[padding_kind]
        padding = draw(padding)
    dh, dw = _pair(dilation)
    pads = conv_padding(padding, kernel, (dh, dw), _pair(stride))
    min_h = max(1, dh * (kernel[0] - 1) + 1 - pads[0] - pads[1])
    min_w = max(1, dw * (kernel[1] - 1) + 1 - pads[2] - pads[3])
    return dict(
        n=draw(st.integers(1, 2)), groups=groups, c_group=c_group, k_group=k_group, kernel=kernel,
        h=min_h + draw(st.integers(0, max_size_extra)), w=min_w + draw(st.integers(0, max_size_extra)),
        stride=stride, padding=padding, dilation=dilation, bias=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)), seed=draw(st.integers(0, 2**32 - 1)),
    )


def make_conv_arrays(cfg):
    rng = np.random.default_rng(cfg["seed"])
    dtype = cfg["dtype"]
    c_in, k_out = cfg["groups"] * cfg["c_group"], cfg["groups"] * cfg["k_group"]
    x = rng.standard_normal((cfg["n"], c_in, cfg["h"], cfg["w"])).astype(dtype)
    weight = rng.standard_normal((k_out, cfg["c_group"]) + cfg["kernel"]).astype(dtype)
    bias = rng.standard_normal(k_out).astype(dtype) if cfg["bias"] else None
    return x, weight, bias


def geometry(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])


@settings(max_examples=100, deadline=None)
@given(cfg=conv_configs())
def test_reference_matches_scipy_random(cfg):
    x, weight, bias = make_conv_arrays(dict(cfg, dtype=np.float64))
    out = fastml.F.conv2d(x, weight, bias, backend="reference", **geometry(cfg))
    assert_close(out, scipy_conv2d(x, weight, bias, **geometry(cfg)))


# --- cpu against reference and PyTorch, forward and every gradient ---------------------------

def _torch_conv(x, weight, bias, grad_out, cfg):
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(weight, requires_grad=True)
    tb = torch.tensor(bias, requires_grad=True) if bias is not None else None
    padding = cfg["padding"] if isinstance(cfg["padding"], str) else _pair(cfg["padding"])
    out = TF.conv2d(tx, tw, tb, _pair(cfg["stride"]), padding, _pair(cfg["dilation"]), cfg["groups"])
    out.backward(torch.tensor(grad_out))
    return (out.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(),
            tb.grad.numpy() if tb is not None else None)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@settings(max_examples=300, deadline=None)
@given(cfg=conv_configs())
def test_cpu_matches_reference_and_torch(cfg):
    x, weight, bias = make_conv_arrays(cfg)
    geo = geometry(cfg)
    dtype = np.dtype(cfg["dtype"])
    kh, kw = cfg["kernel"]
    out = fastml.F.conv2d(x, weight, bias, backend="cpu", **geo)
    expected = fastml.F.conv2d(x, weight, bias, backend="reference", **geo)
    forward_terms = cfg["c_group"] * kh * kw
    assert_close(out, expected, dtype=dtype, reduction=forward_terms, err_msg="forward vs reference")

    grad_out = np.random.default_rng(cfg["seed"] + 1).standard_normal(out.shape).astype(dtype)
    grads = grad.conv2d_backward(grad_out, x, weight, backend="cpu", **geo)
    grads_ref = grad.conv2d_backward(grad_out, x, weight, backend="reference", **geo)
    input_terms = cfg["k_group"] * kh * kw
    weight_terms = out.shape[0] * out.shape[2] * out.shape[3]
    for name, got, want, terms in zip(("input", "weight", "bias"), grads, grads_ref,
                                      (input_terms, weight_terms, weight_terms)):
        assert_close(got, want, dtype=dtype, reduction=terms, err_msg=f"grad_{name} vs reference")

    if torch is None:
        return
    t_out, t_gx, t_gw, t_gb = _torch_conv(x, weight, bias, grad_out, cfg)
    assert_close(out, t_out, dtype=dtype, reduction=forward_terms, err_msg="forward vs torch")
    assert_close(grads[0], t_gx, dtype=dtype, reduction=input_terms, err_msg="grad_input vs torch")
    assert_close(grads[1], t_gw, dtype=dtype, reduction=weight_terms, err_msg="grad_weight vs torch")
    if t_gb is not None:
        assert_close(grads[2], t_gb, dtype=dtype, reduction=weight_terms, err_msg="grad_bias vs torch")


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_output_mask(backend, rng):
    x = rng.standard_normal((2, 2, 5, 5))
    weight = rng.standard_normal((3, 2, 3, 3))
    grad_out = rng.standard_normal((2, 3, 3, 3))
    full = grad.conv2d_backward(grad_out, x, weight, backend=backend)
    for mask in [(True, False, False), (False, True, False), (False, False, True), (False, False, False)]:
        partial = grad.conv2d_backward(grad_out, x, weight, output_mask=mask, backend=backend)
        for wanted, got, want in zip(mask, partial, full):
            if wanted:
                assert_close(got, want)
            else:
                assert got is None


# --- finite differences (float64) -----------------------------------------------------------

FD_CASES = [
    ((1, 2, 4, 4), (2, 2, 2), {}),
    ((2, 2, 5, 4), (2, 2, 3), {"stride": 2, "padding": 1}),
    ((1, 2, 5, 5), (2, 2, 2), {"dilation": 2, "padding": (0, 1)}),
    ((1, 4, 4, 4), (2, 1, 2), {"groups": 2, "stride": (1, 2)}),
    ((1, 1, 4, 5), (2, 2, 2), {"padding": "same"}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_shape,w_shape,kwargs", FD_CASES)
def test_gradients_match_finite_differences(backend, x_shape, w_shape, kwargs, rng):
    groups = kwargs.get("groups", 1)
    x = rng.standard_normal(x_shape)
    weight = rng.standard_normal((w_shape[0], x_shape[1] // groups) + w_shape[1:])
    bias = rng.standard_normal(w_shape[0])
    out = fastml.F.conv2d(x, weight, bias, backend=backend, **kwargs)
    grad_out = rng.standard_normal(out.shape)

    def loss(x_, w_, b_):
        return float(np.sum(fastml.F.conv2d(x_, w_, b_, backend=backend, **kwargs) * grad_out))

    grad_x, grad_w, grad_b = grad.conv2d_backward(grad_out, x, weight, backend=backend, **kwargs)
    fd = dict(rtol=1e-6, atol=1e-7)
    assert_close(grad_x, numeric_grad(lambda v: loss(v, weight, bias), x, eps=1e-6), **fd)
    assert_close(grad_w, numeric_grad(lambda v: loss(x, v, bias), weight, eps=1e-6), **fd)
    assert_close(grad_b, numeric_grad(lambda v: loss(x, weight, v), bias, eps=1e-6), **fd)


# --- dtypes, layouts, unbatched inputs ------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES_BOUNDSCHECKED)
def test_dtype_is_preserved(backend, dtype, rng):
    x = rng.standard_normal((2, 4, 5, 6)).astype(dtype)
    weight = rng.standard_normal((4, 2, 3, 2)).astype(dtype)
    bias = rng.standard_normal(4).astype(dtype)
    kwargs = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    out = fastml.F.conv2d(x, weight, bias, backend=backend, **kwargs)
    assert out.dtype == dtype
    grads = grad.conv2d_backward(np.ones_like(out), x, weight, backend=backend, **kwargs)
    assert [g.dtype for g in grads] == [np.dtype(dtype)] * 3


@pytest.mark.boundscheck
@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_shapes(backend):
    """1x1 images, 1x1 kernels, padding bigger than the kernel: the edges of every index range."""
    x = np.arange(2 * 3, dtype=np.float32).reshape(2, 3, 1, 1) + 1
    weight = np.ones((1, 3, 1, 1), np.float32)
    assert_close(fastml.F.conv2d(x, weight, backend=backend), x.sum(axis=1, keepdims=True))
    out = fastml.F.conv2d(x, weight, padding=2, stride=2, backend=backend)
    expected = np.zeros((2, 1, 3, 3), np.float32)
    expected[:, 0, 1, 1] = x.sum(axis=(1, 2, 3))
    assert_close(out, expected)
    grad_x, grad_w, grad_b = grad.conv2d_backward(np.ones_like(out), x, weight, padding=2, stride=2, backend=backend)
    assert_close(grad_x, np.ones_like(x))
    assert_close(grad_w, x.sum(axis=0, keepdims=True).reshape(1, 3, 1, 1))
    assert_close(grad_b, np.array([18.0], np.float32))


def _non_contiguous(array, how):
    if how == "transposed":  # H and W swapped in memory
        return np.ascontiguousarray(np.swapaxes(array, -1, -2)).swapaxes(-1, -2)
    if how == "sliced":  # every other element of a larger buffer
        big = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), dtype=array.dtype)
        big[..., ::2] = array
        return big[..., ::2]
    if how == "fortran":
        return np.asfortranarray(array)
    raise ValueError(how)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["transposed", "sliced", "fortran"])
def test_non_contiguous_inputs(backend, how, rng):
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    weight = rng.standard_normal((6, 2, 3, 2)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    kwargs = dict(stride=(1, 2), padding=1, groups=2)
    xs, ws, bs = _non_contiguous(x, how), _non_contiguous(weight, how), bias[::-1].copy()[::-1]
    assert not xs.flags.c_contiguous and not ws.flags.c_contiguous
    out = fastml.F.conv2d(xs, ws, bs, backend=backend, **kwargs)
    assert_close(out, fastml.F.conv2d(x, weight, bias, backend=backend, **kwargs))
    g = rng.standard_normal(out.shape).astype(np.float32)
    got = grad.conv2d_backward(_non_contiguous(g, how), xs, ws, backend=backend, **kwargs)
    want = grad.conv2d_backward(g, x, weight, backend=backend, **kwargs)
    for a, b in zip(got, want):
        assert_close(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_unbatched_input_equals_batched(backend, dtype, rng):
    x = rng.standard_normal((3, 6, 7)).astype(dtype)
    weight = rng.standard_normal((2, 3, 3, 3)).astype(dtype)
    bias = rng.standard_normal(2).astype(dtype)
    out = fastml.F.conv2d(x, weight, bias, padding="same", backend=backend)
    assert out.shape == (2, 6, 7) and out.dtype == dtype
    assert_close(out, fastml.F.conv2d(x[None], weight, bias, padding="same", backend=backend)[0])
    g = rng.standard_normal(out.shape).astype(dtype)
    grad_x, grad_w, grad_b = grad.conv2d_backward(g, x, weight, padding="same", backend=backend)
    bx, bw, bb = grad.conv2d_backward(g[None], x[None], weight, padding="same", backend=backend)
    assert grad_x.shape == x.shape
    assert_close(grad_x, bx[0])
    assert_close(grad_w, bw)
    assert_close(grad_b, bb)


def test_python_lists_are_accepted():
    x = [[[[1.0, 2.0], [3.0, 4.0]]]]
    out = fastml.F.conv2d(x, [[[[1.0]]]], [0.5])
    assert out.dtype == np.float64
    assert_close(out, np.array(x) + 0.5)


def test_nan_and_inf_propagate():
    x = np.zeros((1, 1, 4, 4), dtype=np.float32)
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 3, 3] = np.inf
    out = fastml.F.conv2d(x, np.ones((1, 1, 2, 2), dtype=np.float32))
    assert np.isnan(out[0, 0, 0, 0]) and np.isinf(out[0, 0, 2, 2])
    assert np.isfinite(out[0, 0, 1, 1])


def test_numpy_integers_and_lists_as_hyper_parameters(rng):
    x = rng.standard_normal((1, 2, 7, 7))
    weight = rng.standard_normal((4, 1, 3, 3))
    expected = fastml.F.conv2d(x, weight, stride=2, padding=1, dilation=(1, 2), groups=2)
    got = fastml.F.conv2d(x, weight, stride=np.int64(2), padding=[np.int32(1), 1], dilation=[1, np.int64(2)],
                          groups=np.int64(2))
    assert_close(got, expected)
