"""Activations: cpu against reference and PyTorch, gradients, stability, NaN, layouts."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastml
from _compare import BACKENDS, DTYPES, DTYPES_BOUNDSCHECKED, assert_close, numeric_grad, torch
from fastml.functional import grad

F = fastml.F
ELEMENTWISE = ["relu", "sigmoid", "tanh", "identity"]
ALONG_DIM = ["softmax", "log_softmax"]
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _forward(op, x, dim, backend):
    return getattr(F, op)(x, dim, backend=backend) if op in ALONG_DIM else getattr(F, op)(x, backend=backend)


def _backward(op, g, x, out, dim, backend):
    """Each gradient takes what PyTorch's autograd saves: the input for relu, else the output."""
    if op == "identity":
        return grad.identity_backward(g, backend=backend)
    if op in ALONG_DIM:
        return getattr(grad, f"{op}_backward")(g, out, dim, backend=backend)
    return getattr(grad, f"{op}_backward")(g, x if op == "relu" else out, backend=backend)


def _torch_op(op, t, dim):
    if op == "identity":
        return t * 1
    if op in ALONG_DIM:
        return getattr(torch, op)(t, dim)
    return getattr(torch, op)(t)


@st.composite
def activation_configs(draw, op):
    ndim = draw(st.integers(1 if op in ALONG_DIM else 0, 4))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    dim = draw(st.integers(-ndim, ndim - 1)) if op in ALONG_DIM else None
    return dict(shape=shape, dim=dim, dtype=draw(st.sampled_from(DTYPES)),
                scale=draw(st.sampled_from([0.1, 1.0, 10.0, 100.0])),
                layout=draw(st.sampled_from(["contiguous", "transposed", "list"])),
                seed=draw(st.integers(0, 2**32 - 1)))


def _make_input(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x = (rng.standard_normal(cfg["shape"]) * cfg["scale"]).astype(cfg["dtype"])
    if cfg["layout"] == "transposed" and x.ndim >= 2:
        given_x = np.ascontiguousarray(x.T).T
    elif cfg["layout"] == "list" and cfg["dtype"] == np.float64:
        given_x = x.tolist()  # Python floats become float64
    else:
        given_x = x
    return x, given_x, rng


def _check_op(op, cfg):
    x, given_x, rng = _make_input(cfg)
    dtype, dim = np.dtype(cfg["dtype"]), cfg["dim"]
    terms = x.shape[dim] if dim is not None else 1
    out = _forward(op, given_x, dim, "cpu")
    assert_close(out, _forward(op, x, dim, "reference"), dtype=dtype, reduction=terms, err_msg="forward vs reference")
    g = rng.standard_normal(x.shape).astype(dtype)
    grad_x = _backward(op, g, given_x, out, dim, "cpu")
    assert_close(grad_x, _backward(op, g, x, out, dim, "reference"), dtype=dtype, reduction=terms,
                 err_msg="grad vs reference")
    if torch is None:
        return
    tx = torch.tensor(x, requires_grad=True)
    t_out = _torch_op(op, tx, dim)
    t_out.backward(torch.tensor(g))
    assert_close(out, t_out.detach().numpy(), dtype=dtype, reduction=terms, err_msg="forward vs torch")
    assert_close(grad_x, tx.grad.numpy(), dtype=dtype, reduction=terms, err_msg="grad vs torch")


# One hypothesis test per op, so each op gets its own 300 drawn configurations.

@settings(max_examples=300, deadline=None)
@given(cfg=activation_configs("relu"))
def test_relu_matches_reference_and_torch(cfg):
    _check_op("relu", cfg)


@settings(max_examples=300, deadline=None)
@given(cfg=activation_configs("sigmoid"))
def test_sigmoid_matches_reference_and_torch(cfg):
    _check_op("sigmoid", cfg)


@settings(max_examples=300, deadline=None)
@given(cfg=activation_configs("tanh"))
def test_tanh_matches_reference_and_torch(cfg):
    _check_op("tanh", cfg)


@settings(max_examples=300, deadline=None)
@given(cfg=activation_configs("identity"))
def test_identity_matches_reference_and_torch(cfg):
    _check_op("identity", cfg)


@settings(max_examples=300, deadline=None)
@given(cfg=activation_configs("softmax"))
def test_softmax_matches_reference_and_torch(cfg):
    _check_op("softmax", cfg)


@settings(max_examples=300, deadline=None)
@given(cfg=activation_configs("log_softmax"))
def test_log_softmax_matches_reference_and_torch(cfg):
    _check_op("log_softmax", cfg)


# --- finite differences (float64) -----------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op,dim", [("relu", None), ("sigmoid", None), ("tanh", None), ("identity", None),
                                    ("softmax", 1), ("softmax", 0), ("log_softmax", -1), ("log_softmax", 0)])
