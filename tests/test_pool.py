"""Pooling: cpu against reference and PyTorch, gradients, ties, NaN, layouts."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastml
from _compare import BACKENDS, DTYPES, DTYPES_BOUNDSCHECKED, TF, assert_close, numeric_grad, torch
from fastml.functional import grad

F = fastml.F


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _values(rng, shape, dtype, kind):
    """Random data: continuous, full of ties (small integers), or with NaNs sprinkled in."""
    x = rng.standard_normal(shape)
    if kind == "ties":
        x = np.round(x)
    elif kind == "nan":
        x[rng.random(shape) < 0.15] = np.nan
    return x.astype(dtype)


def _torch_grad(fn, x, grad_out):
    """(output(s), grad of x) from PyTorch autograd; ``fn`` maps a tensor to a tensor or (tensor, indices)."""
    tx = torch.tensor(x, requires_grad=True)
    result = fn(tx)
    out = result[0] if isinstance(result, tuple) else result
    out.backward(torch.tensor(grad_out))
    if isinstance(result, tuple):
        return out.detach().numpy(), result[1].numpy(), tx.grad.numpy()
    return out.detach().numpy(), tx.grad.numpy()


def _every_window_meets_input(size, kernel, stride, pad, dilation, ceil_mode):
    """Brute force over PyTorch's windows: does each tap at least one input element?"""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return all(any(0 <= i * stride - pad + a * dilation < size for a in range(kernel)) for i in range(out))


def _window_geometry(draw, max_kernel=3, dilation=True):
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    # PyTorch's rule: padding at most half of kernel_size
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    if padding[0] == padding[1] and draw(st.booleans()):
        padding = padding[0]
    dil = draw(st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 3), st.integers(1, 3)))) if dilation else 1
    ph, pw = _pair(padding)
    dh, dw = _pair(dil)
    h = max(1, dh * (kernel[0] - 1) + 1 - 2 * ph) + draw(st.integers(0, 4))
    w = max(1, dw * (kernel[1] - 1) + 1 - 2 * pw) + draw(st.integers(0, 4))
    kernel_size = kernel if kernel[0] != kernel[1] or draw(st.booleans()) else kernel[0]
    ceil_mode = draw(st.booleans())
    # a window of padding alone is rejected (see test_errors.py); it needs dilation and a tiny input
    strides = kernel if stride is None else _pair(stride)
    assume(all(_every_window_meets_input(*args, ceil_mode)
               for args in zip((h, w), kernel, strides, (ph, pw), (dh, dw))))
    return dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dil,
                ceil_mode=ceil_mode), (h, w)


def _common(draw):
    return dict(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)), dtype=draw(st.sampled_from(DTYPES)),
                seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def max_pool_configs(draw):
    kwargs, size = _window_geometry(draw)
    return dict(_common(draw), kwargs=kwargs, size=size, values=draw(st.sampled_from(["normal", "ties", "nan"])))


@st.composite
def avg_pool_configs(draw):
    kwargs, size = _window_geometry(draw, max_kernel=4, dilation=False)
    del kwargs["dilation"]
    kwargs["count_include_pad"] = draw(st.booleans())
    kwargs["divisor_override"] = draw(st.one_of(st.none(), st.integers(1, 5)))
    return dict(_common(draw), kwargs=kwargs, size=size, values="normal")


@st.composite
def adaptive_configs(draw):
    size = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    out_h, out_w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    form = draw(st.sampled_from(["int", "pair", "none_h", "none_w", "list"]))
    output_size = {"int": out_h, "pair": (out_h, out_w), "none_h": (None, out_w),
                   "none_w": (out_h, None), "list": [out_h, out_w]}[form]
    return dict(_common(draw), size=size, output_size=output_size,
                values=draw(st.sampled_from(["normal", "ties", "nan"])))


