"""Optimizer updates and gradient-norm clipping on the CUDA device.

The device side of ``fastml/optim.py``: the optimizers compute their
per-step coefficients (learning rate, bias corrections, ...) on the host, as
for NumPy parameters, and hand them to one fused elementwise kernel per
parameter, which updates the parameter and its state buffers (momentum,
``exp_avg``, ``exp_avg_sq``) in place. The operations and their order follow
the NumPy update in ``fastml/optim.py`` term by term, so results agree with
it to rounding (a GPU may contract ``a * b + c`` into one FMA).

``norm_parts`` reduces gradients to one power sum (or maximum) per dtype:
a grid-stride pass leaves one partial per block, a second one-block pass
adds those up; only that scalar is copied back to the host.

Every array here is a contiguous device array (parameters, gradients and
states are viewed flat); the coefficients arrive typed as the data.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import config
from ._util import blocks_for, empty, per_dtype

# norm_parts / _reduce modes
_SUM_SQUARES, _SUM_POWER, _MAX_ABS, _SUM = 0, 1, 2, 3


@per_dtype
def _kernels(nb_type):
    """The update and reduction kernels for one dtype (constants typed as the data)."""
    zero = nb_type(0)
    threads = config.CUDA_REDUCE_THREADS

    @cuda.jit
    def sgd(param, grad, buf, lr, weight_decay, momentum, keep, use_momentum, first, nesterov):
        # g = grad + wd p; b = g (first step) or momentum b + (1 - dampening) g; g = g + momentum b
        # (nesterov) or b; p -= lr g
        i = cuda.grid(1)
        if i < param.shape[0]:
            p = param[i]
            g = grad[i]
            if weight_decay != zero:
                g = g + weight_decay * p
            if use_momentum:
                if first:
                    b = g
                else:
                    b = buf[i] * momentum + keep * g
                buf[i] = b
                if nesterov:
                    g = g + momentum * b
                else:
                    g = b
            param[i] = p - lr * g

    @cuda.jit
    def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, weight_decay, decoupled, decay, one_minus_beta1,
             beta2, one_minus_beta2, amsgrad, sqrt_bias_correction2, eps, step_size):
        # L2 (g += wd p) or decoupled (p *= 1 - lr wd) decay; m += (g - m)(1 - b1); v = b2 v + (1 - b2) g^2;
        # p -= lr / bc1 * m / (sqrt(max v or v) / sqrt(bc2) + eps)
        i = cuda.grid(1)
        if i < param.shape[0]:
            p = param[i]
            g = grad[i]
            if weight_decay != zero:
                if decoupled:
                    p = p * decay
                else:
                    g = g + weight_decay * p
            m = exp_avg[i]
            m = m + (g - m) * one_minus_beta1
            exp_avg[i] = m
            v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
            exp_avg_sq[i] = v
            if amsgrad:
                top = max_exp_avg_sq[i]
                if v > top or math.isnan(v):  # np.maximum: NaN wins
                    top = v
                max_exp_avg_sq[i] = top
                v = top
            denom = math.sqrt(v) / sqrt_bias_correction2 + eps
            param[i] = p - step_size * (m / denom)

    @cuda.jit
    def scale(values, factor):
        i = cuda.grid(1)
        if i < values.shape[0]:
            values[i] = values[i] * factor

    @cuda.jit
    def reduce(values, mode, power, out, slot):
        # grid-stride: block b leaves out[slot + b] = sum of x^2 / |x|^p / x, or max |x| (NaN propagates)
        partial = cuda.shared.array(threads, nb_type)
        t = cuda.threadIdx.x
        acc = zero
        for i in range(cuda.blockIdx.x * threads + t, values.shape[0], cuda.gridDim.x * threads):
            v = values[i]
            if mode == _SUM_SQUARES:
                acc += v * v
            elif mode == _SUM_POWER:
                acc += math.pow(abs(v), power)
            elif mode == _SUM:
                acc += v
            else:
                a = abs(v)
                if a > acc or math.isnan(a):
                    acc = a
        partial[t] = acc
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if t < step:
                if mode == _MAX_ABS:
                    other = partial[t + step]
                    if other > partial[t] or math.isnan(other):
                        partial[t] = other
                else:
                    partial[t] += partial[t + step]
            cuda.syncthreads()
            step //= 2
        if t == 0:
            out[slot + cuda.blockIdx.x] = partial[0]

    return {"sgd": sgd, "adam": adam, "scale": scale, "reduce": reduce}


def _flat(array):
    return array.reshape(array.size)


def _launch(kernel, count, *args):
    threads = config.CUDA_THREADS_PER_BLOCK
    kernel[blocks_for(count, threads), threads](*args)


def sgd_step(param, grad, buf, lr, weight_decay, momentum, dampening, nesterov, first):
    """One SGD update of ``param`` (and ``buf``, when momentum is on) in place; ``first`` fills ``buf`` with g."""
    if not param.size:
        return
    dtype = param.dtype.type
    use_momentum = bool(momentum)
    buf = _flat(buf) if use_momentum else _flat(param)  # an unused placeholder without momentum
    _launch(_kernels(param.dtype)["sgd"], param.size, _flat(param), _flat(grad), buf, dtype(lr),
            dtype(weight_decay), dtype(momentum), dtype(1 - dampening), use_momentum, bool(first), bool(nesterov))


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, weight_decay, decoupled, betas, eps,
              bias_correction1, bias_correction2):
    """One Adam / AdamW update of ``param`` and its moments in place (``max_exp_avg_sq`` None without AMSGrad)."""
    if not param.size:
        return
    dtype = param.dtype.type
    beta1, beta2 = betas
    amsgrad = max_exp_avg_sq is not None
    _launch(_kernels(param.dtype)["adam"], param.size, _flat(param), _flat(grad), _flat(exp_avg),
            _flat(exp_avg_sq), _flat(max_exp_avg_sq if amsgrad else exp_avg_sq), dtype(weight_decay),
            bool(decoupled), dtype(1 - lr * weight_decay), dtype(1 - beta1), dtype(beta2), dtype(1 - beta2), amsgrad,
            dtype(np.sqrt(bias_correction2)), dtype(eps), dtype(lr / bias_correction1))


def scale_(values, factor):
    """``values *= factor`` in place (gradient clipping)."""
    if values.size:
        _launch(_kernels(values.dtype)["scale"], values.size, _flat(values), values.dtype.type(factor))
    return values


def norm_parts(arrays, norm_type):
    """Per dtype of ``arrays``: the sum of ``|g|**norm_type`` over all their entries, or the max ``|g|`` for inf.

    Returns a list of Python floats (one per dtype met): each is one scalar copied back from the device.
    """
    threads = config.CUDA_REDUCE_THREADS
    if norm_type == np.inf:
        mode, final = _MAX_ABS, _MAX_ABS
    else:
        mode, final = (_SUM_SQUARES if norm_type == 2 else _SUM_POWER), _SUM
    groups: dict = {}
    for g in arrays:
        if g.size:
            groups.setdefault(np.dtype(g.dtype), []).append(g)
    results = []
    for dtype, members in groups.items():
        kernel = _kernels(dtype)["reduce"]
        power = dtype.type(norm_type if mode == _SUM_POWER else 1)
        blocks = [min(blocks_for(g.size, threads), config.CUDA_REDUCE_MAX_BLOCKS) for g in members]
        partials = empty((sum(blocks),), dtype)
        slot = 0
        for g, count in zip(members, blocks):
            kernel[count, threads](_flat(g), mode, power, partials, slot)
            slot += count
        total = empty((1,), dtype)
        kernel[1, threads](partials, final, power, total, 0)
        results.append(float(total.copy_to_host()[0]))
    return results


__all__ = ["adam_step", "norm_parts", "scale_", "sgd_step"]
