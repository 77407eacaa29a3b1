"""The training loop: :func:`fit` a model with a loss and an optimizer over mini-batches, with validation,
a metric, early stopping, checkpoints and a tqdm progress bar.

Example:
    >>> model = fastml.models.LeNet()
    >>> history = fastml.train.fit(model, fastml.losses.CrossEntropyLoss(), fastml.optim.Adam(model, lr=1e-3),
    ...                            (x_train, y_train), epochs=10, val_data=(x_val, y_val), metric="accuracy")
    >>> history["val_accuracy"][-1]
"""
from __future__ import annotations

import math
import time

import numpy as np

from . import _backend
from .device import is_device_array, to_device, to_host
from .nn.io import save
from .nn.module import Module


def accuracy(pred, target) -> float:
    """Fraction of samples whose arg-max over dimension 1 (classes) equals the integer label
    (for one output column: ``pred > 0`` against 0/1 targets)."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.ndim >= 2 and pred.shape[1] > 1:
        return float(np.mean(np.argmax(pred, axis=1) == target))
    return float(np.mean((pred.reshape(target.shape) > 0) == (target > 0.5)))


METRICS = {"accuracy": accuracy}


def _inputs_and_targets(fn, name, data):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{fn}: `{name}` must be a pair (inputs, targets), got {type(data).__name__}"
                        f"{' of length ' + str(len(data)) if isinstance(data, (tuple, list)) else ''}")
    inputs, targets = data
    multi = isinstance(inputs, (tuple, list))
    arrays = [np.asarray(a) for a in (inputs if multi else [inputs])]
    targets = np.asarray(targets)
    lengths = [len(a) if a.ndim else 0 for a in arrays]
    n = len(targets) if targets.ndim else 0
    if any(length != n for length in lengths):
        raise ValueError(f"{fn}: `{name}` inputs and targets must have the same number of samples, got inputs "
                         f"with {lengths if multi else lengths[0]} and targets with {n}")
    if n == 0:
        raise ValueError(f"{fn}: `{name}` is empty")
    return arrays, targets, multi, n


def _model_dtype(model):
    for value in model.parameters():
        if value.dtype.kind == "f":
            return value.dtype
    return None


def _cast(arrays, dtype):
    if dtype is None:
        return arrays
    return [a.astype(dtype) if a.dtype.kind == "f" and a.dtype != dtype else a for a in arrays]


def _on_device(model) -> bool:
    """Whether ``model`` was moved with ``.to("cuda")`` (its parameters are device arrays)."""
    return any(is_device_array(value) for value in model.parameters())


def _predict(model, xb, multi, on_device):
    """``model``'s output for one batch; float inputs go to the device first for a model on ``"cuda"``.

    Integer inputs (indices, lengths) stay on the host, where the layers check them without a device sync.
    """
    if on_device:
        xb = [to_device(a) if a.dtype.kind == "f" else a for a in xb]
    return model(*xb) if multi else model(xb[0])


def _host(pred):
    """Predictions for the loss and the metric, which run on the host: a device output is copied back."""
    return to_host(pred) if is_device_array(pred) else pred


def _batches(n, batch_size, rng):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def evaluate(model, loss, data, batch_size=256, metric=None) -> dict:
    """Loss (and metric) of ``model`` on ``data`` in eval mode without gradients: ``{"loss": ..., name: ...}``."""
    fn = "evaluate"
    arrays, targets, multi, n = _inputs_and_targets(fn, "data", data)
    arrays = _cast(arrays, _model_dtype(model))
    metric_name, metric_fn = _metric(fn, metric)
    was_training = model.training
    on_device = _on_device(model)
    model.eval()
    total_loss, total_metric = 0.0, 0.0
    try:
        with _backend.no_grad():
            for idx in _batches(n, batch_size, None):
                xb = [a[idx] for a in arrays]
                pred = _host(_predict(model, xb, multi, on_device))
                total_loss += float(np.sum(loss(pred, targets[idx]))) * len(idx)
                if metric_fn is not None:
                    total_metric += metric_fn(pred, targets[idx]) * len(idx)
    finally:
        model.train(was_training)
    result = {"loss": total_loss / n}
    if metric_fn is not None:
        result[metric_name] = total_metric / n
    return result


def _metric(fn, metric):
    if metric is None:
        return None, None
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(f"{fn}: `metric` must be one of {list(METRICS)} or a callable, got {metric!r}")
        return metric, METRICS[metric]
    if not callable(metric):
        raise TypeError(f"{fn}: `metric` must be a name or a callable (pred, target) -> float, got {metric!r}")
    return getattr(metric, "__name__", "metric"), metric


def fit(model, loss, optimizer, train_data, epochs=1, *, val_data=None, batch_size=32, shuffle=True, seed=0,
        metric=None, patience=None, min_delta=0.0, restore_best=True, checkpoint=None, schedule=None,
        clip_grad_norm=None, progress=True) -> dict:
    """Train ``model`` by mini-batch gradient descent; returns the history.

    Args:
        model: a fastml Module; ``model(x)`` (or ``model(*x)`` when the inputs are a tuple) returns predictions
            and ``model.backward(grad)`` propagates the loss gradient. A model moved with ``.to("cuda")``
            trains on the device: each batch's float inputs are copied there once, the predictions come
            back for the loss (which runs on the host) and its gradient goes over once; forward, backward
            and the optimizer step stay on the device.
        loss: a :mod:`fastml.losses` object (or anything with ``loss(pred, target)`` and ``loss.backward()``).
        optimizer: a :mod:`fastml.optim` optimizer built on ``model``.
        train_data: ``(inputs, targets)``; inputs an array or a tuple of arrays, all with the same first
            dimension (samples). Float inputs are cast to the model's dtype.
        epochs: passes over the data.
        val_data: optional ``(inputs, targets)`` evaluated after every epoch.
        batch_size: samples per step. shuffle, seed: reshuffle every epoch with ``np.random.default_rng(seed)``.
        metric: ``"accuracy"`` or a callable ``(pred, target) -> float``, averaged over samples.
        patience: stop after this many epochs without improving the monitored loss (``val_loss`` when there
            is validation data, else ``loss``) by more than ``min_delta``; ``restore_best`` then reloads the
            best weights.
        checkpoint: path of an ``.npz`` file that receives the best weights whenever they improve.
        schedule: a learning-rate schedule (``fastml.optim.StepLR`` ...), stepped once per epoch.
        clip_grad_norm: if set, clip the joint gradient norm to this before each step.
        progress: True: a tqdm bar per epoch (over its batches) with the running loss and metric, and a summary
            line per epoch; ``"epoch"``: one bar over the epochs (for many short epochs); False: silent.

    Returns:
        ``{"loss": [...], "val_loss": [...], "<metric>": [...], "val_<metric>": [...], "lr": [...],
        "time": [...], "best_epoch": int, "epochs_run": int}`` (one entry per epoch).
    """
    fn = "fit"
    if not isinstance(model, Module):
        raise TypeError(f"{fn}: `model` must be a fastml Module, got {type(model).__name__}")
    if not (callable(loss) and hasattr(loss, "backward")):
        raise TypeError(f"{fn}: `loss` must be a loss object with __call__ and backward, got {type(loss).__name__}")
    if not hasattr(optimizer, "step"):
        raise TypeError(f"{fn}: `optimizer` must be a fastml optimizer, got {type(optimizer).__name__}")
    from ._checks import as_int
    epochs = as_int(epochs, fn, "epochs", minimum=1)
    batch_size = as_int(batch_size, fn, "batch_size", minimum=1)
    if patience is not None:
        patience = as_int(patience, fn, "patience", minimum=1)
    arrays, targets, multi, n = _inputs_and_targets(fn, "train_data", train_data)
    arrays = _cast(arrays, _model_dtype(model))
    if val_data is not None:
        _inputs_and_targets(fn, "val_data", val_data)
    metric_name, metric_fn = _metric(fn, metric)
    per_epoch = progress == "epoch"
    bar_factory = _tqdm() if progress and not per_epoch else None
    epoch_bar = _tqdm()(total=epochs, desc="epochs", leave=False) if per_epoch and _tqdm() else None
    rng = np.random.default_rng(seed) if shuffle else None
    history: dict = {"loss": [], "lr": [], "time": []}
    if val_data is not None:
        history["val_loss"] = []
    if metric_fn is not None:
        history[metric_name] = []
        if val_data is not None:
            history["val_" + metric_name] = []
    monitor = "val_loss" if val_data is not None else "loss"
    best, best_epoch, best_state, waited = math.inf, 0, None, 0
    on_device = _on_device(model)
    model.train()
    epoch = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        steps = math.ceil(n / batch_size)
        bar = bar_factory(total=steps, desc=f"epoch {epoch}/{epochs}", leave=False) if bar_factory else None
        total_loss, total_metric, seen = 0.0, 0.0, 0
        for idx in _batches(n, batch_size, rng):
            xb = [a[idx] for a in arrays]
            yb = targets[idx]
            model.zero_grad()
            pred = _host(_predict(model, xb, multi, on_device))
            value = loss(pred, yb)
            model.backward(loss.backward())
            if clip_grad_norm is not None:
                from .optim import clip_grad_norm_
                clip_grad_norm_(model.grads, clip_grad_norm)
            if getattr(optimizer, "_module", True) is None:  # built from bare arrays: hand it the grads
                optimizer.step(list(model.grads.values()))
            else:
                optimizer.step()
            seen += len(idx)
            total_loss += float(value) * len(idx)
            if metric_fn is not None:
                total_metric += metric_fn(pred, yb) * len(idx)
            if bar is not None:
                post = {"loss": f"{total_loss / seen:.4f}"}
                if metric_fn is not None:
                    post[metric_name] = f"{total_metric / seen:.4f}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
        history["loss"].append(total_loss / seen)
        history["lr"].append(getattr(optimizer, "lr", None))
        if metric_fn is not None:
            history[metric_name].append(total_metric / seen)
        if val_data is not None:
            result = evaluate(model, loss, val_data, max(batch_size, 256), metric)
            history["val_loss"].append(result["loss"])
            if metric_fn is not None:
                history["val_" + metric_name].append(result[metric_name])
        history["time"].append(time.perf_counter() - start)
        if bar is not None:
            post = {k: f"{v[-1]:.4f}" for k, v in history.items() if k not in ("lr", "time") and v}
            bar.set_postfix(post, refresh=True)
            bar.close()
            _tqdm_write(f"epoch {epoch}/{epochs}: " + ", ".join(f"{k} {v}" for k, v in post.items())
                        + f" ({history['time'][-1]:.1f} s)")
        if epoch_bar is not None:
            epoch_bar.set_postfix({k: f"{v[-1]:.4f}" for k, v in history.items() if k not in ("lr", "time") and v},
                                  refresh=False)
            epoch_bar.update(1)
        if schedule is not None:
            schedule.step()
        current = history[monitor][-1]
        if current < best - min_delta:
            best, best_epoch, waited = current, epoch, 0
            if restore_best and patience is not None:
                best_state = model.state_dict()
            if checkpoint is not None:
                save(model, checkpoint)
        else:
            waited += 1
            if patience is not None and waited >= patience:
                break
    if epoch_bar is not None:
        epoch_bar.close()
        _tqdm_write(f"{epoch} epochs: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in history.items()
                                                    if k not in ("lr", "time") and v))
    if best_state is not None and best_epoch != epoch:
        model.load_state_dict(best_state)
    history["best_epoch"] = best_epoch
    history["epochs_run"] = epoch
    return history


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency, but keep training without it
        return None
    return tqdm


def _tqdm_write(text):
    try:
        from tqdm.auto import tqdm
        tqdm.write(text)
    except ImportError:  # pragma: no cover
        print(text)


__all__ = ["fit", "evaluate", "accuracy", "METRICS"]
