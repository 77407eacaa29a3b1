"""Random initialisation: the global generator behind ``fastml.manual_seed`` and PyTorch's default inits.

Every layer draws its initial weights (and dropout masks) from the generator
given as its ``seed=`` argument (an int or a ``np.random.Generator``), or, when
that is None, from the global generator that :func:`manual_seed` resets.
"""
from __future__ import annotations

import math

import numpy as np

_GLOBAL = np.random.default_rng()


def manual_seed(seed) -> np.random.Generator:
    """Reset the global generator, so that layers built afterwards are reproducible.

    Example:
        >>> fastml.manual_seed(0); a = fastml.nn.Linear(3, 2).weight
        >>> fastml.manual_seed(0); b = fastml.nn.Linear(3, 2).weight
        >>> (a == b).all()
        True
    """
    global _GLOBAL
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: `seed` must be an int, got {seed!r}")
    _GLOBAL = np.random.default_rng(int(seed))
    return _GLOBAL


def generator(seed=None) -> np.random.Generator:
    """``seed`` as a Generator: itself if it is one, a new one from an int, else the global one."""
    if seed is None:
        return _GLOBAL
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"generator: `seed` must be None, an int or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def kaiming_uniform(shape, fan_in, rng, dtype, a=math.sqrt(5)) -> np.ndarray:
    """U(-b, b) with ``b = gain * sqrt(3 / fan_in)``, ``gain = sqrt(2 / (1 + a^2))`` (torch's default, a=sqrt(5))."""
    gain = math.sqrt(2.0 / (1.0 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def fan_in_uniform(shape, fan_in, rng, dtype) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch's default bias init."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
