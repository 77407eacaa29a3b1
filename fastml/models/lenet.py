"""A LeNet-style CNN and scikit-learn's 8x8 digits (shipped with scikit-learn, no download).

Example:
    >>> from fastml.models import lenet
    >>> result = lenet.train_digits(epochs=30)
    >>> result["test_accuracy"]       # >= 0.97 on the fixed 25% held-out split
"""
from __future__ import annotations

import time

import numpy as np

from .. import nn
from ..nn import init
from ._threads import single_threaded


class LeNet(nn.Sequential):
    """conv(3x3, pad 1) -> ReLU -> maxpool(2) -> conv(3x3, pad 1) -> ReLU -> maxpool(2) -> flatten -> linear -> ReLU
    -> linear, sized for small square images (8x8 digits by default).

    Args:
        in_channels: image channels. num_classes: outputs (logits).
        image_size: height = width of the input; must be divisible by 4.
        channels: the two convolutions' output channels. hidden: the hidden linear layer's width.
        dropout: dropout before the last layer (0 disables).
        seed: int or Generator for the initialisation (default: the global generator).

    Shape:
        input ``(N, in_channels, image_size, image_size)``, output ``(N, num_classes)``.
    """

    def __init__(self, in_channels=1, num_classes=10, image_size=8, channels=(16, 32), hidden=128, dropout=0.25, *,
                 seed=None):
        if image_size % 4:
            raise ValueError(f"LeNet: `image_size` must be divisible by 4 (two 2x2 poolings), got {image_size}")
        rng = init.generator(seed)
        c1, c2 = channels
        side = image_size // 4
        layers = [
            nn.Conv2d(in_channels, c1, 3, padding=1, seed=rng), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, seed=rng), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * side * side, hidden, seed=rng), nn.ReLU(),
        ]
        if dropout:
            layers.append(nn.Dropout(dropout, seed=rng))
        layers.append(nn.Linear(hidden, num_classes, seed=rng))
        super().__init__(*layers)


def load_digits_split(test_size=0.25, random_state=0):
    """scikit-learn's digits as float32 ``(N, 1, 8, 8)`` images scaled to [0, 1], split with
    ``train_test_split(..., test_size, random_state, stratify=labels)``: ``(x_train, x_test, y_train, y_test)``."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the digits demo needs scikit-learn: pip install 'fastml-numba[demo]'") from exc
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(images, digits.target.astype(np.int64), test_size=test_size, random_state=random_state,
                            stratify=digits.target)


def train_digits(epochs=30, batch_size=32, lr=5e-3, seed=0, progress=True, max_train=None, **model_kwargs) -> dict:
    """Train :class:`LeNet` on the digits training split and score it on the held-out 25%.

    Returns:
        ``{"model", "history", "test_accuracy", "train_seconds", "x_test", "y_test", "pred_test"}``.
    """
    from .. import losses, optim
    from ..train import accuracy, fit

    x_train, x_test, y_train, y_test = load_digits_split()
    if max_train is not None:
        x_train, y_train = x_train[:max_train], y_train[:max_train]
    model = LeNet(seed=seed, **model_kwargs)
    optimizer = optim.Adam(model, lr=lr)
    schedule = optim.CosineAnnealingLR(optimizer, T_max=epochs)
    start = time.perf_counter()
    with single_threaded():
        history = fit(model, losses.CrossEntropyLoss(), optimizer, (x_train, y_train), epochs=epochs,
                      val_data=(x_test, y_test), batch_size=batch_size, seed=seed, metric="accuracy",
                      schedule=schedule, progress=progress)
        seconds = time.perf_counter() - start
        model.eval()
        logits = model(x_test)
    model.train()
    return {"model": model, "history": history, "test_accuracy": accuracy(logits, y_test), "train_seconds": seconds,
            "x_test": x_test, "y_test": y_test, "pred_test": np.argmax(logits, axis=1)}
