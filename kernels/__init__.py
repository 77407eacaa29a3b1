"""Compiled kernels of fastml, one folder per backend with the same file names.

``reference/`` is the readable NumPy/SciPy spec; ``cpu/`` is Numba; ``cuda/``
(numba.cuda) comes with the CUDA backend. Kernels receive validated,
contiguous arrays and plain ints from ``fastml.functional`` and never check
their arguments themselves.
"""
from __future__ import annotations

from ._memory import MALLOC  # noqa: F401  (tunes glibc's allocator for the kernels' temporaries, once)
