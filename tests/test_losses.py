"""fastml.losses against PyTorch (values and autograd gradients) and finite differences, plus the error table."""
import numpy as np
import pytest

import fastml.losses as L
from _compare import assert_close, numeric_grad

try:  # torch is a test peer only: the torch comparisons skip without it, the rest still runs
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
TF = torch.nn.functional if torch is not None else None

REDUCTIONS = ["mean", "sum", "none"]


def _check(ours, theirs_fn, pred, target, reduction, dtype, target_torch=None):
    value = ours(pred, target)
    p = torch.tensor(pred, requires_grad=True)
    t = torch.tensor(target) if target_torch is None else target_torch
    expected = theirs_fn(p, t)
    if reduction == "none":
        assert_close(value, expected.detach().numpy(), dtype=dtype)
        g = np.random.default_rng(0).standard_normal(np.shape(value)).astype(dtype)
        expected.backward(torch.tensor(g))
        assert_close(ours.backward(g), p.grad.numpy(), dtype=dtype)
    else:
        assert isinstance(value, float)
        assert_close(np.asarray(value, dtype), expected.detach().numpy(), dtype=dtype, reduction=pred.size)
        expected.backward()
        grad = ours.backward()
        assert grad.dtype == dtype and grad.shape == pred.shape
        assert_close(grad, p.grad.numpy(), dtype=dtype)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses_match_torch(reduction, dtype, rng):
    pred = rng.standard_normal((4, 3)).astype(dtype)
    target = rng.standard_normal((4, 3)).astype(dtype)
    _check(L.MSELoss(reduction), lambda p, t: TF.mse_loss(p, t, reduction=reduction), pred, target, reduction, dtype)
    _check(L.MAELoss(reduction), lambda p, t: TF.l1_loss(p, t, reduction=reduction), pred, target, reduction, dtype)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_losses_match_torch(reduction, dtype, rng):
    logits = (rng.standard_normal((5, 2)) * 4).astype(dtype)
    target = rng.random((5, 2)).astype(dtype)
    target[0] = [0, 1]
    _check(L.BCEWithLogitsLoss(reduction=reduction),
           lambda p, t: TF.binary_cross_entropy_with_logits(p, t, reduction=reduction), logits, target, reduction, dtype)
    pw = np.array([2.0, 0.5], dtype)
    _check(L.BCEWithLogitsLoss(reduction=reduction, pos_weight=pw),
           lambda p, t: TF.binary_cross_entropy_with_logits(p, t, reduction=reduction, pos_weight=torch.tensor(pw)),
           logits, target, reduction, dtype)
    probs = (1 / (1 + np.exp(-logits))).astype(dtype)
    _check(L.BCELoss(reduction=reduction), lambda p, t: TF.binary_cross_entropy(p, t, reduction=reduction),
           probs, target, reduction, dtype)


def test_bce_stable_at_extremes():
    logits = np.array([-1000.0, 1000.0, 0.0], np.float32)
    loss = L.BCEWithLogitsLoss(reduction="none")
    values = loss(logits, np.array([1.0, 0.0, 1.0], np.float32))
    assert_close(values, np.array([1000.0, 1000.0, np.log(2)], np.float32))
    assert np.all(np.isfinite(loss.backward(np.ones(3, np.float32))))
    values = L.BCELoss(reduction="none")(np.array([0.0, 1.0], np.float32), np.array([1.0, 0.0], np.float32))
    assert_close(values, np.array([100.0, 100.0], np.float32))  # log clamped at -100, as torch


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_labels_match_torch(weighted, smoothing, reduction, dtype, rng):
    logits = (rng.standard_normal((6, 5)) * 3).astype(dtype)
    labels = rng.integers(0, 5, size=6)
    labels[2] = -100  # ignored
    weight = rng.random(5) + 0.5 if weighted else None
    ours = L.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=smoothing)
    tw = None if weight is None else torch.tensor(weight, dtype=torch.float32 if dtype == np.float32 else torch.float64)
    _check(ours, lambda p, t: TF.cross_entropy(p, t, weight=tw, reduction=reduction, label_smoothing=smoothing),
           logits, labels, reduction, dtype)


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_spatial_soft_and_unbatched(reduction, rng):
    logits = rng.standard_normal((3, 4, 2, 5))
    labels = rng.integers(0, 4, size=(3, 2, 5))
    _check(L.CrossEntropyLoss(reduction=reduction), lambda p, t: TF.cross_entropy(p, t, reduction=reduction),
           logits, labels, reduction, np.float64)
    soft = rng.random((3, 4))
    soft /= soft.sum(1, keepdims=True)
    _check(L.CrossEntropyLoss(reduction=reduction, label_smoothing=0.2),
           lambda p, t: TF.cross_entropy(p, t, reduction=reduction, label_smoothing=0.2), logits[:, :, 0, 0], soft,
           reduction, np.float64)
    _check(L.CrossEntropyLoss(reduction=reduction), lambda p, t: TF.cross_entropy(p, t, reduction=reduction),
           logits[0, :, 0, 0], np.array(2), reduction, np.float64)


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_from_probabilities_matches_nll_of_log(reduction, rng):
    probs = rng.random((5, 4)) + 0.05
    probs /= probs.sum(1, keepdims=True)
    labels = rng.integers(0, 4, size=5)
    _check(L.CrossEntropyLoss(reduction=reduction, from_logits=False),
           lambda p, t: TF.nll_loss(torch.log(p), t, reduction=reduction), probs, labels, reduction, np.float64)


