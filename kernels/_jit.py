"""The Numba decorator every CPU kernel uses, and the on-disk cache location.

Kernels compile on first use (lazily, per dtype signature) and are cached on
disk (``cache=True``). Numba writes its cache next to the source file when it
can, else to ``NUMBA_CACHE_DIR``. For a read-only install with no
``NUMBA_CACHE_DIR`` set we point Numba at a per-user temp dir, so caching
keeps working instead of failing with "no locator available".
"""
from __future__ import annotations

import os
import tempfile

import numba
from numba.core import config as numba_config

_KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".fastml-probe-", delete=True)
        probe.close()
        return True
    except OSError:
        return False


def configure_cache() -> str:
    """Make sure Numba has a writable cache directory; return where caches go."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        numba_config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
        return numba_config.CACHE_DIR
    if numba_config.CACHE_DIR:
        return numba_config.CACHE_DIR
    if _writable(os.path.join(_KERNEL_DIR, "cpu", "__pycache__")):
        return os.path.join(_KERNEL_DIR, "<backend>", "__pycache__")
    fallback = os.path.join(tempfile.gettempdir(), f"fastml-numba-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
    os.makedirs(fallback, exist_ok=True)
    numba_config.CACHE_DIR = fallback
    return fallback


CACHE_DIR = configure_cache()


def njit(*args, parallel: bool = False, **options):
    """``numba.njit`` with fastml's defaults: on-disk cache, NumPy error model, no fastmath.

    fastmath flags that assume no NaN/Inf would let NaN vanish from max pooling
    and activations, so kernels opt in only to ``contract``/``reassoc`` where a
    measurement justified it (see ``kernels/config.py``).
    """
    options.setdefault("cache", True)
    options.setdefault("error_model", "numpy")
    options.setdefault("nogil", True)
    decorator = numba.njit(parallel=parallel, **options)
    if args and callable(args[0]):
        return decorator(args[0])
    return decorator
