"""fastml.nn feed-forward layers: values and gradients against PyTorch autograd and finite differences,
torch state_dict parity for a CNN and an LSTM model, state dicts, modes, save/load, repr, errors."""
import numpy as np
import pytest
from _compare import assert_close, numeric_grad

import fastml
from fastml import nn

try:  # torch is a test peer only: the torch comparisons skip without it, the rest still runs
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def _t(x):
    return torch.tensor(x, requires_grad=True)


def _torch_layer_from(layer, torch_layer, dtype):
    """Copy fastml parameters into the torch layer (same keys, same dtype) and return it."""
    if dtype == np.float64:
        torch_layer = torch_layer.double()
    torch_layer.load_state_dict({k: torch.tensor(v) for k, v in layer.state_dict().items()})
    return torch_layer


LAYER_CASES = [
    # (fastml factory, torch factory, input shape)
    (lambda d: nn.Linear(5, 3, dtype=d), lambda: torch.nn.Linear(5, 3), (4, 5)),
    (lambda d: nn.Linear(5, 3, bias=False, dtype=d), lambda: torch.nn.Linear(5, 3, bias=False), (2, 3, 5)),
    (lambda d: nn.Conv2d(3, 4, 3, padding=1, dtype=d), lambda: torch.nn.Conv2d(3, 4, 3, padding=1), (2, 3, 7, 6)),
    (lambda d: nn.Conv2d(4, 6, (3, 2), stride=2, dilation=(1, 2), groups=2, bias=False, dtype=d),
     lambda: torch.nn.Conv2d(4, 6, (3, 2), stride=2, dilation=(1, 2), groups=2, bias=False), (2, 4, 9, 9)),
    (lambda d: nn.Conv2d(2, 3, 3, padding="same", dtype=d), lambda: torch.nn.Conv2d(2, 3, 3, padding="same"),
     (1, 2, 5, 5)),
    (lambda d: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2), (2, 3, 6, 6)),
    (lambda d: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
     lambda: torch.nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 2, 7, 7)),
    (lambda d: nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
     lambda: torch.nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False), (2, 2, 5, 5)),
    (lambda d: nn.AdaptiveAvgPool2d((2, 3)), lambda: torch.nn.AdaptiveAvgPool2d((2, 3)), (2, 2, 5, 7)),
    (lambda d: nn.Flatten(), lambda: torch.nn.Flatten(), (2, 3, 4, 5)),
    (lambda d: nn.Flatten(0, 2), lambda: torch.nn.Flatten(0, 2), (2, 3, 4, 5)),
    (lambda d: nn.ReLU(), lambda: torch.nn.ReLU(), (3, 4)),
    (lambda d: nn.Sigmoid(), lambda: torch.nn.Sigmoid(), (3, 4)),
    (lambda d: nn.Tanh(), lambda: torch.nn.Tanh(), (3, 4)),
    (lambda d: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1), (3, 4, 2)),
    (lambda d: nn.LogSoftmax(dim=-1), lambda: torch.nn.LogSoftmax(dim=-1), (3, 4)),
    (lambda d: nn.Identity(7, foo=1), lambda: torch.nn.Identity(), (3, 4)),
    (lambda d: nn.Sequential(nn.Linear(4, 6, dtype=d), nn.Tanh(), nn.Linear(6, 2, dtype=d)),
     lambda: torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)), (5, 4)),
]


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(LAYER_CASES)))
def test_layer_matches_torch(case, dtype, rng):
    make, make_torch, shape = LAYER_CASES[case]
    layer = make(dtype)
    ref = _torch_layer_from(layer, make_torch(), dtype)
    x = rng.standard_normal(shape).astype(dtype)
    y = layer(x)
    x_t = _t(x)
    y_t = ref(x_t)
    assert_close(y, y_t.detach().numpy(), dtype=dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    grad_x = layer.backward(g)
    y_t.backward(torch.tensor(g))
    assert_close(grad_x, x_t.grad.numpy(), dtype=dtype, reduction=64)
    torch_grads = {k: p.grad.numpy() for k, p in ref.named_parameters()}
    assert set(layer.grads) == set(torch_grads)
    for key, value in layer.grads.items():
        assert_close(value, torch_grads[key], dtype=dtype, reduction=64, err_msg=key)


@needs_torch
def test_embedding_matches_torch(rng):
    emb = nn.Embedding(10, 4, padding_idx=0, seed=1)
    ref = torch.nn.Embedding(10, 4, padding_idx=0)
    ref.load_state_dict({k: torch.tensor(v) for k, v in emb.state_dict().items()})
    idx = rng.integers(0, 10, size=(3, 5))
    idx[0, 0] = 0
    y = emb(idx)
    y_t = ref(torch.tensor(idx))
    assert_close(y, y_t.detach().numpy())
    g = rng.standard_normal(y.shape).astype(np.float32)
    assert emb.backward(g) is None
    y_t.backward(torch.tensor(g))
    assert_close(emb.grads["weight"], ref.weight.grad.numpy())
    assert np.all(emb.weight[0] == 0)


def test_dropout_train_and_eval(rng):
    x = rng.standard_normal((200, 50)).astype(np.float32)
    drop = nn.Dropout(0.3, seed=0)
    y = drop(x)
    kept = y != 0
    assert 0.6 < kept.mean() < 0.8
    assert_close(y[kept], x[kept] / np.float32(0.7))
    assert_close(drop.backward(np.ones_like(x)), kept.astype(np.float32) / np.float32(0.7))
    drop.eval()
    assert drop(x) is x or np.array_equal(drop(x), x)


# --- a CNN and an LSTM model from PyTorch state dicts ---------------------------------------------------------


def _cnn_pair():
    torch.manual_seed(0)
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 8, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 2 * 2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    ours = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 16), nn.ReLU(), nn.Linear(16, 10))
    return ref, ours


