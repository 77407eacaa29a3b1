"""Backend selection: which kernel family (``reference``, ``cpu``, ``cuda``) runs an op.

Precedence: the ``backend=`` argument of a call, then the innermost
``with fastml.backend(name):`` block (per thread / async context), then the
global default set by ``fastml.set_backend`` (initially ``"cpu"``).

Kernels live in ``fastml.kernels.<backend>.<op_family>`` with the same file
names in every backend; adding a backend means adding such a folder.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib

BACKENDS = ("reference", "cpu", "cuda")

_default = "cpu"
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastml_backend", default=None)
_grad_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("fastml_grad", default=True)


def cuda_status() -> tuple[bool, str]:
    """``(available, reason)`` for the CUDA backend, without raising.

    The reason says what is missing: the numba CUDA target (install the extra
    ``pip install "fastml-numba[cuda]"``, which pulls NVIDIA's ``numba-cuda``),
    the driver, or a device. Under the CUDA simulator
    (``NUMBA_ENABLE_CUDASIM=1``) the backend is available, correct and slow.
    """
    try:
        from numba import cuda
        from numba.core import config as numba_config
    except ImportError as exc:  # pragma: no cover - depends on the install
        return False, f"numba.cuda cannot be imported ({exc}); install the extra: pip install 'fastml-numba[cuda]'"
    try:
        importlib.import_module("fastml.kernels.cuda")
    except ImportError as exc:  # pragma: no cover - depends on the install
        return False, f"fastml.kernels.cuda cannot be imported ({exc})"
    if numba_config.ENABLE_CUDASIM:
        return True, "available (CUDA simulator, NUMBA_ENABLE_CUDASIM=1: correct but slow)"
    try:
        from numba.cuda.cudadrv import driver as cuda_driver

        device_count = cuda_driver.driver.get_device_count()
    except Exception as exc:  # noqa: BLE001 - driver errors vary (CudaSupportError, OSError, ...)
        return False, f"no CUDA driver could be loaded ({' '.join(str(exc).split()) or type(exc).__name__})"
    if device_count == 0:
        return False, "the CUDA driver is installed but found no CUDA device"
    try:
        if not cuda.is_available():
            return False, "no usable CUDA device (the devices found are not supported by numba.cuda)"
    except Exception as exc:  # pragma: no cover - driver errors vary
        return False, f"the CUDA driver failed to initialise ({exc})"
    return True, "available"


def _check_name(name, fn: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{fn}: `backend` must be one of {list(BACKENDS)}, got {name!r}")
    if name == "cuda":
        ok, reason = cuda_status()
        if not ok:
            raise RuntimeError(f"{fn}: the 'cuda' backend is unavailable: {reason}")
    return name


def set_backend(name: str) -> None:
    """Set the global default backend (``"reference"``, ``"cpu"`` or ``"cuda"``)."""
    global _default
    _default = _check_name(name, "set_backend")


def get_backend() -> str:
    """The backend a call without ``backend=`` would use here and now."""
    return _override.get() or _default


@contextlib.contextmanager
def backend(name: str):
    """Context manager: run the enclosed calls on backend ``name``.

    Example:
        >>> with fastml.backend("reference"):
        ...     y = fastml.F.relu(x)
    """
    token = _override.set(_check_name(name, "backend"))
    try:
        yield name
    finally:
        _override.reset(token)


def resolve(name: str | None, fn: str) -> str:
    return get_backend() if name is None else _check_name(name, fn)


def kernels(family: str, name: str | None, fn: str):
    """The kernel module ``fastml.kernels.<backend>.<family>`` for a call."""
    return importlib.import_module(f"fastml.kernels.{resolve(name, fn)}.{family}")


def is_grad_enabled() -> bool:
    return _grad_enabled.get()


@contextlib.contextmanager
def no_grad():
    """Layers called inside keep no cache for backward (like ``torch.no_grad``)."""
    token = _grad_enabled.set(False)
    try:
        yield
    finally:
        _grad_enabled.reset(token)
