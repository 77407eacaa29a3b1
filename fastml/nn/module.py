"""The base class of every fastml layer: parameters, gradients, state dicts, modes, backend.

A module owns parameter arrays and their gradients, keyed exactly like
PyTorch's ``state_dict`` (nested modules contribute dotted keys such as
``0.weight``), so a PyTorch ``state_dict`` loads as it is. ``layer(x)`` runs
``forward``, which keeps what ``backward`` needs unless the module is in eval
mode or the call is inside ``fastml.no_grad()``; ``backward(grad_output)``
returns the gradient of the input and adds the parameter gradients into
``layer.grads`` (they accumulate, as in PyTorch, until ``zero_grad()``).

Parameters and gradients are NumPy arrays, or numba device arrays after
``.to("cuda")`` (``.to("cpu")`` / ``.to("reference")`` bring them back);
``state_dict()`` always returns host NumPy copies, and ``load_state_dict``
and assignments through ``params[...]`` copy onto the device where the
module's parameters live.
"""
from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import NamedTuple

import numpy as np

from .. import _backend
from ..device import accumulate, fill_zero, is_device_array, to_device, to_host


class IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list


class _DottedView(MutableMapping):
    """A live dict view of every parameter (or gradient) of a module tree, with dotted keys.

    Assigning an entry replaces the array in the owning module after checking
    its shape and casting it to the parameter's dtype; entries can't be added
    or deleted (parameters are declared by the modules).
    """

    def __init__(self, module: Module, store: str):
        self._module = module
        self._store = store

    def _locate(self, key):
        owner, _, name = key.rpartition(".")
        module = self._module
        if owner:
            for part in owner.split("."):
                module = module._modules.get(part) if isinstance(module, Module) else None
                if module is None:
                    raise KeyError(key)
        table = getattr(module, self._store)
        if name not in table:
            raise KeyError(key)
        return table, name

    def __getitem__(self, key):
        table, name = self._locate(key)
        return table[name]

    def __setitem__(self, key, value):
        try:
            table, name = self._locate(key)
        except KeyError:
            raise KeyError(f"{type(self._module).__name__}: no parameter named {key!r}; "
                           f"known: {list(self)}") from None
        current = table[name]
        array = _as_numpy(value)
        if array.shape != tuple(current.shape):
            raise ValueError(f"{type(self._module).__name__}: `{key}` must have shape {tuple(current.shape)}, "
                             f"got {array.shape}")
        array = np.array(array, dtype=current.dtype, order="C")
        table[name] = to_device(array) if is_device_array(current) else array

    def __delitem__(self, key):
        raise TypeError(f"{type(self._module).__name__}: parameters can't be deleted")

    def __iter__(self):
        for key, _ in self._module._named(self._store):
            yield key

    def __len__(self):
        return sum(1 for _ in self)

    def __repr__(self):
        return "{" + ", ".join(f"{k!r}: array{tuple(v.shape)} {v.dtype}" for k, v in self.items()) + "}"


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    return to_host(value)


