"""fastml.nn: layer objects with parameters, gradients and PyTorch-compatible state dicts."""
from .module import IncompatibleKeys, Module
from .recurrent import GRU, LSTM, RNN

__all__ = ["Module", "IncompatibleKeys", "RNN", "LSTM", "GRU"]
