"""fastml.functional (alias ``fastml.F``): stateless ops, validated and dispatched to a backend.

Every op takes a keyword-only ``backend=`` (``"reference"``, ``"cpu"``,
``"cuda"``); gradients live in :mod:`fastml.functional.grad`.
"""
from . import grad
from .activation import identity, log_softmax, relu, sigmoid, softmax, tanh
from .conv import conv2d
from .embedding import embedding
from .linear import linear
from .pooling import adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d

__all__ = [
    "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "linear",
    "relu", "sigmoid", "tanh", "softmax", "log_softmax", "identity", "embedding", "grad",
]

# Recurrent cells, whole sequences and their gradients (fastml/functional/recurrent.py).
from .recurrent import (  # noqa: E402
    gru_cell, gru_cell_backward, lstm_cell, lstm_cell_backward, rnn_cell, rnn_sequence, rnn_sequence_backward,
    rnn_cell_backward,
)

__all__ += [
    "rnn_cell", "lstm_cell", "gru_cell", "rnn_cell_backward", "lstm_cell_backward", "gru_cell_backward",
    "rnn_sequence", "rnn_sequence_backward",
]
