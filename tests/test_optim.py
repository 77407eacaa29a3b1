"""fastml.optim optimisers and schedules, step by step against torch.optim on the same parameters and gradients."""
import numpy as np
import pytest

import fastml.nn as nn
from _compare import assert_close
from fastml import optim

try:  # torch is a test peer only: the torch comparisons skip without it, the rest still runs
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

CASES = [
    (optim.SGD, "SGD", dict(lr=0.1)),
    (optim.SGD, "SGD", dict(lr=0.05, momentum=0.9)),
    (optim.SGD, "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    (optim.SGD, "SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    (optim.Adam, "Adam", dict(lr=0.01)),
    (optim.Adam, "Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    (optim.Adam, "Adam", dict(lr=0.01, amsgrad=True)),
    (optim.AdamW, "AdamW", dict(lr=0.01)),
    (optim.AdamW, "AdamW", dict(lr=0.03, weight_decay=0.5, amsgrad=True)),
]


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_optimizer_matches_torch_step_by_step(case, dtype, rng):
    ours_cls, torch_cls, kwargs = CASES[case]
    params = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]
    torch_params = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    ours = ours_cls(params, **kwargs)
    ref = getattr(torch.optim, torch_cls)(torch_params, **kwargs)
    for _ in range(6):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        for tp, g in zip(torch_params, grads):
            tp.grad = torch.tensor(g)
        ref.step()
        ours.step(grads)
        for p, tp in zip(params, torch_params):
            assert_close(p, tp.detach().numpy(), dtype=dtype, rtol=1e-5 if dtype == np.float32 else 1e-10)


def test_optimizer_on_a_model_uses_its_grads_in_place(rng):
    model = nn.Sequential(nn.Linear(3, 2, seed=0))
    weight = model[0].weight
    before = weight.copy()
    opt = optim.SGD(model, lr=0.5)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = model(x)
    model.backward(np.ones_like(y))
    grad = model.grads["0.weight"].copy()
    opt.step()
    assert model[0].weight is weight  # updated in place
    assert_close(weight, before - 0.5 * grad)
    opt.zero_grad()
    assert not model.grads["0.weight"].any()
    opt2 = optim.Adam(model.parameters(), lr=0.1)
    opt2.step(model.grads)  # bare arrays + the grads dict in the same order
    with pytest.raises(ValueError, match="`grads` is required"):
        opt2.step()


@needs_torch
@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_schedules_match_torch(kind):
    p = torch.zeros(2, requires_grad=True)
    ref_opt = torch.optim.SGD([p], lr=0.3)
    opt = optim.SGD([np.zeros(2)], lr=0.3)
    if kind == "step":
        ref, ours = torch.optim.lr_scheduler.StepLR(ref_opt, 3, gamma=0.5), optim.StepLR(opt, 3, gamma=0.5)
    else:
        ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=10, eta_min=0.01)
        ours = optim.CosineAnnealingLR(opt, T_max=10, eta_min=0.01)
    for _ in range(10):
        assert abs(ours.get_last_lr()[0] - ref.get_last_lr()[0]) < 1e-12
        ref_opt.step()
        opt.step([np.zeros(2)])
        ref.step()
        ours.step()
        assert opt.lr == ours.get_last_lr()[0]


ERRORS = [
    (lambda: optim.SGD([np.zeros(2)], lr=-0.1), ValueError, "SGD: `lr` must be >= 0.0, got -0.1"),
    (lambda: optim.SGD([np.zeros(2)], lr="fast"), TypeError, "SGD: `lr` must be a number"),
    (lambda: optim.SGD([np.zeros(2)], lr=0.1, momentum=-1), ValueError, "SGD: `momentum` must be >= 0.0"),
    (lambda: optim.SGD([np.zeros(2)], lr=0.1, nesterov=True), ValueError, "`nesterov` needs momentum > 0"),
    (lambda: optim.Adam([np.zeros(2)], lr=-1), ValueError, "Adam: `lr` must be >= 0.0"),
    (lambda: optim.Adam([np.zeros(2)], betas=(0.9, 1.0)), ValueError, "Adam: `betas[1]` must be in [0.0, 1.0)"),
    (lambda: optim.AdamW([np.zeros(2)], eps=-1e-8), ValueError, "AdamW: `eps` must be >= 0.0"),
    (lambda: optim.Adam([]), ValueError, "Adam: `params` is empty"),
    (lambda: optim.Adam([np.zeros(2, np.int64)]), TypeError, "Adam: `params` must hold float ndarrays"),
    (lambda: optim.SGD([np.zeros(2)], lr=0.1).step([np.zeros(3)]), ValueError, "gradient 0 has shape (3,)"),
    (lambda: optim.StepLR(optim.SGD([np.zeros(2)], lr=0.1), 0), ValueError, "StepLR: `step_size` must be >= 1"),
    (lambda: optim.CosineAnnealingLR("opt", 5), TypeError, "CosineAnnealingLR: `optimizer` must be a fastml optimizer"),
]


@pytest.mark.parametrize("call, exc, phrase", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_errors(call, exc, phrase):
    with pytest.raises(exc) as info:
        call()
    assert phrase in str(info.value)


def test_optimizer_state_dict_roundtrip(rng):
    params = [rng.standard_normal(4)]
    grads = [rng.standard_normal(4)]
    a = optim.Adam(params, lr=0.1)
    a.step(grads)
    b = optim.Adam([params[0].copy()], lr=0.1)
    b.load_state_dict(a.state_dict())
    a.step(grads)
    b.step(grads)
    assert_close(b.parameters()[0], params[0])
    assert "Adam(lr=0.1" in repr(a)
