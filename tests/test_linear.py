"""linear: cpu against reference and PyTorch, gradients, leading dimensions, layouts."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastml
from _compare import BACKENDS, DTYPES, DTYPES_BOUNDSCHECKED, TF, assert_close, numeric_grad, torch
from fastml.functional import grad

F = fastml.F


@st.composite
def linear_configs(draw):
    lead = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
    return dict(lead=lead, in_features=draw(st.integers(1, 8)), out_features=draw(st.integers(1, 8)),
                bias=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)),
                transposed_weight=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=300, deadline=None)
@given(cfg=linear_configs())
def test_cpu_matches_reference_and_torch(cfg):
    rng = np.random.default_rng(cfg["seed"])
    dtype = np.dtype(cfg["dtype"])
    x = rng.standard_normal(cfg["lead"] + (cfg["in_features"],)).astype(dtype)
    weight = rng.standard_normal((cfg["out_features"], cfg["in_features"])).astype(dtype)
    bias = rng.standard_normal(cfg["out_features"]).astype(dtype) if cfg["bias"] else None
    given_weight = np.ascontiguousarray(weight.T).T if cfg["transposed_weight"] else weight
    out = F.linear(x, given_weight, bias, backend="cpu")
    assert out.shape == cfg["lead"] + (cfg["out_features"],)
    assert_close(out, F.linear(x, weight, bias, backend="reference"), dtype=dtype, reduction=cfg["in_features"])
    g = rng.standard_normal(out.shape).astype(dtype)
    grads = grad.linear_backward(g, x, given_weight, backend="cpu")
    rows = int(np.prod(cfg["lead"]))
    terms = (cfg["out_features"], rows, rows)
    for name, got, want, n in zip(("input", "weight", "bias"), grads, grad.linear_backward(g, x, weight, backend="reference"), terms):
        assert_close(got, want, dtype=dtype, reduction=n, err_msg=f"grad_{name} vs reference")
    assert grads[0].shape == x.shape and grads[1].shape == weight.shape and grads[2].shape == (cfg["out_features"],)
    if torch is None:
        return
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(weight, requires_grad=True)
    tb = torch.tensor(bias, requires_grad=True) if bias is not None else None
    t_out = TF.linear(tx, tw, tb)
    t_out.backward(torch.tensor(g))
    assert_close(out, t_out.detach().numpy(), reduction=cfg["in_features"], err_msg="forward vs torch")
    assert_close(grads[0], tx.grad.numpy(), reduction=terms[0], err_msg="grad_input vs torch")
    assert_close(grads[1], tw.grad.numpy(), reduction=terms[1], err_msg="grad_weight vs torch")
    if tb is not None:
        assert_close(grads[2], tb.grad.numpy(), reduction=terms[2], err_msg="grad_bias vs torch")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4)])
def test_gradients_match_finite_differences(backend, shape, rng):
    x = rng.standard_normal(shape)
    weight = rng.standard_normal((5, 4))
    bias = rng.standard_normal(5)
    g = rng.standard_normal(shape[:-1] + (5,))

    def loss(x_, w_, b_):
        return float(np.sum(F.linear(x_, w_, b_, backend=backend) * g))

    grad_x, grad_w, grad_b = grad.linear_backward(g, x, weight, backend=backend)
    fd = dict(rtol=1e-6, atol=1e-7)
    assert_close(grad_x, numeric_grad(lambda v: loss(v, weight, bias), x), **fd)
    assert_close(grad_w, numeric_grad(lambda v: loss(x, v, bias), weight), **fd)
    assert_close(grad_b, numeric_grad(lambda v: loss(x, weight, v), bias), **fd)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES_BOUNDSCHECKED)
def test_dtype_is_preserved(backend, dtype, rng):
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    weight = rng.standard_normal((5, 4)).astype(dtype)
    bias = rng.standard_normal(5).astype(dtype)
    out = F.linear(x, weight, bias, backend=backend)
    assert out.dtype == dtype and out.shape == (2, 3, 5)
    grads = grad.linear_backward(np.ones_like(out), x, weight, backend=backend)
    assert [gr.dtype for gr in grads] == [np.dtype(dtype)] * 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_leading_dims_equal_flattened_rows(backend, rng):
    x = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    weight = rng.standard_normal((5, 6)).astype(np.float32)
    out = F.linear(x, weight, backend=backend)
    assert_close(out.reshape(-1, 5), F.linear(x.reshape(-1, 6), weight, backend=backend))
    # a 1-D input is a single row, like torch
    assert_close(F.linear(x[0, 0, 0], weight, backend=backend), out[0, 0, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend, rng):
    x = rng.standard_normal((3, 4, 6)).astype(np.float32)
    weight = rng.standard_normal((5, 6)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    xs = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
    ws = np.ascontiguousarray(weight.T).T
    bs = np.repeat(bias, 2)[::2]
    assert not (xs.flags.c_contiguous or ws.flags.c_contiguous or bs.flags.c_contiguous)
    out = F.linear(xs, ws, bs, backend=backend)
    assert_close(out, F.linear(x, weight, bias, backend=backend))
    g = rng.standard_normal(out.shape).astype(np.float32)
    for got, want in zip(grad.linear_backward(np.asfortranarray(g), xs, ws, backend=backend),
                         grad.linear_backward(g, x, weight, backend=backend)):
        assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_output_mask(backend, rng):
    x, weight = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    g = rng.standard_normal((3, 2))
    full = grad.linear_backward(g, x, weight, backend=backend)
    partial = grad.linear_backward(g, x, weight, output_mask=(False, True, False), backend=backend)
    assert partial[0] is None and partial[2] is None
    assert_close(partial[1], full[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_does_not_modify_its_inputs(backend, rng):
    x, weight, bias = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)
    copies = [a.copy() for a in (x, weight, bias)]
    out = F.linear(x, weight, bias, backend=backend)
    out += 1  # the output must not alias the bias either
    grad.linear_backward(np.ones((3, 2)), x, weight, backend=backend)
    for before, after in zip(copies, (x, weight, bias)):
        np.testing.assert_array_equal(before, after)
