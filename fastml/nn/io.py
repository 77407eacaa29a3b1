"""Saving and loading parameters as ``.npz`` files (one array per state-dict key).

Example:
    >>> fastml.nn.save(model, "model.npz")
    >>> fastml.nn.load("model.npz", into=model)   # or model.load_state_dict(fastml.nn.load("model.npz"))
"""
from __future__ import annotations

import os

import numpy as np

from .module import Module, _as_numpy


def save(obj, path) -> str:
    """Write a module's ``state_dict()`` (or a dict of arrays) to ``path`` (an ``.npz`` file); returns the path."""
    if isinstance(obj, Module):
        state = obj.state_dict()
    elif hasattr(obj, "items"):
        state = {str(key): _as_numpy(value) for key, value in obj.items()}
    else:
        raise TypeError(f"save: `obj` must be a fastml Module or a dict of arrays, got {type(obj).__name__}")
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = path[:-4] + ".tmp.npz"
    np.savez(tmp, **state)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint behind
    return path


def load(path, into: Module | None = None, strict: bool = True) -> dict:
    """Read a state dict from an ``.npz`` file; with ``into``, also load it into that module (see
    :meth:`Module.load_state_dict`: on any mismatch nothing changes and a ValueError names the keys)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no file at `path` {path!r}")
    with np.load(path, allow_pickle=False) as data:
        state = {key: data[key] for key in data.files}
    if into is not None:
        if not isinstance(into, Module):
            raise TypeError(f"load: `into` must be a fastml Module, got {type(into).__name__}")
        into.load_state_dict(state, strict=strict)
    return state
