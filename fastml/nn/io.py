"""Saving and loading parameters as ``.npz`` files (one array per state-dict key).

Example:
    >>> fastml.nn.save(model, "model.npz")
    >>> fastml.nn.load("model.npz", into=model)   # or model.load_state_dict(fastml.nn.load("model.npz"))
"""
from __future__ import annotations

import os
import zipfile
import zlib

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


class _Unreadable(Exception):
    """Why a file is not a readable checkpoint (turned into a ValueError that names the path)."""


def _read_npz(path: str) -> dict:
    """Every array of the ``.npz`` archive at ``path``, read in full; pickled data is never loaded."""
    with open(path, "rb") as file:
        head = file.read(6)
    if not head:
        raise _Unreadable("the file is empty")
    if head == b"\x93NUMPY":
        raise _Unreadable("it is a single .npy array, not an .npz archive of named arrays")
    if not zipfile.is_zipfile(path):
        raise _Unreadable("it is not a zip archive: the file is truncated or not an .npz file")
    state = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                try:
                    value = data[key]
                except ValueError as exc:
                    if "allow_pickle" in str(exc) or "pickled" in str(exc):
                        raise _Unreadable(f"entry {key!r} is a pickled object array; checkpoints hold numeric "
                                          f"arrays and are never unpickled") from None
                    raise _Unreadable(f"entry {key!r} is corrupt ({exc})") from None
                if not isinstance(value, np.ndarray):
                    raise _Unreadable(f"entry {key!r} is not a NumPy array (.npy) member")
                state[key] = value
    except _Unreadable:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise _Unreadable(f"the archive is corrupt ({type(exc).__name__}: {exc})") from None
    return state


def load(path, into: Module | None = None, strict: bool = True) -> dict:
    """Read a state dict from an ``.npz`` file; with ``into``, also load it into that module.

    Nothing in the file is unpickled (``allow_pickle=False``). A missing file raises
    FileNotFoundError, a directory IsADirectoryError; an empty, truncated or corrupt file, a
    single ``.npy`` array or an archive holding pickled objects raises ValueError naming the
    path and the problem. With ``into`` (see :meth:`Module.load_state_dict`), missing or unexpected
    keys, wrong shapes and non-numeric dtypes raise ValueError naming the keys. On any error
    the module is left exactly as it was: the whole file is read and checked before a
    parameter is touched.
    """
    if into is not None and not isinstance(into, Module):
        raise TypeError(f"load: `into` must be a fastml Module, got {type(into).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no file at `path` {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"load: `path` {path!r} is a directory, not an .npz checkpoint file")
    try:
        state = _read_npz(path)
    except _Unreadable as exc:
        raise ValueError(f"load: {path!r} is not a readable checkpoint: {exc} (expected an .npz file written "
                         f"by fastml.nn.save or numpy.savez)") from None
    if into is not None:
        try:
            into.load_state_dict(state, strict=strict)
        except ValueError as exc:
            raise ValueError(f"load: the checkpoint {path!r} does not fit the {type(into).__name__}: {exc}") from None
    return state