@needs_torch
def test_cnn_loads_torch_state_dict_same_outputs_and_gradients(rng):
    ref, ours = _cnn_pair()
    result = ours.load_state_dict(ref.state_dict())  # torch tensors as they are
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(ours) == repr(ref)
    x = rng.standard_normal((5, 1, 12, 12)).astype(np.float32)
    y = ours(x)
    x_t = _t(x)
    y_t = ref(x_t)
    assert_close(y, y_t.detach().numpy(), reduction=64)
    labels = rng.integers(0, 10, size=5)
    loss_t = torch.nn.functional.cross_entropy(y_t, torch.tensor(labels))
    loss_t.backward()
    grad_y = torch.autograd.functional.jacobian(
        lambda z: torch.nn.functional.cross_entropy(z, torch.tensor(labels)), torch.tensor(y)).numpy()
    grad_x = ours.backward(grad_y)
    assert_close(grad_x, x_t.grad.numpy(), reduction=64)
    for key, param in ref.named_parameters():
        assert_close(ours.grads[key], param.grad.numpy(), reduction=64, err_msg=key)


class _LSTMClassifier(nn.Module):
    """LSTM over the sequence, then a linear head on the last output (the same module tree as the torch one)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, num_layers=2, batch_first=True)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        self._out_shape = out.shape
        return self.fc(out[:, -1])

    def backward(self, grad):
        grad_out = np.zeros(self._out_shape, np.float32)
        grad_out[:, -1] = self.fc.backward(grad)
        return self.lstm.backward(grad_out)


class _TorchLSTMClassifier(torch.nn.Module if torch is not None else object):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)
        self.fc = torch.nn.Linear(5, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


@needs_torch
def test_lstm_model_loads_torch_state_dict_same_outputs_and_gradients(rng):
    torch.manual_seed(1)
    ref = _TorchLSTMClassifier()
    ours = _LSTMClassifier()
    ours.load_state_dict(ref.state_dict())
    assert sorted(ours.state_dict()) == sorted(ref.state_dict())
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    y = ours(x)
    x_t = _t(x)
    y_t = ref(x_t)
    assert_close(y, y_t.detach().numpy())
    g = rng.standard_normal(y.shape).astype(np.float32)
    y_t.backward(torch.tensor(g))
    assert_close(ours.backward(g), x_t.grad.numpy())
    for key, param in ref.named_parameters():
        assert_close(ours.grads[key], param.grad.numpy(), reduction=16, err_msg=key)


def test_finite_differences_float64_network(rng):
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, seed=0), nn.Tanh(), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(12, 2, dtype=np.float64, seed=1), nn.Sigmoid())
    x = rng.standard_normal((2, 2, 4, 4))
    weights = rng.standard_normal((2, 2))
    net(x)
    grad_x = net.backward(weights)
    assert_close(grad_x, numeric_grad(lambda z: float(np.sum(net(z) * weights)), x), rtol=1e-6, atol=1e-8)
    for key in ("0.weight", "4.bias"):
        param = net.params[key]
        saved = param.copy()

        def f(p, key=key):
            net.params[key] = p
            return float(np.sum(net(x) * weights))

        expected = numeric_grad(f, saved)
        net.params[key] = saved
        assert_close(net.grads[key], expected, rtol=1e-6, atol=1e-8, err_msg=key)


# --- initialisation ----------------------------------------------------------------------------------------------


@needs_torch
def test_default_init_bounds_and_seeding():
    fastml.manual_seed(0)
    a = nn.Conv2d(3, 64, 5)
    fastml.manual_seed(0)
    b = nn.Conv2d(3, 64, 5)
    assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    c = nn.Conv2d(3, 64, 5, seed=np.random.default_rng(0))
    assert a.weight.dtype == np.float32
    bound = 1 / np.sqrt(3 * 25)  # Kaiming uniform with a=sqrt(5) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for w in (a.weight, c.weight, a.bias):
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    torch.manual_seed(0)
    t = torch.nn.Conv2d(3, 64, 5).weight.detach().numpy()
    assert abs(t.std() - a.weight.std()) < 0.05 * t.std()
    assert not np.array_equal(nn.Linear(3, 4, seed=1).weight, nn.Linear(3, 4, seed=2).weight)


# --- state dicts, save/load, modes -------------------------------------------------------------------------------


def test_load_state_dict_errors_leave_weights_unchanged():
    net = nn.Sequential(nn.Linear(3, 4, seed=0), nn.ReLU(), nn.Linear(4, 2, seed=1))
    before = net.state_dict()
    good = {k: np.ones_like(v) for k, v in before.items()}
    cases = [
        ({k: v for k, v in good.items() if k != "2.bias"}, "Missing key(s) in state_dict: '2.bias'"),
        (dict(good, extra=np.zeros(1)), "Unexpected key(s) in state_dict: 'extra'"),
        (dict(good, **{"0.weight": np.zeros((4, 4))}), "size mismatch for 0.weight"),
    ]
    for state, phrase in cases:
        with pytest.raises(ValueError) as info:
            net.load_state_dict(state)
        assert phrase in str(info.value)
        for key, value in net.state_dict().items():
            assert np.array_equal(value, before[key])
    missing, unexpected = net.load_state_dict({k: v for k, v in good.items() if k != "2.bias"}, strict=False)
    assert missing == ["2.bias"] and unexpected == []
    assert np.all(net.params["0.weight"] == 1)


def test_save_load_npz_roundtrip(tmp_path, rng):
    net = nn.Sequential(nn.Conv2d(1, 2, 3, seed=0), nn.Flatten(), nn.Linear(8, 3, seed=1))
    path = nn.save(net, tmp_path / "model.npz")
    other = nn.Sequential(nn.Conv2d(1, 2, 3, seed=5), nn.Flatten(), nn.Linear(8, 3, seed=6))
    nn.load(path, into=other)
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    assert np.array_equal(net(x), other(x))
    state = nn.load(path)
    assert sorted(state) == sorted(net.state_dict())
    with pytest.raises(ValueError, match="size mismatch for 2.weight"):
        nn.load(path, into=nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 4)))


class _Tripwire:
    """Unpickling this creates a file: proof that a checkpoint was (or was not) unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _checkpoint_net(seed=0):
    return nn.Sequential(nn.Conv2d(1, 2, 3, seed=seed), nn.Flatten(), nn.Linear(8, 3, seed=seed + 1))


