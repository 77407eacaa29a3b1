"""NaN and ±Inf propagate exactly as in PyTorch, forward and backward, for every op and both host backends;
extreme logits give finite softmax / log_softmax / BCE-with-logits / cross-entropy values and gradients.

Each comparison checks the NaN, +Inf and -Inf masks against torch's, then the finite values with the
shared tolerances (``assert_same_nonfinite``). The narrower NaN tests in test_activation.py,
test_pool.py and test_recurrent.py stay where they are; this module is the op-by-op sweep.
"""
from __future__ import annotations

import numpy as np
import pytest
from _compare import BACKENDS, DTYPES, assert_close

import fastml
from fastml import losses as L
from fastml import nn
from fastml.functional import grad

torch = pytest.importorskip("torch")
TF = torch.nn.functional
F = fastml.F


def assert_same_nonfinite(actual, expected, err_msg="", reduction=1):
    """Same shape, same NaN / +Inf / -Inf positions, and close finite values."""
    actual = np.asarray(actual)
    expected = expected.detach().numpy() if hasattr(expected, "detach") else np.asarray(expected)
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != {expected.shape}"
    for name, mask in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        np.testing.assert_array_equal(mask(actual), mask(expected), err_msg=f"{err_msg}: {name} positions differ")
    finite = np.isfinite(expected)
    assert_close(actual[finite], expected[finite], dtype=actual.dtype, reduction=reduction, err_msg=err_msg)