class Module:
    """Base class of fastml layers (the PyTorch ``nn.Module`` surface that a NumPy library needs).

    Subclasses call ``super().__init__()``, declare parameters with
    :meth:`register_parameter` (child modules by plain attribute assignment),
    and implement ``forward`` and ``backward``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_grads", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "backend", None)

    def __setattr__(self, name, value):
        if "_modules" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    # --- parameters ----------------------------------------------------------------------------
    def register_parameter(self, name: str, value: np.ndarray) -> None:
        """Declare parameter ``name`` (a float array) and a zero gradient for it."""
        if "." in name or not name:
            raise ValueError(f"{type(self).__name__}.register_parameter: invalid name {name!r}")
        array = np.ascontiguousarray(value)
        self._parameters[name] = array
        self._grads[name] = np.zeros_like(array)

    def _named(self, store: str, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for name, value in getattr(self, store).items():
            yield prefix + name, value
        for child_name, child in self._modules.items():
            yield from child._named(store, f"{prefix}{child_name}.")

    @property
    def params(self) -> MutableMapping:
        """Every parameter, keyed like ``torch``'s ``state_dict`` (live view, dotted keys for children)."""
        return _DottedView(self, "_parameters")

    @property
    def grads(self) -> MutableMapping:
        """The gradient of every parameter, same keys as :attr:`params`."""
        return _DottedView(self, "_grads")

    def named_parameters(self):
        return self._named("_parameters")

    def parameters(self):
        """Iterator over the parameter arrays (the arrays themselves: update them in place)."""
        for _, value in self._named("_parameters"):
            yield value

    def children(self):
        return iter(self._modules.values())

    def modules(self):
        yield self
        for child in self._modules.values():
            yield from child.modules()

    def zero_grad(self) -> None:
        for module in self.modules():
            for grad in module._grads.values():
                fill_zero(grad)

    def _accumulate(self, name: str, grad) -> None:
        if grad is not None:
            accumulate(self._grads[name], grad)

    # --- state dicts ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """A dict of host (NumPy) copies of every parameter, keyed like PyTorch's (copied back from the device)."""
        return {key: np.array(to_host(value)) for key, value in self._named("_parameters")}

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy parameters from ``state_dict`` (NumPy arrays or torch tensors).

        With ``strict`` (the default) missing and unexpected keys are errors;
        shape mismatches always are. Every problem is reported by name, and on
        any error no parameter is changed. Values are cast to each parameter's dtype.

        Returns:
            ``(missing_keys, unexpected_keys)``, like PyTorch.
        """
        fn = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, (dict, MutableMapping)) and not hasattr(state_dict, "items"):
            raise TypeError(f"{fn}: `state_dict` must be a mapping, got {type(state_dict).__name__}")
        own = dict(self._named("_parameters"))
        given, problems = {}, []
        for key, value in state_dict.items():
            try:
                given[key] = _as_numpy(value)
            except (TypeError, ValueError) as exc:  # a ragged list, an object that is no array
                given[key] = None
                problems.append(f"{key}: can't be read as an array ({exc})")
        missing = [key for key in own if key not in given]
        unexpected = [key for key in given if key not in own]
        for key, target in own.items():
            value = given.get(key)
            if value is not None:
                if value.shape != tuple(target.shape):
                    problems.append(f"size mismatch for {key}: copying a param with shape {value.shape}, "
                                    f"the shape in the current model is {tuple(target.shape)}")
                elif value.dtype.kind not in "fiu":
                    problems.append(f"{key}: expected a real numeric array, got dtype {value.dtype}")
        if strict:
            if missing:
                problems.insert(0, "Missing key(s) in state_dict: " + ", ".join(repr(k) for k in missing))
            if unexpected:
                problems.insert(0, "Unexpected key(s) in state_dict: " + ", ".join(repr(k) for k in unexpected))
        if problems:
            raise ValueError(f"{fn}: error(s) in loading state_dict (no parameter was changed):\n\t"
                             + "\n\t".join(problems))
        for key, target in own.items():
            if key in given:
                if is_device_array(target):  # a module on the cuda backend: one host -> device copy, in place
                    target.copy_to_device(np.ascontiguousarray(given[key], dtype=target.dtype))
                else:
                    target[...] = given[key]
        return IncompatibleKeys(missing, unexpected)

    # --- modes and backend -----------------------------------------------------------------------
    def train(self, mode: bool = True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def to(self, backend: str):
        """Run this module (and its children) on ``backend`` (``"reference"``, ``"cpu"``, ``"cuda"``).

        ``"cuda"`` copies every parameter and gradient to the device once (forward and backward
        then keep everything there); ``"cpu"`` and ``"reference"`` copy them back to NumPy arrays.
        Forward caches are dropped (they may live on the other side). Arrays held outside the
        module (an optimizer built from bare arrays) are not moved: build optimizers from the module.
        """
        name = _backend._check_name(backend, f"{type(self).__name__}.to")
        move = to_device if name == "cuda" else (lambda array: np.ascontiguousarray(to_host(array)))
        for module in self.modules():
            object.__setattr__(module, "backend", name)
            for store in (module._parameters, module._grads):
                for key, array in store.items():
                    if is_device_array(array) != (name == "cuda"):
                        store[key] = move(array)
            if module.__dict__.get("_ctx") is not None:
                object.__setattr__(module, "_ctx", None)
        return self

    @property
    def keeps_cache(self) -> bool:
        """Whether a forward call now keeps what backward needs (train mode and grad enabled)."""
        return self.training and _backend.is_grad_enabled()

    # --- calling -------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, child in self._modules.items():
            child_lines = repr(child).split("\n")
            lines.append(f"({name}): " + "\n  ".join(child_lines))
        if not lines:
            return f"{type(self).__name__}()"
        if len(lines) == 1 and not self._modules:
            return f"{type(self).__name__}({lines[0]})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"
