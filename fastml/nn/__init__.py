"""fastml.nn: layer objects with parameters, gradients and PyTorch-compatible state dicts."""
from .module import IncompatibleKeys, Module
from .recurrent import GRU, LSTM, RNN

__all__ = ["Module", "IncompatibleKeys", "RNN", "LSTM", "GRU"]

# Feed-forward layers, initialisation and .npz save/load (fastml/nn/layers.py, init.py, io.py).
from . import init  # noqa: E402
from .io import load, save  # noqa: E402
from .layers import (  # noqa: E402
    AdaptiveAvgPool2d, AvgPool2d, Conv2d, Dropout, Embedding, Flatten, Identity, Linear, LogSoftmax, MaxPool2d,
    ReLU, Sequential, Sigmoid, Softmax, Tanh,
)

__all__ += [
    "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "ReLU", "Sigmoid", "Tanh",
    "Softmax", "LogSoftmax", "Identity", "Dropout", "Embedding", "Sequential", "init", "save", "load",
]