def _write_bytes(blob):
    return lambda path, good: path.write_bytes(blob)


def _save_npy(path, good):
    with open(path, "wb") as file:
        np.save(file, good["0.weight"])


def _savez(change):
    def write(path, good):
        with open(path, "wb") as file:  # a file object: np.savez would append .npz to a bare name
            np.savez(file, **change(dict(good)))
    return write


def _flip_array_bytes(path, good):
    _savez(lambda d: d)(path, good)
    data = bytearray(path.read_bytes())
    at = data.find(b"\x93NUMPY") + 130  # inside the first member's array data, past its 128-byte header
    data[at:at + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


def _zip_of_text(path, good):
    import zipfile
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not an array")


def _pickled(path, good):
    marker = path.parent / "unpickled"
    _savez(lambda d: dict(d, **{"0.weight": np.array([_Tripwire(marker)], dtype=object)}))(path, good)


CORRUPT_CHECKPOINTS = {
    # case: (writer(path, good_state), exception, phrase of the message)
    "empty file": (_write_bytes(b""), ValueError, "the file is empty"),
    "truncated": (lambda p, g: (_savez(lambda d: d)(p, g), p.write_bytes(p.read_bytes()[:300])),
                  ValueError, "truncated or not an .npz file"),
    "garbage bytes": (_write_bytes(bytes(range(256)) * 3), ValueError, "not a zip archive"),
    "bit flips in an array": (_flip_array_bytes, ValueError, "the archive is corrupt (BadZipFile: Bad CRC-32"),
    "a single .npy array": (_save_npy, ValueError, "single .npy array"),
    "zip without arrays": (_zip_of_text, ValueError, "entry 'notes.txt' is not a NumPy array"),
    "pickled object array": (_pickled, ValueError, "entry '0.weight' is a pickled object array"),
    "missing key": (_savez(lambda d: {k: v for k, v in d.items() if k != "2.bias"}), ValueError,
                    "Missing key(s) in state_dict: '2.bias'"),
    "extra key": (_savez(lambda d: dict(d, extra=np.zeros(2))), ValueError, "Unexpected key(s) in state_dict: 'extra'"),
    "wrong shape": (_savez(lambda d: dict(d, **{"2.weight": np.zeros((3, 9), np.float32)})), ValueError,
                    "size mismatch for 2.weight: copying a param with shape (3, 9)"),
    "complex dtype": (_savez(lambda d: dict(d, **{"2.bias": np.zeros(3, np.complex64)})), ValueError,
                      "2.bias: expected a real numeric array, got dtype complex64"),
    "string dtype": (_savez(lambda d: dict(d, **{"0.bias": np.array(["a", "b"])})), ValueError,
                     "0.bias: expected a real numeric array, got dtype <U1"),
}


@pytest.mark.parametrize("case", list(CORRUPT_CHECKPOINTS))
def test_load_rejects_corrupt_checkpoints_and_leaves_the_model_unchanged(tmp_path, case):
    write, error, phrase = CORRUPT_CHECKPOINTS[case]
    net = _checkpoint_net()
    before = net.state_dict()
    good = _checkpoint_net(seed=7).state_dict()
    path = tmp_path / "model.npz"
    write(path, good)
    with pytest.raises(error) as info:
        nn.load(path, into=net)
    message = str(info.value)
    assert phrase in message and str(path) in message, message
    for key, value in net.state_dict().items():
        assert value.dtype == before[key].dtype and np.array_equal(value, before[key]), key
    if case in ("missing key", "extra key", "wrong shape", "complex dtype", "string dtype"):
        nn.load(path)  # the file itself is fine: it just doesn't fit this model
    else:
        with pytest.raises(error, match="is not a readable checkpoint"):
            nn.load(path)
    assert not (tmp_path / "unpickled").exists()  # nothing was ever unpickled


def test_load_rejects_a_directory_and_a_missing_file(tmp_path):
    net = _checkpoint_net()
    before = net.state_dict()
    with pytest.raises(IsADirectoryError, match="is a directory, not an .npz checkpoint file"):
        nn.load(tmp_path, into=net)
    with pytest.raises(FileNotFoundError, match="no file at `path`"):
        nn.load(tmp_path / "missing.npz", into=net)
    path = nn.save(net, tmp_path / "ok.npz")
    with pytest.raises(TypeError, match="`into` must be a fastml Module"):
        nn.load(path, into={"0.weight": 1})
    for key, value in net.state_dict().items():
        assert np.array_equal(value, before[key])


def test_load_state_dict_rejects_values_that_are_not_arrays_by_key():
    net = _checkpoint_net()
    before = net.state_dict()
    state = dict(before, **{"0.bias": [[1.0], [2.0, 3.0]]})  # ragged: not an array
    with pytest.raises(ValueError, match=r"0\.bias: can't be read as an array") as info:
        net.load_state_dict(state)
    assert "no parameter was changed" in str(info.value)
    for key, value in net.state_dict().items():
        assert np.array_equal(value, before[key])


def test_modes_no_grad_zero_grad_and_backend(rng):
    net = nn.Sequential(nn.Linear(3, 4, seed=0), nn.Sigmoid(), nn.Linear(4, 2, seed=1))
    x = rng.standard_normal((5, 3)).astype(np.float32)
    with fastml.no_grad():
        net(x)
    with pytest.raises(RuntimeError, match="no forward cache"):
        net.backward(np.ones((5, 2), np.float32))
    net.eval()
    net(x)
    with pytest.raises(RuntimeError, match="Linear.backward: no forward cache"):
        net.backward(np.ones((5, 2), np.float32))
    net.train()
    y = net(x)
    net.backward(np.ones_like(y))
    first = net.grads["0.weight"].copy()
    net(x)
    net.backward(np.ones_like(y))
    assert_close(net.grads["0.weight"], 2 * first)  # gradients accumulate until zero_grad
    net.zero_grad()
    assert all(not g.any() for g in net.grads.values())
    y_ref = net.to("reference")(x)
    assert net[0].backend == "reference"
    assert_close(y_ref, net.to("cpu")(x))


ERRORS = [
    (lambda: nn.Linear(0, 3), ValueError, "Linear: `in_features` must be >= 1"),
    (lambda: nn.Linear(3, 2.5), TypeError, "Linear: `out_features` must be an int"),
    (lambda: nn.Linear(3, 2, dtype=np.int32), TypeError, "Linear: `dtype` must be float32 or float64"),
    (lambda: nn.Linear(3, 2)(np.zeros((4, 5), np.float32)), ValueError, "last dimension of `input` (=5)"),
    (lambda: nn.Linear(3, 2)(np.zeros((4, 3), np.int64)), TypeError, "Linear.forward: `input` must have dtype float"),
    (lambda: nn.Linear(3, 2)(np.zeros((4, 3))), TypeError, "Linear.forward: `input` dtype (float64) must equal"),
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "Conv2d: `groups` (=2) must divide"),
    (lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, "Conv2d: `padding` must be"),
    (lambda: nn.Conv2d(3, 4, 3, padding_mode="reflect"), ValueError, "`padding_mode` must be 'zeros'"),
    (lambda: nn.Conv2d(3, 4, 3)(np.zeros((1, 2, 5, 5), np.float32)), ValueError, "conv2d: `in_channels`"),
    (lambda: nn.Conv2d(3, 4, 3)(np.zeros((5, 5), np.float32)), ValueError, "`input` must be"),
    (lambda: nn.MaxPool2d(0), ValueError, "MaxPool2d: `kernel_size` must be >= 1"),
    (lambda: nn.MaxPool2d(2)(np.zeros((2, 2), np.float32)), ValueError, "max_pool2d: `input` must be 3-D or 4-D"),
    (lambda: nn.Dropout(1.5), ValueError, "Dropout: `p` must be in [0, 1]"),
    (lambda: nn.Embedding(5, 2)(np.array([1.0])), TypeError, "Embedding.forward: `input` must be an integer array"),
    (lambda: nn.Embedding(5, 2)(np.array([5])), ValueError, "indices in `input` must lie in [0, 5)"),
    (lambda: nn.Flatten(3)(np.zeros((2, 3), np.float32)), ValueError, "Flatten.forward: `start_dim` (=3)"),
    (lambda: nn.Sequential(nn.ReLU(), "relu"), TypeError, "Sequential: every entry must be a fastml Module"),
    (lambda: nn.Sequential(nn.Linear(2, 2)).load_state_dict([1, 2]), TypeError, "`state_dict` must be a mapping"),
    (lambda: fastml.manual_seed(1.5), TypeError, "manual_seed: `seed` must be an int"),
    (lambda: nn.ReLU().backward(np.ones(3, np.float32)), RuntimeError, "ReLU.backward: no forward cache"),
]


@pytest.mark.parametrize("call, exc, phrase", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_errors(call, exc, phrase):
    with pytest.raises(exc) as info:
        call()
    assert phrase in str(info.value)
