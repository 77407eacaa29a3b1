"""Optimisation: gradient clipping, the SGD / Adam / AdamW optimisers and learning-rate schedules.

Parameters (and gradients) may be NumPy arrays or CUDA device arrays (a model moved with
``.to("cuda")``). Device parameters are updated in place on the device by the fused kernels of
``kernels/cuda/optim.py``, with their state buffers (momentum, ``exp_avg``, ``exp_avg_sq``) on the
device too: a training step copies nothing between host and device. Each optimizer computes its
per-step coefficients once, in Python, for both sides; the elementwise math is written once per side
(NumPy below, one kernel per optimizer there) in the same order of operations.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .device import (
    as_device,
    contiguous,
    empty,
    is_device_array,
    to_device,
    to_host,
    zeros,
)


def _cuda_optim():
    from .kernels.cuda import optim

    return optim


def _is_float_array(value) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f"
    return is_device_array(value) and np.dtype(as_device(value).dtype).kind == "f"


def clip_grad_norm_(grads, max_norm, norm_type=2.0, error_if_nonfinite=False, eps=1e-6):
    """Scale gradients in place so that their joint norm is at most ``max_norm``, as ``torch.nn.utils``.

    Args:
        grads: a dict of arrays (e.g. ``layer.grads``), an iterable of arrays, or one array.
        max_norm: the largest allowed total norm.
        norm_type: p of the p-norm over all entries together (``float("inf")`` for the max).
        error_if_nonfinite: raise if the total norm is NaN or Inf.
        eps: added to the norm in the scale ``max_norm / (norm + eps)``, as PyTorch does.

    Returns:
        The total norm before clipping, a Python float.

    Device gradients (a model on ``"cuda"``) are reduced and scaled on the device; the norm is
    accumulated there in the gradients' dtype (on the host in float64), and only the total, one scalar
    per dtype, is copied back (it is the return value and decides the scale).

    Example:
        >>> total = clip_grad_norm_(lstm.grads, max_norm=1.0)
    """
    fn = "clip_grad_norm_"
    if isinstance(grads, Mapping):
        arrays = list(grads.values())
    elif isinstance(grads, np.ndarray) or is_device_array(grads):
        arrays = [grads]
    else:
        arrays = list(grads)
    arrays = [g for g in arrays if g is not None]
    for g in arrays:
        if not _is_float_array(g):
            raise TypeError(f"{fn}: every gradient must be a float ndarray or CUDA device array, got "
                            f"{type(g).__name__}{' of dtype ' + str(g.dtype) if hasattr(g, 'dtype') else ''}")
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if norm_type <= 0:
        raise ValueError(f"{fn}: `norm_type` must be > 0, got {norm_type}")
    if not arrays:
        return 0.0
    host = [g for g in arrays if isinstance(g, np.ndarray)]
    device = [_device_grad(fn, g) for g in arrays if not isinstance(g, np.ndarray)]
    # Device gradients are reduced on the device; one scalar per dtype comes back.
    device_parts = _cuda_optim().norm_parts(device, norm_type) if device else []
    if norm_type == np.inf:
        total = max([float(np.max(np.abs(g))) if g.size else 0.0 for g in host] + device_parts)
    else:
        host_sum = sum(np.sum(np.abs(g.astype(np.float64)) ** norm_type) for g in host)
        total = float((host_sum + sum(device_parts)) ** (1.0 / norm_type))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"{fn}: the total norm of order {norm_type} is non-finite ({total}), so it can't be "
                           f"clipped; pass error_if_nonfinite=False to scale anyway")
    scale = max_norm / (total + eps)
    if scale < 1.0:
        for g in host:
            g *= g.dtype.type(scale)
        for g in device:
            _cuda_optim().scale_(g, scale)
    return total


def _device_grad(fn, g):
    g = as_device(g)
    if not g.is_c_contiguous():
        raise ValueError(f"{fn}: device gradients must be C-contiguous to be scaled in place, got a strided view "
                         f"of shape {tuple(g.shape)}")
    return g


__all__ = ["clip_grad_norm_"]


# --- optimisers (torch.optim semantics) ----------------------------------------------------------------------------


def _as_grad(value):
    """A gradient as given: device arrays viewed where they are, anything else as a NumPy array."""
    return as_device(value) if is_device_array(value) else np.asarray(value)


def _zeros_like(param):
    """A zero state buffer beside ``param`` (on the device for a device parameter, made there)."""
    if is_device_array(param):
        return zeros(tuple(param.shape), param.dtype, True)
    return np.zeros_like(param)


def _empty_like(param):
    return empty(tuple(param.shape), param.dtype, True)


def _check_hyper(fn, name, value, low=0.0, high=None, high_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{fn}: `{name}` must be a number, got {value!r}")
    value = float(value)
    if not value >= low or (high is not None and (value >= high if high_open else value > high)):
        bound = f"in [{low}, {high})" if high_open else (f"in [{low}, {high}]" if high is not None else f">= {low}")
        raise ValueError(f"{fn}: `{name}` must be {bound}, got {value}")
    return value


class Optimizer:
    """Base of the optimisers: which arrays to update, where their gradients are, and per-array state.

    ``params`` is a fastml Module (its parameters and gradients are found by key at every step, so it
    keeps working after ``load_state_dict``), a Module's ``params`` view, a dict of arrays, or an iterable
    of arrays such as ``model.parameters()`` (then pass the gradients to :meth:`step`, in the same order).
    Arrays are updated in place, NumPy arrays on the host and CUDA device arrays (a model moved with
    ``.to("cuda")``) on the device, where their state buffers live too. ``state_dict()`` returns host
    copies of the state; a loaded state moves to the parameters' side at the next step.
    """

    def __init__(self, params, defaults: dict):
        fn = type(self).__name__
        from .nn.module import Module, _DottedView

        self._module = None
        self._arrays = None
        if isinstance(params, Module):
            self._module = params
        elif isinstance(params, _DottedView):
            self._module = params._module
        else:
            arrays = list(params.values()) if isinstance(params, Mapping) else list(params)
            for a in arrays:
                if not _is_float_array(a):
                    raise TypeError(f"{fn}: `params` must hold float ndarrays or CUDA device arrays, "
                                    f"got {type(a).__name__}")
            arrays = [as_device(a) if is_device_array(a) else a for a in arrays]
            if not arrays:
                raise ValueError(f"{fn}: `params` is empty (an optimizer needs at least one parameter)")
            self._arrays = arrays
        self.defaults = dict(defaults)
        self.lr = defaults["lr"]
        self.state: dict = {}
        self.step_count = 0

    def _pairs(self, grads):
        fn = f"{type(self).__name__}.step"
        if self._module is not None:
            params, own_grads = self._module.params, self._module.grads
            keys = list(params)
            if grads is None:
                return [(k, params[k], own_grads[k]) for k in keys]
            given = grads if isinstance(grads, Mapping) else dict(zip(keys, grads))
            return [(k, params[k], _as_grad(given[k])) for k in keys if k in given]
        if grads is None:
            raise ValueError(f"{fn}: `grads` is required when the optimizer was built from bare arrays "
                             f"(pass model.grads, or build the optimizer from the model itself)")
        grads = list(grads.values()) if isinstance(grads, Mapping) else list(grads)
        if len(grads) != len(self._arrays):
            raise ValueError(f"{fn}: got {len(grads)} gradients for {len(self._arrays)} parameters")
        pairs = []
        for i, (p, g) in enumerate(zip(self._arrays, grads)):
            g = _as_grad(g)
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(f"{fn}: gradient {i} has shape {tuple(g.shape)}, its parameter {tuple(p.shape)}")
            pairs.append((i, p, g))
        return pairs

    def parameters(self):
        if self._module is not None:
            return list(self._module.parameters())
        return list(self._arrays)

    def zero_grad(self) -> None:
        """Zero the model's gradients (with a model; bare gradient arrays are the caller's)."""
        if self._module is not None:
            self._module.zero_grad()

    def step(self, grads=None) -> None:
        """Update every parameter in place from its gradient (``grads`` needed only for bare arrays)."""
        fn = f"{type(self).__name__}.step"
        pairs = []
        for key, param, grad in self._pairs(grads):
            if is_device_array(param):
                param = as_device(param)
                if not param.is_c_contiguous():
                    raise ValueError(f"{fn}: parameter {key!r} is a strided device view; device parameters "
                                     f"must be C-contiguous to be updated in place")
                if is_device_array(grad):
                    if grad.dtype != param.dtype:
                        raise TypeError(f"{fn}: gradient of {key!r} has dtype {grad.dtype}, its parameter "
                                        f"{param.dtype} (device gradients are not cast)")
                    grad = contiguous(grad)
                else:  # a host gradient handed in for a device parameter: copied once
                    grad = to_device(np.asarray(grad, dtype=param.dtype))
            else:
                grad = to_host(grad).astype(param.dtype, copy=False)
            pairs.append((key, param, grad))
        self.step_count += 1
        for key, param, grad in pairs:
            state = self.state.setdefault(key, {})
            on_device = is_device_array(param)
            for name, value in state.items():  # a loaded state, or the model moved since: follow the parameter
                if isinstance(value, np.ndarray) and on_device:
                    state[name] = to_device(value)
                elif is_device_array(value) and not on_device:
                    state[name] = to_host(value)
            self._update(param, grad, state, on_device)

    def state_dict(self) -> dict:
        """The optimizer's state: hyper-parameters and per-parameter buffers as host (NumPy) copies."""
        return {"lr": self.lr, "step_count": self.step_count,
                "state": {k: {n: (np.array(to_host(v)) if isinstance(v, np.ndarray) or is_device_array(v) else v)
                              for n, v in s.items()}
                          for k, s in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["lr"]
        self.step_count = state["step_count"]
        self.state = {k: dict(s) for k, s in state["state"].items()}

    def __repr__(self):
        hyper = ", ".join(f"{k}={v}" for k, v in self.defaults.items() if k != "lr")
        return f"{type(self).__name__}(lr={self.lr}{', ' + hyper if hyper else ''})"


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    ``g = grad + weight_decay * p``; with momentum ``b = momentum * b + (1 - dampening) * g``
    (``b = g`` on the first step) and ``g = g + momentum * b`` (nesterov) or ``g = b``; ``p -= lr * g``.

    Example:
        >>> opt = SGD(model, lr=0.1, momentum=0.9)
        >>> model.zero_grad(); model.backward(loss.backward()); opt.step()
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        fn = "SGD"
        lr = _check_hyper(fn, "lr", lr)
        momentum = _check_hyper(fn, "momentum", momentum)
        dampening = _check_hyper(fn, "dampening", dampening, high=1.0)
        weight_decay = _check_hyper(fn, "weight_decay", weight_decay)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"{fn}: `nesterov` must be a bool, got {nesterov!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"{fn}: `nesterov` needs momentum > 0 and dampening = 0, got momentum={momentum}, "
                             f"dampening={dampening}")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=bool(nesterov)))

    def _update(self, param, grad, state, on_device):
        d = self.defaults
        dtype = param.dtype.type
        if on_device:
            first = d["momentum"] and state.get("momentum_buffer") is None
            if first:
                state["momentum_buffer"] = _empty_like(param)
            _cuda_optim().sgd_step(param, grad, state.get("momentum_buffer"), self.lr, d["weight_decay"],
                                   d["momentum"], d["dampening"], d["nesterov"], first)
            return
        if d["weight_decay"]:
            grad = grad + dtype(d["weight_decay"]) * param
        if d["momentum"]:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= dtype(d["momentum"])
                buf += dtype(1 - d["dampening"]) * grad
            grad = grad + dtype(d["momentum"]) * buf if d["nesterov"] else buf
        param -= dtype(self.lr) * grad


