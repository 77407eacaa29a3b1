"""fastml.train.fit: learning, history, validation, metric, early stopping, checkpoints, progress, errors."""
import numpy as np
import pytest

import fastml.nn as nn
from fastml import losses, optim
from fastml.train import evaluate, fit


def _blobs(rng, n=200):
    x = rng.standard_normal((n, 2)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


def _model():
    return nn.Sequential(nn.Linear(2, 8, seed=0), nn.Tanh(), nn.Linear(8, 2, seed=1))


def test_fit_learns_and_records_history(rng, tmp_path):
    x, y = _blobs(rng)
    model = _model()
    opt = optim.Adam(model, lr=0.05)
    history = fit(model, losses.CrossEntropyLoss(), opt, (x[:150], y[:150]), epochs=15, val_data=(x[150:], y[150:]),
                  batch_size=16, metric="accuracy", checkpoint=tmp_path / "best.npz", progress=False,
                  schedule=optim.StepLR(opt, 10, gamma=0.5))
    assert set(history) >= {"loss", "val_loss", "accuracy", "val_accuracy", "lr", "time", "best_epoch", "epochs_run"}
    assert len(history["loss"]) == 15 and history["epochs_run"] == 15
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] >= 0.9
    assert history["lr"][0] == 0.05 and history["lr"][-1] == 0.025
    best = nn.load(tmp_path / "best.npz")
    assert sorted(best) == sorted(model.state_dict())
    result = evaluate(model, losses.CrossEntropyLoss(), (x[150:], y[150:]), metric="accuracy")
    assert abs(result["accuracy"] - history["val_accuracy"][-1]) < 1e-12 or history["best_epoch"] != 15
    assert model.training  # back in train mode


def test_fit_is_reproducible_and_casts_float64(rng):
    x, y = _blobs(rng)
    runs = []
    for _ in range(2):
        model = _model()
        runs.append(fit(model, losses.CrossEntropyLoss(), optim.SGD(model, lr=0.1, momentum=0.9),
                        (x.astype(np.float64), y), epochs=2, seed=3, progress=False)["loss"])
    assert runs[0] == runs[1]


def test_early_stopping_restores_best(rng):
    x, y = _blobs(rng, 64)
    model = _model()
    # a huge learning rate makes the validation loss get worse, so training stops early
    history = fit(model, losses.CrossEntropyLoss(), optim.SGD(model, lr=50.0), (x, y), epochs=30,
                  val_data=(x, y), patience=2, progress=False)
    assert history["epochs_run"] < 30
    best = history["val_loss"][history["best_epoch"] - 1]
    assert abs(evaluate(model, losses.CrossEntropyLoss(), (x, y))["loss"] - best) < 1e-5


def test_multiple_inputs_and_custom_metric(rng):
    class Add(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1, seed=0)

        def forward(self, a, b):
            return self.fc(a + b)

        def backward(self, grad):
            return self.fc.backward(grad)

    a = rng.standard_normal((40, 2)).astype(np.float32)
    b = rng.standard_normal((40, 2)).astype(np.float32)
    target = ((a + b) @ np.array([[1.0], [-2.0]], np.float32)) + 0.5
    model = Add()
    history = fit(model, losses.MSELoss(), optim.Adam(model, lr=0.1), ((a, b), target), epochs=40, batch_size=8,
                  metric=lambda p, t: float(np.max(np.abs(p - t))), progress=False)
    assert history["loss"][-1] < 1e-2 and "<lambda>" in history


def test_progress_bar_shows_loss_and_metric(rng, capsys):
    x, y = _blobs(rng, 32)
    model = _model()
    fit(model, losses.CrossEntropyLoss(), optim.SGD(model, lr=0.1), (x, y), epochs=1, metric="accuracy")
    err = capsys.readouterr()
    text = err.err + err.out
    assert "epoch 1/1" in text and "loss" in text and "accuracy" in text


ERRORS = [
    (lambda m, o, x, y: fit(m, losses.MSELoss(), o, (x, y[:-1]), progress=False), ValueError,
     "fit: `train_data` inputs and targets must have the same number of samples, got inputs with 10 and targets with 9"),
    (lambda m, o, x, y: fit(m, losses.MSELoss(), o, (x, y), val_data=(x[:3], y), progress=False), ValueError,
     "fit: `val_data` inputs and targets must have the same number of samples"),
    (lambda m, o, x, y: fit(m, losses.MSELoss(), o, x, progress=False), TypeError,
     "fit: `train_data` must be a pair (inputs, targets)"),
    (lambda m, o, x, y: fit(m, losses.MSELoss(), o, (x, y), epochs=0), ValueError, "fit: `epochs` must be >= 1"),
    (lambda m, o, x, y: fit(m, losses.MSELoss(), o, (x, y), batch_size=0), ValueError, "`batch_size` must be >= 1"),
    (lambda m, o, x, y: fit("model", losses.MSELoss(), o, (x, y)), TypeError, "fit: `model` must be a fastml Module"),
    (lambda m, o, x, y: fit(m, losses.MSELoss(), o, (x, y), metric="f1"), ValueError, "fit: `metric` must be one of"),
]


@pytest.mark.parametrize("call, exc, phrase", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_errors(call, exc, phrase, rng):
    model = nn.Sequential(nn.Linear(2, 1, seed=0))
    with pytest.raises(exc) as info:
        call(model, optim.SGD(model, lr=0.1), rng.standard_normal((10, 2)).astype(np.float32),
             np.zeros((10, 1), np.float32))
    assert phrase in str(info.value)


def test_fit_with_an_optimizer_on_bare_parameter_arrays(rng):
    x, y = _blobs(rng, 64)
    model = _model()
    history = fit(model, losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.5), (x, y), epochs=5,
                  progress=False)
    assert history["loss"][-1] < history["loss"][0]
