"""fastml: neural-network layers with Numba-compiled kernels behind a PyTorch-compatible API.

Example:
    >>> import numpy as np, fastml
    >>> x = np.random.rand(8, 3, 32, 32).astype(np.float32)
    >>> w = np.random.rand(16, 3, 3, 3).astype(np.float32)
    >>> y = fastml.F.max_pool2d(fastml.F.relu(fastml.F.conv2d(x, w, padding=1)), 2)
    >>> y.shape
    (8, 16, 16, 16)
"""
from __future__ import annotations

from . import functional
from ._backend import BACKENDS, backend, cuda_status, get_backend, is_grad_enabled, no_grad, set_backend
from .device import is_device_array, to_device, to_host
from .shapes import ReceptiveFieldRow, conv_output_shape, pool_output_shape, receptive_field

from . import nn  # noqa: E402  (layers, after functional)
from .nn.init import manual_seed  # noqa: E402
from . import losses, optim, train  # noqa: E402
from . import models  # noqa: E402

F = functional
__version__ = "0.1.0"


def warmup(dtypes=("float32",), backends=("cpu",)) -> None:
    """Compile (or load from the on-disk cache) every kernel for ``dtypes`` now.

    Kernels otherwise compile on first use; call this at start-up to keep that
    cost out of the first real call. Tiny shapes are used, so it is cheap once
    the cache is warm.
    """
    import numpy as np

    from .functional import grad

    for name in backends:
        for dtype in dtypes:
            rng = np.random.default_rng(0)
            x = rng.standard_normal((1, 2, 5, 5)).astype(dtype)
            w = rng.standard_normal((2, 2, 3, 3)).astype(dtype)
            b = np.zeros(2, dtype=dtype)
            y = functional.conv2d(x, w, b, padding=1, backend=name)
            grad.conv2d_backward(y, x, w, padding=1, backend=name)
            # few input channels and a batch: the direct kernels (register-blocked tiles forward)
            xd = rng.standard_normal((2, 1, 6, 6)).astype(dtype)
            wd = rng.standard_normal((6, 1, 3, 3)).astype(dtype)
            y = functional.conv2d(xd, wd, None, padding=1, backend=name)
            grad.conv2d_backward(y, xd, wd, padding=1, backend=name)
            p, idx = functional.max_pool2d(x, 2, return_indices=True, backend=name)
            grad.max_pool2d_backward(p, x, 2, indices=idx, backend=name)
            functional.max_pool2d(x, 3, 1, 1, backend=name)  # 3x3 "same", values only
            functional.max_pool2d(x, 3, 1, 1, return_indices=True, backend=name)  # separable
            a = functional.avg_pool2d(x, 2, backend=name)
            grad.avg_pool2d_backward(a, x, 2, backend=name)
            a = functional.adaptive_avg_pool2d(x, 2, backend=name)
            grad.adaptive_avg_pool2d_backward(a, x, backend=name)
            a = functional.adaptive_max_pool2d(x, 2, backend=name)
            grad.adaptive_max_pool2d_backward(a, x, backend=name)
            for op in ("relu", "sigmoid", "tanh"):
                out = getattr(functional, op)(x, backend=name)
                getattr(grad, f"{op}_backward")(out, x if op == "relu" else out, backend=name)
            for op in ("softmax", "log_softmax"):
                out = getattr(functional, op)(x, 1, backend=name)
                getattr(grad, f"{op}_backward")(out, out, 1, backend=name)
            h = rng.standard_normal((3, 4)).astype(dtype)
            lw = rng.standard_normal((2, 4)).astype(dtype)
            grad.linear_backward(functional.linear(h, lw, backend=name), h, lw, backend=name)
            _warmup_recurrent(rng, dtype, name)


def _warmup_recurrent(rng, dtype, backend) -> None:
    """Every recurrent mode forward and backward, on the per-sequence loop (N=1) and the batched kernels: the
    hidden-unit split (N=8), the paired bidirectional kernel, and the batch split between two workers (N=16)."""
    from .kernels import config
    from .kernels.reference.recurrent import GATE_COUNT

    input_size, hidden, seq_len = 3, 4, 2
    for mode, gates in GATE_COUNT.items():
        weights = [tuple(rng.standard_normal(shape).astype(dtype) for shape in
                         ((gates * hidden, input_size), (gates * hidden, hidden), (gates * hidden,), (gates * hidden,)))
                   for _ in range(2)]
        smallest = int(config.RECURRENT_BLAS_MIN_BATCH)
        for batch, directions in ((1, 1), (1, 2), (smallest, 1), (smallest, 2), (2 * smallest, 1)):
            x = rng.standard_normal((seq_len, batch, input_size)).astype(dtype)
            out, _, _, ctx = functional.rnn_sequence(x, None, weights[:directions], mode,
                                                     bidirectional=directions == 2, keep=True, backend=backend)
            functional.rnn_sequence_backward(ctx, out)


__all__ = [
    "F", "functional", "BACKENDS", "backend", "set_backend", "get_backend", "cuda_status", "no_grad",
    "is_grad_enabled", "warmup", "conv_output_shape", "pool_output_shape", "receptive_field",
    "ReceptiveFieldRow", "__version__", "to_device", "to_host", "is_device_array",
]
__all__ += ["nn", "manual_seed", "losses", "optim", "train", "models"]