class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam`` (L2 ``weight_decay`` added to the gradient, optional AMSGrad).

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        fn = type(self).__name__
        lr = _check_hyper(fn, "lr", lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{fn}: `betas` must be a pair (beta1, beta2), got {betas!r}")
        beta1 = _check_hyper(fn, "betas[0]", betas[0], high=1.0, high_open=True)
        beta2 = _check_hyper(fn, "betas[1]", betas[1], high=1.0, high_open=True)
        eps = _check_hyper(fn, "eps", eps)
        weight_decay = _check_hyper(fn, "weight_decay", weight_decay)
        if not isinstance(amsgrad, (bool, np.bool_)):
            raise TypeError(f"{fn}: `amsgrad` must be a bool, got {amsgrad!r}")
        super().__init__(params, dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                                      amsgrad=bool(amsgrad)))

    def _update(self, param, grad, state, on_device):
        d = self.defaults
        dtype = param.dtype.type
        beta1, beta2 = d["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = _zeros_like(param)
            state["exp_avg_sq"] = _zeros_like(param)
            if d["amsgrad"]:
                state["max_exp_avg_sq"] = _zeros_like(param)
        state["step"] += 1
        step = state["step"]
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        if on_device:
            _cuda_optim().adam_step(param, grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                                    self.lr, d["weight_decay"], self._decoupled, d["betas"], d["eps"],
                                    bias_correction1, bias_correction2)
            return
        if d["weight_decay"]:
            if self._decoupled:
                param *= dtype(1 - self.lr * d["weight_decay"])
            else:
                grad = grad + dtype(d["weight_decay"]) * param
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (grad - m) * dtype(1 - beta1)  # torch's lerp form of b1 m + (1 - b1) g
        v *= dtype(beta2)
        v += dtype(1 - beta2) * grad * grad
        if d["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        denom = np.sqrt(v) / dtype(np.sqrt(bias_correction2)) + dtype(d["eps"])
        param -= dtype(self.lr / bias_correction1) * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay`` before the Adam step), as
    ``torch.optim.AdamW`` (default ``weight_decay=0.01``)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


# --- learning-rate schedules ---------------------------------------------------------------------------------------


class _Schedule:
    """Sets ``optimizer.lr`` from the epoch count; call :meth:`step` once per epoch, after ``optimizer.step()``."""

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: `optimizer` must be a fastml optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self.optimizer.lr = self.lr_at(0)

    def step(self) -> float:
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)
        return self.optimizer.lr

    def get_last_lr(self) -> list:
        return [self.optimizer.lr]


class StepLR(_Schedule):
    """``lr = base_lr * gamma ** (epoch // step_size)``, as ``torch.optim.lr_scheduler.StepLR``."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        from ._checks import as_int

        self.step_size = as_int(step_size, "StepLR", "step_size", minimum=1)
        self.gamma = _check_hyper("StepLR", "gamma", gamma)
        super().__init__(optimizer)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(_Schedule):
    """``lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2``, as
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` (its closed form)."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        from ._checks import as_int

        self.T_max = as_int(T_max, "CosineAnnealingLR", "T_max", minimum=1)
        self.eta_min = _check_hyper("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer)

    def lr_at(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + np.cos(np.pi * epoch / self.T_max)) / 2


__all__ += ["Optimizer", "SGD", "Adam", "AdamW", "StepLR", "CosineAnnealingLR"]