def _input(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x = _values(rng, (cfg["n"], cfg["c"]) + cfg["size"], cfg["dtype"], cfg["values"])
    return x, rng


def _torch_kwargs(kwargs):
    out = dict(kwargs)
    for key in ("kernel_size", "stride", "padding", "dilation"):
        if out.get(key) is not None:
            out[key] = _pair(out[key])
    return out


@settings(max_examples=300, deadline=None)
@given(cfg=max_pool_configs())
def test_max_pool2d_matches_reference_and_torch(cfg):
    x, rng = _input(cfg)
    kwargs = cfg["kwargs"]
    out, idx = F.max_pool2d(x, **kwargs, return_indices=True, backend="cpu")
    ref, ref_idx = F.max_pool2d(x, **kwargs, return_indices=True, backend="reference")
    assert_close(out, ref, dtype=cfg["dtype"])
    np.testing.assert_array_equal(idx, ref_idx)
    assert idx.dtype == np.int64
    assert_close(F.max_pool2d(x, **kwargs, backend="cpu"), out)

    grad_out = rng.standard_normal(out.shape).astype(cfg["dtype"])
    grad_x = grad.max_pool2d_backward(grad_out, x, **kwargs, backend="cpu")
    assert_close(grad_x, grad.max_pool2d_backward(grad_out, x, **kwargs, backend="reference"))
    assert_close(grad.max_pool2d_backward(grad_out, x, **kwargs, indices=idx, backend="cpu"), grad_x)

    if torch is None:
        return
    t_out, t_idx, t_grad = _torch_grad(
        lambda t: TF.max_pool2d(t, **_torch_kwargs(kwargs), return_indices=True), x, grad_out)
    assert_close(out, t_out, err_msg="forward vs torch")
    np.testing.assert_array_equal(idx, t_idx, err_msg="indices vs torch")
    assert_close(grad_x, t_grad, err_msg="grad_input vs torch")


@settings(max_examples=300, deadline=None)
@given(cfg=avg_pool_configs())
def test_avg_pool2d_matches_reference_and_torch(cfg):
    x, rng = _input(cfg)
    kwargs = cfg["kwargs"]
    kh, kw = _pair(kwargs["kernel_size"])
    out = F.avg_pool2d(x, **kwargs, backend="cpu")
    assert_close(out, F.avg_pool2d(x, **kwargs, backend="reference"), dtype=cfg["dtype"], reduction=kh * kw)
    grad_out = rng.standard_normal(out.shape).astype(cfg["dtype"])
    grad_x = grad.avg_pool2d_backward(grad_out, x, **kwargs, backend="cpu")
    assert_close(grad_x, grad.avg_pool2d_backward(grad_out, x, **kwargs, backend="reference"),
                 dtype=cfg["dtype"], reduction=kh * kw)
    if torch is None:
        return
    t_out, t_grad = _torch_grad(lambda t: TF.avg_pool2d(t, **_torch_kwargs(kwargs)), x, grad_out)
    assert_close(out, t_out, reduction=kh * kw, err_msg="forward vs torch")
    assert_close(grad_x, t_grad, reduction=kh * kw, err_msg="grad_input vs torch")


@settings(max_examples=300, deadline=None)
@given(cfg=adaptive_configs())
def test_adaptive_avg_pool2d_matches_reference_and_torch(cfg):
    x, rng = _input(cfg)
    size = cfg["output_size"]
    out = F.adaptive_avg_pool2d(x, size, backend="cpu")
    terms = x.shape[2] * x.shape[3]
    assert_close(out, F.adaptive_avg_pool2d(x, size, backend="reference"), dtype=cfg["dtype"], reduction=terms)
    grad_out = rng.standard_normal(out.shape).astype(cfg["dtype"])
    grad_x = grad.adaptive_avg_pool2d_backward(grad_out, x, backend="cpu")
    assert_close(grad_x, grad.adaptive_avg_pool2d_backward(grad_out, x, backend="reference"), reduction=terms)
    assert_close(grad.adaptive_avg_pool2d_backward(grad_out, x, size, backend="cpu"), grad_x)
    if torch is None:
        return
    t_out, t_grad = _torch_grad(lambda t: TF.adaptive_avg_pool2d(t, size), x, grad_out)
    assert_close(out, t_out, reduction=terms, err_msg="forward vs torch")
    assert_close(grad_x, t_grad, reduction=terms, err_msg="grad_input vs torch")


@settings(max_examples=300, deadline=None)
@given(cfg=adaptive_configs())
def test_adaptive_max_pool2d_matches_reference_and_torch(cfg):
    x, rng = _input(cfg)
    size = cfg["output_size"]
    out, idx = F.adaptive_max_pool2d(x, size, return_indices=True, backend="cpu")
    ref, ref_idx = F.adaptive_max_pool2d(x, size, return_indices=True, backend="reference")
    assert_close(out, ref, dtype=cfg["dtype"])
    np.testing.assert_array_equal(idx, ref_idx)
    grad_out = rng.standard_normal(out.shape).astype(cfg["dtype"])
    grad_x = grad.adaptive_max_pool2d_backward(grad_out, x, backend="cpu")
    assert_close(grad_x, grad.adaptive_max_pool2d_backward(grad_out, x, backend="reference"))
    assert_close(grad.adaptive_max_pool2d_backward(grad_out, x, size, indices=idx, backend="cpu"), grad_x)
    if torch is None:
        return
    t_out, t_idx, t_grad = _torch_grad(lambda t: TF.adaptive_max_pool2d(t, size, return_indices=True), x, grad_out)
    assert_close(out, t_out, err_msg="forward vs torch")
    np.testing.assert_array_equal(idx, t_idx, err_msg="indices vs torch")
    assert_close(grad_x, t_grad, err_msg="grad_input vs torch")


# --- finite differences (float64) -----------------------------------------------------------

def _distinct(rng, shape):
    """Values at least 0.01 apart, so eps=1e-6 never changes which element is the maximum."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 + rng.standard_normal() ).astype(np.float64)


FD_CASES = [
    ("max_pool2d", (1, 2, 5, 5), dict(kernel_size=2)),
    ("max_pool2d", (1, 1, 6, 5), dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True)),
    ("avg_pool2d", (1, 2, 5, 5), dict(kernel_size=2, stride=1)),
    ("avg_pool2d", (1, 1, 6, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("avg_pool2d", (1, 1, 5, 4), dict(kernel_size=(2, 3), padding=1, divisor_override=4)),
    ("adaptive_avg_pool2d", (1, 2, 5, 7), dict(output_size=(3, 4))),
    ("adaptive_max_pool2d", (1, 2, 5, 7), dict(output_size=(2, None))),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op,shape,kwargs", FD_CASES)
def test_gradient_matches_finite_differences(backend, op, shape, kwargs, rng):
    x = _distinct(rng, shape)
    forward = getattr(F, op)
    out = forward(x, **kwargs, backend=backend)
    grad_out = rng.standard_normal(out.shape)
    backward = getattr(grad, f"{op}_backward")
    grad_x = backward(grad_out, x, **kwargs, backend=backend)
    numeric = numeric_grad(lambda v: float(np.sum(forward(v, **kwargs, backend=backend) * grad_out)), x, eps=1e-6)
    assert_close(grad_x, numeric, rtol=1e-6, atol=1e-7)


# --- dtypes, layouts, unbatched inputs ------------------------------------------------------

ALL_OPS = [
    ("max_pool2d", dict(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)),
    ("avg_pool2d", dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), count_include_pad=False)),
    ("adaptive_avg_pool2d", dict(output_size=(3, 2))),
    ("adaptive_max_pool2d", dict(output_size=(None, 4))),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES_BOUNDSCHECKED)
@pytest.mark.parametrize("op,kwargs", ALL_OPS)
def test_dtype_is_preserved(op, kwargs, backend, dtype, rng):
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    out = getattr(F, op)(x, **kwargs, backend=backend)
    assert out.dtype == dtype
    grad_x = getattr(grad, f"{op}_backward")(np.ones_like(out), x, **kwargs, backend=backend)
    assert grad_x.dtype == dtype and grad_x.shape == x.shape


def _non_contiguous(array, how):
    if how == "transposed":
        return np.ascontiguousarray(np.swapaxes(array, -1, -2)).swapaxes(-1, -2)
    big = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), dtype=array.dtype)
    big[..., ::2] = array
    return big[..., ::2]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["transposed", "sliced"])
@pytest.mark.parametrize("op,kwargs", ALL_OPS)
def test_non_contiguous_inputs(op, kwargs, backend, how, rng):
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    xs = _non_contiguous(x, how)
    assert not xs.flags.c_contiguous
    forward, backward = getattr(F, op), getattr(grad, f"{op}_backward")
    out = forward(xs, **kwargs, backend=backend)
    assert_close(out, forward(x, **kwargs, backend=backend))
    g = rng.standard_normal(out.shape).astype(np.float32)
    assert_close(backward(_non_contiguous(g, how), xs, **kwargs, backend=backend),
                 backward(g, x, **kwargs, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op,kwargs", ALL_OPS)
def test_unbatched_input_equals_batched(op, kwargs, backend, rng):
    x = rng.standard_normal((3, 7, 6))
    forward, backward = getattr(F, op), getattr(grad, f"{op}_backward")
    out = forward(x, **kwargs, backend=backend)
    batched = forward(x[None], **kwargs, backend=backend)
    assert out.shape == batched.shape[1:]
    assert_close(out, batched[0])
    g = rng.standard_normal(out.shape)
    grad_x = backward(g, x, **kwargs, backend=backend)
    assert grad_x.shape == x.shape
    assert_close(grad_x, backward(g[None], x[None], **kwargs, backend=backend)[0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["max_pool2d", "adaptive_max_pool2d"])
def test_unbatched_indices(op, backend, rng):
    x = rng.standard_normal((2, 5, 5))
    size = dict(kernel_size=2) if op == "max_pool2d" else dict(output_size=2)
    out, idx = getattr(F, op)(x, **size, return_indices=True, backend=backend)
    b_out, b_idx = getattr(F, op)(x[None], **size, return_indices=True, backend=backend)
    assert idx.shape == out.shape == (2, 2, 2)
    np.testing.assert_array_equal(idx, b_idx[0])
    g = rng.standard_normal(out.shape)
    backward = getattr(grad, f"{op}_backward")
    assert_close(backward(g, x, **size, indices=idx, backend=backend), backward(g, x, **size, backend=backend))


# --- semantics: ties, NaN, stride default, divisor, global pooling ----------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES_BOUNDSCHECKED)
def test_max_pool_ties_pick_first_index(backend, dtype):
    x = np.ones((1, 1, 4, 4), dtype=dtype)
    out, idx = F.max_pool2d(x, 2, return_indices=True, backend=backend)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])
    g = grad.max_pool2d_backward(np.ones_like(out), x, 2, backend=backend)
    expected = np.zeros((4, 4), dtype)
    expected[::2, ::2] = 1
    assert_close(g[0, 0], expected)
    # overlapping windows (stride 1) with a plateau: each window takes its own first maximum
    x = np.array([[[[0, 5, 5], [5, 5, 0], [0, 0, 0]]]], dtype=dtype)
    _, idx = F.max_pool2d(x, 2, stride=1, return_indices=True, backend=backend)
    np.testing.assert_array_equal(idx[0, 0], [[1, 1], [3, 4]])
    _, idx = F.adaptive_max_pool2d(np.ones((1, 1, 3, 3), dtype), 1, return_indices=True, backend=backend)
    assert idx[0, 0, 0, 0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pool_nan_propagates_like_torch(backend):
    torch = pytest.importorskip("torch")
    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(1, 2, 6, 6) % 7
    x[0, 0, 0, 1] = np.nan       # NaN after a larger value in its window
    x[0, 0, 2, 2] = np.nan       # two NaNs in one window: PyTorch keeps the last
    x[0, 0, 3, 3] = np.nan
    x[0, 1, 5, 5] = np.nan       # NaN in the bottom-right corner (reached via padding windows)
    x[0, 1, 0, 0] = -np.inf
    for kwargs in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=1)):
        out, idx = F.max_pool2d(x, **kwargs, return_indices=True, backend=backend)
        t_out, t_idx = torch.nn.functional.max_pool2d(torch.tensor(x), **kwargs, return_indices=True)
        assert np.isnan(out).any()
        assert_close(out, t_out.numpy())
        np.testing.assert_array_equal(idx, t_idx.numpy())
    out, idx = F.adaptive_max_pool2d(x, (2, 3), return_indices=True, backend=backend)
    t_out, t_idx = torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), (2, 3), return_indices=True)
    assert_close(out, t_out.numpy())
    np.testing.assert_array_equal(idx, t_idx.numpy())


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_inf_propagate_in_avg_pooling(backend):
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0], x[0, 0, 3, 3] = np.nan, np.inf
    out = F.avg_pool2d(x, 2, backend=backend)
    assert np.isnan(out[0, 0, 0, 0]) and np.isposinf(out[0, 0, 1, 1]) and out[0, 0, 0, 1] == 0
    out = F.adaptive_avg_pool2d(x, 1, backend=backend)
    assert np.isnan(out[0, 0, 0, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_stride_defaults_to_kernel_size(backend, rng):
    x = rng.standard_normal((1, 2, 7, 8))
    for op in (F.max_pool2d, F.avg_pool2d):
        default = op(x, (3, 2), backend=backend)
        assert default.shape == (1, 2, 2, 4)
        assert_close(default, op(x, (3, 2), stride=(3, 2), backend=backend))
        assert_close(default, op(x, (3, 2), stride=[], backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_avg_pool_divisors(backend):
    x = np.ones((1, 1, 3, 3))
    # corner window of a 3x3/1 pad 1 pool: 4 of its 9 cells are in the input
    assert F.avg_pool2d(x, 3, 1, 1, backend=backend)[0, 0, 0, 0] == pytest.approx(4 / 9)
    assert F.avg_pool2d(x, 3, 1, 1, count_include_pad=False, backend=backend)[0, 0, 0, 0] == 1
    assert F.avg_pool2d(x, 3, 1, 1, divisor_override=2, backend=backend)[0, 0, 0, 0] == 2


@pytest.mark.boundscheck
@pytest.mark.parametrize("backend", BACKENDS)
def test_global_pooling_tiny(backend):
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    assert_close(F.adaptive_avg_pool2d(x, 1, backend=backend), np.full((1, 1, 1, 1), 2.5, np.float32))
    out, idx = F.adaptive_max_pool2d(x, 1, return_indices=True, backend=backend)
    assert out[0, 0, 0, 0] == 5 and idx[0, 0, 0, 0] == 5
    # output larger than the input: windows overlap and repeat
    assert_close(F.adaptive_avg_pool2d(x, (3, 4), backend=backend),
                 F.adaptive_avg_pool2d(x, (3, 4), backend="reference"))
    g = grad.adaptive_max_pool2d_backward(np.ones((1, 1, 3, 5), np.float32), x, backend=backend)
    assert g.sum() == 15
    one = np.ones((1, 1, 1, 1), np.float32)
    assert_close(F.max_pool2d(one, 1, backend=backend), one)
    assert_close(F.avg_pool2d(one, 1, backend=backend), one)
    assert_close(F.max_pool2d(one, 2, padding=1, backend=backend), one)
