"""Recurrent layers' surface: the error table, the Module base (state dicts, modes, backend), clip_grad_norm_."""
import numpy as np
import pytest

import fastml
import fastml.nn as nn
from _compare import assert_close
from fastml.optim import clip_grad_norm_

F = fastml.F
X = np.zeros((4, 2, 3), np.float32)


def _w(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


ERRORS = [
    # (call, exception, phrase in the message)
    (lambda: nn.RNN(3, 0), ValueError, "RNN: `hidden_size` must be >= 1"),
    (lambda: nn.LSTM(3, 4, num_layers=0), ValueError, "LSTM: `num_layers` must be >= 1"),
    (lambda: nn.GRU(0, 4), ValueError, "GRU: `input_size` must be >= 1"),
    (lambda: nn.RNN(3, 4.0), TypeError, "`hidden_size` must be an int"),
    (lambda: nn.RNN(3, 4, nonlinearity="sigmoid"), ValueError, "`nonlinearity` must be one of ['tanh', 'relu']"),
    (lambda: nn.LSTM(3, 4, dropout=1.5), ValueError, "`dropout` must be in [0, 1]"),
    (lambda: nn.GRU(3, 4, bidirectional="yes"), TypeError, "`bidirectional` must be a bool"),
    (lambda: nn.GRU(3, 4, dtype=np.int32), TypeError, "`dtype` must be float32 or float64"),
    (lambda: nn.RNN(5, 4)(X), ValueError, "RNN.forward: last dimension of `input` (=3) must equal `input_size` (=5)"),
    (lambda: nn.RNN(3, 4)(X.astype(np.int64)), TypeError, "RNN.forward: `input` must have dtype float32 or float64"),
    (lambda: nn.RNN(3, 4)(X.astype(np.float64)), TypeError, "`weight_ih_l0` dtype (float32) must equal `input` dtype"),
    (lambda: nn.RNN(3, 4)(np.zeros((0, 2, 3), np.float32)), ValueError, "sequence length T must be >= 1"),
    (lambda: nn.RNN(3, 4, batch_first=True)(np.zeros((2, 0, 3), np.float32)), ValueError, "sequence length T"),
    (lambda: nn.RNN(3, 4)(np.zeros(3, np.float32)), ValueError, "`input` must be 2-D (T, input_size) or 3-D"),
    (lambda: nn.RNN(3, 4)(X, np.zeros((2, 2, 4), np.float32)), ValueError, "`h0` must have shape (1, 2, 4)"),
    (lambda: nn.GRU(3, 4, bidirectional=True)(X, np.zeros((1, 2, 4), np.float32)), ValueError,
     "`h0` must have shape (2, 2, 4)"),
    (lambda: nn.LSTM(3, 4)(X, (np.zeros((1, 2, 4), np.float32), np.zeros((1, 3, 4), np.float32))), ValueError,
     "LSTM.forward: `c0` must have shape (1, 2, 4)"),
    (lambda: nn.LSTM(3, 4)(X, np.zeros((1, 2, 4), np.float32)), TypeError, "`hx` must be a pair (h, c)"),
    (lambda: nn.RNN(3, 4)(X, np.zeros((1, 2, 4), np.float64)), TypeError, "`h0` dtype (float64) must equal"),
    (lambda: nn.RNN(3, 4)(X, lengths=[4, 5]), ValueError, "`lengths` must be at most the sequence length T (=4)"),
    (lambda: nn.RNN(3, 4)(X, lengths=[4]), ValueError, "`lengths` must have shape (2,)"),
    (lambda: nn.RNN(3, 4)(X, lengths=[4, 0]), ValueError, "`lengths` must be positive"),
    (lambda: nn.RNN(3, 4)(X, lengths=[4.0, 2.0]), TypeError, "`lengths` must be integers"),
    (lambda: nn.RNN(3, 4).backward(np.zeros((4, 2, 4), np.float32)), RuntimeError, "RNN.backward: no forward cache"),
    (lambda: _forward_then(nn.RNN(3, 4), lambda m: m.backward(np.zeros((4, 2, 5), np.float32))), ValueError,
     "RNN.backward: `grad_output` must have shape (4, 2, 4)"),
    (lambda: _forward_then(nn.LSTM(3, 4), lambda m: m.backward(np.zeros((4, 2, 4), np.float32),
                                                               np.zeros((1, 2, 3), np.float32))),
     ValueError, "`grad_h_n` must have shape (1, 2, 4)"),
    (lambda: _forward_then(nn.GRU(3, 4), lambda m: m.backward(np.zeros((4, 2, 4), np.float32), bptt_steps=0)),
     ValueError, "`bptt_steps` must be >= 1"),
    (lambda: nn.RNN(3, 4).to("gpu"), ValueError, "`backend` must be one of"),
    (lambda: F.rnn_cell(np.zeros((2, 3)), np.zeros((2, 4)), _w(4, 3, dtype=float), _w(4, 4, dtype=float),
                        nonlinearity="gelu"), ValueError, "rnn_cell: `nonlinearity` must be one of"),
    (lambda: F.lstm_cell(np.zeros((2, 3)), (np.zeros((2, 4)), np.zeros((2, 4))), _w(12, 3, dtype=float),
                         _w(12, 4, dtype=float)), ValueError, "lstm_cell: `weight_ih` must have shape (16, 3)"),
    (lambda: F.gru_cell(np.zeros((2, 3)), np.zeros((2, 5)), _w(12, 3, dtype=float), _w(12, 4, dtype=float)),
     ValueError, "gru_cell: `hx` must have shape (2, 4)"),
    (lambda: F.gru_cell(np.zeros((2, 3), np.int32), None, _w(12, 3), _w(12, 4)), TypeError,
     "gru_cell: `input` must have dtype float32 or float64"),
    (lambda: F.gru_cell(np.zeros((2, 3), np.float32), None, _w(12, 3), _w(12, 4), _w(12)), ValueError,
     "`bias_ih` and `bias_hh` must both be given or both be None"),
    (lambda: F.rnn_cell(np.zeros((2, 3), np.float32), None, _w(4, 3), _w(4, 4, dtype=float)), TypeError,
     "rnn_cell: `weight_hh` dtype (float64) must equal `input` dtype (float32)"),
]


def _forward_then(module, then):
    module(X)
    return then(module)


@pytest.mark.parametrize("call,error,phrase", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_error_table(call, error, phrase):
    with pytest.raises(error) as info:
        call()
    assert phrase in str(info.value)


# --- Module base ----------------------------------------------------------------------------------
def test_parameter_names_and_shapes_match_torch():
    torch = pytest.importorskip("torch")
    for layer, twin in [(nn.LSTM(3, 4, num_layers=2, bidirectional=True), torch.nn.LSTM(3, 4, 2, bidirectional=True)),
                        (nn.GRU(3, 5, bias=False), torch.nn.GRU(3, 5, bias=False)),
                        (nn.RNN(2, 3, num_layers=3), torch.nn.RNN(2, 3, num_layers=3))]:
        expected = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
        assert list(layer.params) == list(expected)
        assert {k: v.shape for k, v in layer.params.items()} == expected
        assert list(layer.grads) == list(expected)
        assert repr(layer) == repr(twin)


def test_default_init_is_uniform_and_seeded():
    a = nn.GRU(3, 16, seed=0)
    b = nn.GRU(3, 16, seed=0)
    c = nn.GRU(3, 16, seed=np.random.default_rng(0))
    for key in a.params:
        assert_close(a.params[key], b.params[key])
        assert_close(a.params[key], c.params[key])
        assert np.abs(a.params[key]).max() <= 1 / np.sqrt(16)
        assert a.params[key].dtype == np.float32
    assert np.abs(nn.GRU(3, 16, seed=1).params["weight_hh_l0"] - a.params["weight_hh_l0"]).max() > 0


def test_load_state_dict_accepts_numpy_and_torch_and_reports_problems():
    torch = pytest.importorskip("torch")
    layer = nn.LSTM(3, 4, seed=0)
    twin = torch.nn.LSTM(3, 4)
    layer.load_state_dict(twin.state_dict())
    assert_close(layer.params["weight_hh_l0"], twin.weight_hh_l0.detach().numpy())
    before = layer.state_dict()

    bad = {k: v.numpy().astype(np.float64) for k, v in twin.state_dict().items()}
    bad.pop("bias_hh_l0")
    bad["weight_ih_l0"] = np.zeros((16, 5))
    bad["extra.weight"] = np.zeros(3)
    bad["weight_hh_l0"] = bad["weight_hh_l0"] + 1
    with pytest.raises(ValueError) as info:
        layer.load_state_dict(bad)
    message = str(info.value)
    assert "Missing key(s) in state_dict: 'bias_hh_l0'" in message
    assert "Unexpected key(s) in state_dict: 'extra.weight'" in message
    assert "size mismatch for weight_ih_l0" in message
    for key, value in layer.state_dict().items():  # nothing changed
        assert_close(value, before[key])

    del bad["weight_ih_l0"]
    with pytest.raises(ValueError):
        layer.load_state_dict(bad)  # still missing keys under strict
    result = layer.load_state_dict(bad, strict=False)
    assert result.missing_keys == ["weight_ih_l0", "bias_hh_l0"]
    assert result.unexpected_keys == ["extra.weight"]
    assert layer.params["weight_hh_l0"].dtype == np.float32  # cast to the parameter's dtype
    assert_close(layer.params["weight_hh_l0"], before["weight_hh_l0"] + 1)


class _Stack(nn.Module):
    """A two-layer model written against the Module base: nested modules get dotted keys."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.GRU(3, 4, seed=0)
        self.decoder = nn.LSTM(4, 2, seed=1)

    def forward(self, x):
        hidden, _ = self.encoder(x)
        out, _ = self.decoder(hidden)
        return out

    def backward(self, grad):
        return self.encoder.backward(self.decoder.backward(grad))


def test_nested_modules_state_dict_and_backend():
    model = _Stack()
    keys = list(model.params)
    assert keys[:2] == ["encoder.weight_ih_l0", "encoder.weight_hh_l0"]
    assert "decoder.bias_hh_l0" in keys and len(keys) == 8
    state = model.state_dict()
    state["decoder.bias_hh_l0"] = state["decoder.bias_hh_l0"] + 1
    model.load_state_dict(state)
    assert_close(model.decoder.params["bias_hh_l0"], state["decoder.bias_hh_l0"])
    model.params["encoder.bias_ih_l0"] = np.full(12, 0.5)
    assert model.encoder.params["bias_ih_l0"].dtype == np.float32
    with pytest.raises(ValueError, match="must have shape"):
        model.params["encoder.bias_ih_l0"] = np.zeros(3)
    assert len(list(model.parameters())) == 8
    assert repr(model).startswith("_Stack(\n  (encoder): GRU(3, 4)\n  (decoder): LSTM(4, 2)")

    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    out_cpu = model(x)
    grad_cpu = model.backward(np.ones_like(out_cpu))
    grads_cpu = {k: v.copy() for k, v in model.grads.items()}
    model.zero_grad()
    model.to("reference")
    assert model.encoder.backend == "reference"
    out_ref = model(x)
    assert_close(out_cpu, out_ref)
    assert_close(grad_cpu, model.backward(np.ones_like(out_ref)), reduction=10)
    for key, value in model.grads.items():
        assert_close(value, grads_cpu[key], reduction=10, err_msg=key)


def test_cache_kept_only_in_train_mode_with_grad():
    layer = nn.RNN(3, 4)
    with fastml.no_grad():
        layer(X)
    with pytest.raises(RuntimeError, match="no forward cache"):
        layer.backward(np.zeros((4, 2, 4), np.float32))
    layer.eval()
    assert not layer.training and not layer.keeps_cache
    layer(X)
    with pytest.raises(RuntimeError, match="no forward cache"):
        layer.backward(np.zeros((4, 2, 4), np.float32))
    layer.train()
    layer(X)
    assert layer.backward(np.zeros((4, 2, 4), np.float32)).shape == X.shape


# --- clip_grad_norm_ --------------------------------------------------------------------------------
@pytest.mark.parametrize("max_norm,norm_type", [(0.5, 2.0), (100.0, 2.0), (0.1, float("inf")), (1.0, 1.0)])
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(5).astype(np.float32)}
    params = [torch.zeros(3, 4, requires_grad=True), torch.zeros(5, requires_grad=True)]
    for p, g in zip(params, grads.values()):
        p.grad = torch.from_numpy(g.copy())
    expected = float(torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type))
    total = clip_grad_norm_(grads, max_norm, norm_type)
    assert abs(total - expected) <= 1e-5 * expected
    for p, g in zip(params, grads.values()):
        assert_close(g, p.grad.numpy())


def test_clip_grad_norm_on_layer_grads():
    layer = nn.LSTM(3, 4, seed=0)
    out, _ = layer(X + 1)
    layer.backward(np.ones_like(out) * 100)
    total = clip_grad_norm_(layer.grads, 1.0)
    assert total > 1.0
    after = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in layer.grads.values()))
    assert abs(after - 1.0) < 1e-4
    with pytest.raises(TypeError, match="clip_grad_norm_"):
        clip_grad_norm_([np.zeros(3, np.int64)], 1.0)


def test_manual_seed_reaches_recurrent_layers():
    fastml.manual_seed(0)
    first = fastml.nn.GRU(3, 4, num_layers=2).state_dict()
    fastml.manual_seed(0)
    second = fastml.nn.GRU(3, 4, num_layers=2).state_dict()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