def with_nonfinite(shape, dtype, seed=0, fraction=8):
    """Standard normal data with about 1/fraction of the entries NaN, +Inf or -Inf."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    idx = rng.choice(flat.size, size=max(3, flat.size // fraction), replace=False)
    flat[idx[0::3]], flat[idx[1::3]], flat[idx[2::3]] = np.nan, np.inf, -np.inf
    return x


def finite(shape, dtype, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def leaf(array):
    return torch.tensor(array, requires_grad=True)


@pytest.fixture(autouse=True)
def _quiet_numpy():
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # inf - inf etc. are the point here
        yield


# --- conv2d ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["input", "weight"])
def test_conv2d(where, dtype, backend):
    x, w = finite((2, 4, 7, 6), dtype, 0), finite((6, 2, 3, 3), dtype, 2)
    x = with_nonfinite(x.shape, dtype, fraction=20) if where == "input" else x
    w = with_nonfinite(w.shape, dtype, fraction=10) if where == "weight" else w
    b = finite(6, dtype, 3)
    args = {"stride": (1, 2), "padding": 1, "dilation": (2, 1), "groups": 2}
    out = F.conv2d(x, w, b, **args, backend=backend)
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    t_out = TF.conv2d(tx, tw, tb, **args)
    assert_same_nonfinite(out, t_out, "conv2d", reduction=18)
    g = finite(out.shape, dtype, 4)
    t_out.backward(torch.tensor(g))
    gx, gw, gb = grad.conv2d_backward(g, x, w, **args, backend=backend)
    assert_same_nonfinite(gx, tx.grad, "grad_input", reduction=18)
    assert_same_nonfinite(gw, tw.grad, "grad_weight", reduction=2 * 7 * 6)
    assert_same_nonfinite(gb, tb.grad, "grad_bias", reduction=2 * 4 * 6)


# --- pooling ---------------------------------------------------------------------------------------
def _pool_input(dtype):
    """Ties (values mod 3), NaN (one window with two), +Inf beside NaN, -Inf, and a window of -Inf only."""
    x = (np.arange(2 * 2 * 6 * 7) % 3).astype(dtype).reshape(2, 2, 6, 7)
    x[0, 0, 0, 1] = x[0, 0, 2, 2] = x[0, 0, 3, 3] = np.nan
    x[0, 0, 2, 3] = np.inf
    x[0, 1, 5, 6] = np.nan
    x[1, 0, 1, 1] = x[1, 1, 4, 0] = np.inf
    x[1, 0, :2, 4:6] = -np.inf
    x[1, 1, 0, 0] = -np.inf
    return x


MAX_CONFIGS = [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
               {"kernel_size": 2, "stride": 1, "dilation": 2}, {"kernel_size": (3, 2), "stride": (2, 1), "ceil_mode": True}]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", MAX_CONFIGS, ids=str)
def test_max_pool2d_nan_inf_and_ties(config, dtype, backend):
    x = _pool_input(dtype)
    out, idx = F.max_pool2d(x, **config, return_indices=True, backend=backend)
    tx = leaf(x)
    t_out, t_idx = TF.max_pool2d(tx, **config, return_indices=True)
    assert_same_nonfinite(out, t_out, "max_pool2d")
    np.testing.assert_array_equal(idx, t_idx.numpy())
    g = finite(out.shape, dtype)
    t_out.backward(torch.tensor(g))
    gx = grad.max_pool2d_backward(g, x, **config, indices=idx, backend=backend)
    assert_same_nonfinite(gx, tx.grad, "max_pool2d_backward", reduction=4)
    gx = grad.max_pool2d_backward(g, x, **config, backend=backend)  # indices recomputed
    assert_same_nonfinite(gx, tx.grad, "max_pool2d_backward (no indices)", reduction=4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_size", [1, (2, 3), (4, 5)], ids=str)
def test_adaptive_max_pool2d(output_size, dtype, backend):
    x = _pool_input(dtype)
    out, idx = F.adaptive_max_pool2d(x, output_size, return_indices=True, backend=backend)
    tx = leaf(x)
    t_out, t_idx = TF.adaptive_max_pool2d(tx, output_size, return_indices=True)
    assert_same_nonfinite(out, t_out, "adaptive_max_pool2d")
    np.testing.assert_array_equal(idx, t_idx.numpy())
    g = finite(out.shape, dtype)
    t_out.backward(torch.tensor(g))
    assert_same_nonfinite(grad.adaptive_max_pool2d_backward(g, x, output_size, indices=idx, backend=backend),
                          tx.grad, "adaptive_max_pool2d_backward", reduction=4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
                                    {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False,
                                         "ceil_mode": True}], ids=str)
def test_avg_pool2d(config, dtype, backend):
    x = with_nonfinite((2, 3, 6, 7), dtype, fraction=12)
    tx = leaf(x)
    t_out = TF.avg_pool2d(tx, **config)
    out = F.avg_pool2d(x, **config, backend=backend)
    assert_same_nonfinite(out, t_out, "avg_pool2d", reduction=9)
    g = with_nonfinite(out.shape, dtype, seed=5, fraction=6)  # non-finite upstream gradients spread too
    t_out.backward(torch.tensor(g))
    assert_same_nonfinite(grad.avg_pool2d_backward(g, x, **config, backend=backend), tx.grad,
                          "avg_pool2d_backward", reduction=9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_size", [1, (2, 3), (4, 5)], ids=str)
def test_adaptive_avg_pool2d(output_size, dtype, backend):
    x = with_nonfinite((2, 3, 6, 7), dtype, fraction=12)
    tx = leaf(x)
    t_out = TF.adaptive_avg_pool2d(tx, output_size)
    out = F.adaptive_avg_pool2d(x, output_size, backend=backend)
    assert_same_nonfinite(out, t_out, "adaptive_avg_pool2d", reduction=42)
    g = with_nonfinite(out.shape, dtype, seed=5, fraction=3)
    t_out.backward(torch.tensor(g))
    assert_same_nonfinite(grad.adaptive_avg_pool2d_backward(g, x, output_size, backend=backend), tx.grad,
                          "adaptive_avg_pool2d_backward", reduction=4)


# --- linear and activations ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["input", "weight"])
def test_linear(where, dtype, backend):
    x, w, b = finite((5, 6), dtype, 0), finite((4, 6), dtype, 2), finite(4, dtype, 3)
    x = with_nonfinite(x.shape, dtype, fraction=10) if where == "input" else x
    w = with_nonfinite(w.shape, dtype, fraction=8) if where == "weight" else w
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    t_out = TF.linear(tx, tw, tb)
    out = F.linear(x, w, b, backend=backend)
    assert_same_nonfinite(out, t_out, "linear", reduction=6)
    g = finite(out.shape, dtype, 4)
    t_out.backward(torch.tensor(g))
    gx, gw, gb = grad.linear_backward(g, x, w, backend=backend)
    assert_same_nonfinite(gx, tx.grad, "grad_input", reduction=4)
    assert_same_nonfinite(gw, tw.grad, "grad_weight", reduction=5)
    assert_same_nonfinite(gb, tb.grad, "grad_bias", reduction=5)


def _activation(name, x, dim, backend):
    op = getattr(F, name)
    return op(x, dim, backend=backend) if dim is not None else op(x, backend=backend)


def _activation_backward(name, g, x, out, dim, backend):
    fn = getattr(grad, f"{name}_backward")
    if name == "identity":
        return fn(g, backend=backend)
    if name == "relu":
        return fn(g, x, backend=backend)
    return fn(g, out, dim, backend=backend) if dim is not None else fn(g, out, backend=backend)


TORCH_ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                     "softmax": torch.softmax, "log_softmax": torch.log_softmax, "identity": lambda t: t * 1}
ROWS = np.array([[np.nan, 1.0, -2.0, 0.5], [np.inf, 0.0, 1.0, -1.0], [-np.inf, 0.0, 1.0, 2.0],
                 [np.inf, -np.inf, 0.0, 1.0], [np.inf, np.inf, 1.0, 0.0], [-np.inf, -np.inf, -np.inf, -np.inf],
                 [0.5, -1.0, np.nan, np.inf], [1.0, 2.0, 3.0, 4.0]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(TORCH_ACTIVATIONS))
@pytest.mark.parametrize("dim", [1, 0])
def test_activations(dim, name, dtype, backend):
    along = name in ("softmax", "log_softmax")
    if not along and dim == 0:
        pytest.skip("elementwise: one layout is enough")
    x = ROWS.astype(dtype)
    tx = leaf(x)
    t_out = TORCH_ACTIVATIONS[name](tx, dim) if along else TORCH_ACTIVATIONS[name](tx)
    out = _activation(name, x, dim if along else None, backend)
    assert_same_nonfinite(out, t_out, name)
    g = finite(x.shape, dtype)
    t_out.backward(torch.tensor(g))
    got = _activation_backward(name, g, x, out, dim if along else None, backend)
    assert_same_nonfinite(got, tx.grad, f"{name}_backward")


# --- recurrent layers --------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_recurrent(value, kind, dtype, backend):
    torch.manual_seed(0)
    t_layer = getattr(torch.nn, kind)(3, 4, num_layers=2, bidirectional=True).to(getattr(torch, np.dtype(dtype).name))
    layer = getattr(nn, kind)(3, 4, num_layers=2, bidirectional=True, dtype=dtype).to(backend)
    layer.load_state_dict(t_layer.state_dict())
    x = finite((5, 3, 3), dtype)
    x[2, 0, 1] = value   # one sequence hit mid-way: both directions carry it on
    x[4, 2, 0] = value   # another at its last step
    tx = leaf(x)
    t_out, t_state = t_layer(tx)
    out, state = layer(x)
    assert_same_nonfinite(out, t_out, f"{kind} output")
    t_h = t_state[0] if kind == "LSTM" else t_state
    h = state[0] if kind == "LSTM" else state
    assert_same_nonfinite(h, t_h, f"{kind} h_n")
    if kind == "LSTM":
        assert_same_nonfinite(state[1], t_state[1], "LSTM c_n")
    g = finite(out.shape, dtype, 4)
    t_out.backward(torch.tensor(g))
    assert_same_nonfinite(layer.backward(g), tx.grad, f"{kind} grad_input", reduction=20)
    for key, t_param in t_layer.named_parameters():
        assert_same_nonfinite(layer.grads[key], t_param.grad, f"{kind} grad {key}", reduction=20)


# --- losses ------------------------------------------------------------------------------------------
def _loss_pair(name, dtype):
    """(fastml loss, torch loss, pred, target) with NaN and ±Inf where each loss accepts them."""
    rng = np.random.default_rng(0)
    if name == "CrossEntropyLoss":
        pred = ROWS.astype(dtype)
        target = rng.integers(0, 4, len(pred))
        return L.CrossEntropyLoss(reduction="none"), torch.nn.CrossEntropyLoss(reduction="none"), pred, target
    pred = with_nonfinite((4, 6), dtype, fraction=6)
    target = rng.uniform(0, 1, pred.shape).astype(dtype)
    if name == "BCELoss":  # torch refuses NaN in BCELoss: the extremes 0 and 1 only (log clamped at -100)
        pred = rng.uniform(0, 1, pred.shape).astype(dtype)
        pred[0, :2], target[0, :2] = [0.0, 1.0], [0.0, 1.0]
        pred[1, :2], target[1, :2] = [0.0, 1.0], [1.0, 0.0]
    peer = {"MAELoss": torch.nn.L1Loss, "MSELoss": torch.nn.MSELoss, "BCELoss": torch.nn.BCELoss,
            "BCEWithLogitsLoss": torch.nn.BCEWithLogitsLoss}[name]
    return getattr(L, name)(reduction="none"), peer(reduction="none"), pred, target


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["MAELoss", "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss"])
def test_losses(name, dtype):
    loss, t_loss, pred, target = _loss_pair(name, dtype)
    values = loss(pred, target)
    tp = leaf(pred)
    t_values = t_loss(tp, torch.tensor(target))
    assert_same_nonfinite(values, t_values, name)
    g = finite(np.shape(values), dtype)
    t_values.backward(torch.tensor(g))
    assert_same_nonfinite(loss.backward(g), tp.grad, f"{name}.backward")


@pytest.mark.parametrize("name", ["MAELoss", "MSELoss", "BCELoss", "BCEWithLogitsLoss"])
def test_nan_prediction_gives_nan_loss(name):
    """fastml's contract beyond torch's BCELoss (which raises): a NaN prediction is data and gives NaN."""
    pred = np.array([0.25, np.nan, 0.75], np.float32)
    loss = getattr(L, name)(reduction="none")
    values = loss(pred, np.array([0.0, 1.0, 1.0], np.float32))
    np.testing.assert_array_equal(np.isnan(values), [False, True, False])
    if name != "MAELoss":  # torch's L1 gradient at NaN is sign(NaN) = 0 (test_losses checks that)
        np.testing.assert_array_equal(np.isnan(loss.backward(np.ones(3, np.float32))), [False, True, False])


# --- extreme logits ------------------------------------------------------------------------------------
def _extreme_rows(dtype):
    big = float(np.finfo(np.float32).max) * 0.9 if dtype == np.float32 else 1e308   # ±3e38 / ±1e308
    return np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [big, big, 1.0], [-big, -big, -big],
                     [big, -big, 0.0], [big, 0.0, -1e4], [-big, 1.0, 2.0]], dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_extreme_logits_softmax(name, dtype, backend):
    x = _extreme_rows(dtype)
    out = _activation(name, x, 1, backend)
    tx = leaf(x)
    t_out = TORCH_ACTIVATIONS[name](tx, 1)
    assert_same_nonfinite(out, t_out, name)
    if name == "softmax":
        assert np.isfinite(out).all()
    else:  # finite wherever the exact x - logsumexp(x) is representable (not big - (-big))
        assert np.isfinite(out[[0, 1, 2, 3, 5, 6]]).all()
    g = finite(x.shape, dtype)
    t_out.backward(torch.tensor(g))
    got = _activation_backward(name, g, x, out, 1, backend)
    assert np.isfinite(got).all()
    assert_same_nonfinite(got, tx.grad, f"{name}_backward")


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_logits_bce_with_logits(dtype):
    x = _extreme_rows(dtype)
    target = np.tile(np.array([0.0, 1.0, 0.5], dtype), (len(x), 1))
    loss = L.BCEWithLogitsLoss(reduction="none")
    values = loss(x, target)
    tx = leaf(x)
    t_values = torch.nn.BCEWithLogitsLoss(reduction="none")(tx, torch.tensor(target))
    assert np.isfinite(values).all()
    assert_same_nonfinite(values, t_values, "BCEWithLogitsLoss")
    g = np.ones_like(values)
    t_values.backward(torch.tensor(g))
    got = loss.backward(g)
    assert np.isfinite(got).all()
    assert_same_nonfinite(got, tx.grad, "BCEWithLogitsLoss.backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("labels", [[0, 1, 2, 0, 2, 0, 2], [0, 0, 0, 1, 2, 1, 0]], ids=["low-loss", "high-loss"])
def test_extreme_logits_cross_entropy(labels, dtype):
    x = _extreme_rows(dtype)
    target = np.array(labels)
    loss = L.CrossEntropyLoss(reduction="none")
    values = loss(x, target)
    tx = leaf(x)
    t_values = torch.nn.CrossEntropyLoss(reduction="none")(tx, torch.tensor(target))
    assert_same_nonfinite(values, t_values, "CrossEntropyLoss")
    representable = np.isfinite(t_values.detach().numpy())   # -log p overflows only for big - (-big)
    assert representable.sum() >= len(labels) - 2 and np.isfinite(values[representable]).all()
    g = np.ones_like(values)
    t_values.backward(torch.tensor(g))
    got = loss.backward(g)
    assert np.isfinite(got).all()
    assert_same_nonfinite(got, tx.grad, "CrossEntropyLoss.backward")