def test_cross_entropy_stable_for_huge_logits():
    loss = L.CrossEntropyLoss()
    value = loss(np.array([[1e4, 0.0, -1e4]], np.float32), np.array([1]))
    assert np.isclose(value, 1e4) and np.all(np.isfinite(loss.backward()))


FD_CASES = [
    (lambda: L.MSELoss(), lambda r: r.standard_normal((3, 2))),
    (lambda: L.MAELoss(reduction="sum"), lambda r: r.standard_normal((3, 2))),
    (lambda: L.BCELoss(), lambda r: r.random((3, 2)) * 0.8 + 0.1),
    (lambda: L.BCEWithLogitsLoss(reduction="sum"), lambda r: r.random((3, 2))),
    (lambda: L.CrossEntropyLoss(label_smoothing=0.1), lambda r: r.integers(0, 2, size=3)),
    (lambda: L.CrossEntropyLoss(from_logits=False), lambda r: r.integers(0, 2, size=3)),
]


@pytest.mark.parametrize("case", range(len(FD_CASES)))
def test_finite_differences(case, rng):
    make, make_target = FD_CASES[case]
    loss = make()
    target = make_target(rng)
    pred = rng.random((3, 2)) * 0.8 + 0.1  # probabilities away from 0/1, logits away from MAE's kink
    loss(pred, target)
    assert_close(loss.backward(), numeric_grad(lambda p: make()(p, target), pred), rtol=1e-6, atol=1e-8)


ERRORS = [
    (lambda: L.MSELoss()(np.zeros((2, 3)), np.zeros((3, 2))), ValueError,
     "MSELoss: `target` shape (3, 2) must equal `input` shape (2, 3)"),
    (lambda: L.MSELoss(reduction="avg"), ValueError, "MSELoss: `reduction` must be one of ['mean', 'sum', 'none']"),
    (lambda: L.MAELoss()(np.zeros(3, np.int64), np.zeros(3)), TypeError, "MAELoss: `input` must have dtype float32"),
    (lambda: L.BCELoss()(np.array([1.5]), np.array([1.0])), ValueError, "BCELoss: every entry of `input` must lie in [0, 1]"),
    (lambda: L.BCELoss()(np.array([0.5]), np.array([2.0])), ValueError, "BCELoss: every entry of `target` must lie in [0, 1]"),
    (lambda: L.BCEWithLogitsLoss()(np.array([0.5]), np.array([-1.0])), ValueError, "`target` must lie in [0, 1]"),
    (lambda: L.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, 3])), ValueError,
     "CrossEntropyLoss: class labels in `target` must lie in [0, 3)"),
    (lambda: L.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, 1, 2])), ValueError, "CrossEntropyLoss: `target` shape (3,)"),
    (lambda: L.CrossEntropyLoss()(np.zeros((2, 3)), np.array(["a", "b"])), TypeError, "`target` must be integer class labels"),
    (lambda: L.CrossEntropyLoss()(np.zeros((2, 3)), np.zeros((2, 4))), ValueError, "class probabilities) shape (2, 4)"),
    (lambda: L.CrossEntropyLoss(from_logits=False)(np.full((1, 2), 2.0), np.array([0])), ValueError,
     "every entry of `input` must lie in [0, 1]"),
    (lambda: L.CrossEntropyLoss(label_smoothing=1.5), ValueError, "`label_smoothing` must be in [0, 1]"),
    (lambda: L.MSELoss().backward(), RuntimeError, "MSELoss.backward: call the loss"),
]


@pytest.mark.parametrize("call, exc, phrase", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_errors(call, exc, phrase):
    with pytest.raises(exc) as info:
        call()
    assert phrase in str(info.value)