def test_gradient_matches_finite_differences(op, dim, backend, rng):
    x = rng.standard_normal((3, 4))
    if op == "relu":  # keep away from the kink at 0
        x = np.where(np.abs(x) < 0.1, 0.5, x)
    out = _forward(op, x, dim, backend)
    g = rng.standard_normal(x.shape)
    numeric = numeric_grad(lambda v: float(np.sum(_forward(op, v, dim, backend) * g)), x, eps=1e-6)
    assert_close(_backward(op, g, x, out, dim, backend), numeric, rtol=1e-6, atol=1e-7)


# --- dtypes, layouts, stability, NaN ---------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES_BOUNDSCHECKED)
@pytest.mark.parametrize("op", ELEMENTWISE + ALONG_DIM)
def test_dtype_is_preserved(op, backend, dtype, rng):
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    dim = 1 if op in ALONG_DIM else None
    out = _forward(op, x, dim, backend)
    assert out.dtype == dtype and out.shape == x.shape
    grad_x = _backward(op, np.ones_like(x), x, out, dim, backend)
    assert grad_x.dtype == dtype and grad_x.shape == x.shape


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ELEMENTWISE + ALONG_DIM)
def test_non_contiguous_inputs(op, backend, rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    dim = 1 if op in ALONG_DIM else None
    for view in (np.ascontiguousarray(x.transpose(2, 0, 1)).transpose(1, 2, 0), np.repeat(x, 2, axis=-1)[..., ::2]):
        assert not view.flags.c_contiguous
        out = _forward(op, view, dim, backend)
        expected = _forward(op, x, dim, backend)
        assert_close(out, expected)
        g = rng.standard_normal(x.shape).astype(np.float32)
        assert_close(_backward(op, g.T.copy().T, view, out, dim, backend), _backward(op, g, x, expected, dim, backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_any_dim_equals_last_dim(backend, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    for dim in range(-4, 4):
        moved = np.moveaxis(x, dim, -1)
        for op in ALONG_DIM:
            expected = np.moveaxis(_forward(op, np.ascontiguousarray(moved), -1, backend), -1, dim)
            assert_close(_forward(op, x, dim, backend), expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ALONG_DIM)
def test_softmax_of_a_scalar(op, backend):
    """0-D input, like torch: softmax is 1, log_softmax 0, along dim 0 or -1."""
    for dim in (0, -1):
        out = _forward(op, np.float64(3.0), dim, backend)
        assert out.shape == () and out == (1.0 if op == "softmax" else 0.0)
        assert _backward(op, np.float64(2.0), np.float64(3.0), out, dim, backend).shape == ()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES_BOUNDSCHECKED)
def test_stable_for_huge_finite_inputs(backend, dtype):
    big = FLOAT32_MAX
    x = np.array([[1e4, -1e4, 0.0], [big, 0.0, -1e4], [-big, 0.0, 1e4], [big, big, 1.0], [-big, -big, -big]], dtype)
    sig = F.sigmoid(x, backend=backend)
    assert np.isfinite(sig).all()
    assert_close(sig[0], np.array([1.0, 0.0, 0.5], dtype))
    assert_close(F.tanh(x, backend=backend)[0], np.array([1.0, -1.0, 0.0], dtype))
    sm = F.softmax(x, 1, backend=backend)
    lsm = F.log_softmax(x, 1, backend=backend)
    assert np.isfinite(sm).all() and np.isfinite(lsm).all()
    assert_close(sm.sum(axis=1), np.ones(5, dtype))
    assert_close(sm[0], np.array([1.0, 0.0, 0.0], dtype))
    assert_close(sm[3], np.array([0.5, 0.5, 0.0], dtype))
    assert_close(sm[4], np.full(3, 1 / 3, dtype))
    assert_close(lsm[:3, 0], np.array([0.0, 0.0, -big - 1e4], dtype))
    # gradients from these outputs stay finite too
    for op, out in (("sigmoid", sig), ("softmax", sm), ("log_softmax", lsm)):
        dim = 1 if op in ALONG_DIM else None
        assert np.isfinite(_backward(op, np.ones_like(x), x, out, dim, backend)).all()
    torch = pytest.importorskip("torch")
    for op, out in (("sigmoid", sig), ("softmax", sm)):
        assert_close(out, _torch_op(op, torch.tensor(x), 1).numpy(), err_msg=op)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_keeps_the_log_term_for_large_logits(backend, dtype):
    """(x - max) - log(sum): subtracting max + log(sum) in one go rounds the log term away
    once |max| dwarfs it (the log of 3 vanishes next to 1e38; 1e4 in float32 costs 1e-4)."""
    big = FLOAT32_MAX
    x = np.array([[1e4, 1e4, 1e4], [big, big, 1.0], [-big, -big, -big], [-1e4, -1e4, -1e4]], dtype)
    out = F.log_softmax(x, 1, backend=backend)
    expected = np.array([[-np.log(3)] * 3, [-np.log(2), -np.log(2), -big], [-np.log(3)] * 3, [-np.log(3)] * 3])
    assert_close(out, expected.astype(dtype))
    torch = pytest.importorskip("torch")
    assert_close(out, torch.log_softmax(torch.tensor(x), 1).numpy())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate_like_torch(backend, dtype):
    torch = pytest.importorskip("torch")
    x = np.array([[np.nan, 1.0, -2.0], [np.inf, 0.0, 1.0], [-np.inf, 0.0, 1.0], [0.5, -1.0, np.nan],
                  [np.inf, -np.inf, 0.0]], dtype)
    with np.errstate(invalid="ignore"):  # inf - inf in the reference's max subtraction
        for op in ELEMENTWISE + ALONG_DIM:
            out = _forward(op, x, 1, backend)
            assert_close(out, _torch_op(op, torch.tensor(x), 1).numpy(), err_msg=op)
        assert np.isnan(F.softmax(x, 1, backend=backend)[[0, 3]]).all()
        assert np.isnan(F.log_softmax(x, 1, backend=backend)[[0, 3]]).all()
    assert np.isnan(F.relu(x, backend=backend)[0, 0])
    for op in ("sigmoid", "tanh", "softmax", "log_softmax"):  # gradients from NaN outputs are NaN
        dim = 1 if op in ALONG_DIM else None
        out = _forward(op, x[[0]], dim, backend)
        assert np.isnan(_backward(op, np.ones_like(out), x[[0]], out, dim, backend)[0, 0]), op


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_gradient_at_nan_like_torch(backend):
    """torch's relu backward is threshold_backward(grad, result, 0) = (result <= 0 ? 0 : grad),
    so a NaN input passes its gradient through."""
    torch = pytest.importorskip("torch")
    x = np.array([np.nan, -1.0, 0.0, 2.0], np.float32)
    g = np.array([3.0, 3.0, 3.0, 3.0], np.float32)
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).backward(torch.tensor(g))
    assert_close(grad.relu_backward(g, x, backend=backend), tx.grad.numpy())


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_gradient_at_zero_is_zero(backend):
    x = np.array([-1.0, 0.0, 1.0], np.float32)
    assert_close(grad.relu_backward(np.ones_like(x), x, backend=backend), np.array([0, 0, 1], np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_identity_returns_input_values(backend, rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    out = F.identity(x, backend=backend)
    assert out.dtype == np.float32
    assert_close(out, x)
    assert_close(F.identity(x.T, backend=backend), x.T)
