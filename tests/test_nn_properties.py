"""Property tests (hypothesis): Conv2d -> ReLU -> MaxPool2d -> Flatten -> Linear stacks with drawn hyper-parameters
give torch's outputs and gradients after loading torch's state_dict."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastml.nn as nn
from _compare import assert_close

torch = pytest.importorskip("torch")


@st.composite
def stacks(draw):
    groups = draw(st.sampled_from([1, 2]))
    in_ch = groups * draw(st.integers(1, 2))
    out_ch = groups * draw(st.integers(1, 3))
    kernel = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 2))
    dilation = draw(st.integers(1, 2))
    padding = draw(st.integers(0, (dilation * (kernel - 1) + 1) // 2))
    pool = draw(st.integers(1, 2))
    size = draw(st.integers(dilation * (kernel - 1) + 1 + pool * stride, 9))
    return dict(groups=groups, in_ch=in_ch, out_ch=out_ch, kernel=kernel, stride=stride, dilation=dilation,
                padding=padding, pool=pool, size=size, batch=draw(st.integers(1, 3)), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_random_stack_matches_torch(case):
    rng = np.random.default_rng(case["seed"])
    conv_args = (case["in_ch"], case["out_ch"], case["kernel"])
    conv_kwargs = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
                       groups=case["groups"], bias=case["bias"])
    torch.manual_seed(case["seed"])
    x = rng.standard_normal((case["batch"], case["in_ch"], case["size"], case["size"]))
    conv_t = torch.nn.Conv2d(*conv_args, **conv_kwargs).double()
    with torch.no_grad():
        pooled = torch.nn.functional.max_pool2d(conv_t(torch.tensor(x)), case["pool"])
    features = int(np.prod(pooled.shape[1:]))
    ref = torch.nn.Sequential(conv_t, torch.nn.ReLU(), torch.nn.MaxPool2d(case["pool"]), torch.nn.Flatten(),
                              torch.nn.Linear(features, 3).double())
    ours = nn.Sequential(nn.Conv2d(*conv_args, **conv_kwargs, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(case["pool"]),
                         nn.Flatten(), nn.Linear(features, 3, dtype=np.float64))
    ours.load_state_dict(ref.state_dict())
    x_t = torch.tensor(x, requires_grad=True)
    y_t = ref(x_t)
    y = ours(x)
    assert_close(y, y_t.detach().numpy())
    g = rng.standard_normal(y.shape)
    y_t.backward(torch.tensor(g))
    assert_close(ours.backward(g), x_t.grad.numpy())
    for key, param in ref.named_parameters():
        assert_close(ours.grads[key], param.grad.numpy(), err_msg=key)
