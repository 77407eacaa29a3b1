"""float32 CUDA kernels compile to float32 PTX: no float64 instruction from a Python literal or an int.

Numba types ``1 - y`` or ``0.5 * v`` with a float32 ``y``/``v`` as float64, which
runs at a fraction of the speed on most GPUs. The kernels take their constants
typed as the data; this test compiles them for ``sm_80`` with
``cuda.compile_ptx`` (NVVM only: no GPU or driver needed) and checks that the
PTX of the float32 versions has no ``.f64`` instruction. It also proves that
they compile for the real target at all, which the simulator can't (builtin
``min``/``max`` of two ints, for one, fails there). Skipped under the
simulator and where NVVM is missing.
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from numba.core import config as numba_config

if numba_config.ENABLE_CUDASIM:
    pytest.skip("compile_ptx needs the real CUDA target (not the simulator)", allow_module_level=True)

numba = pytest.importorskip("numba")
from numba import cuda, types  # noqa: E402

F32 = types.float32
A1, A2, A3, A4 = (types.Array(F32, n, "A") for n in (1, 2, 3, 4))
I1, I2, I4 = (types.Array(types.int64, n, "A") for n in (1, 2, 4))
INT, BOOL = types.int64, types.boolean


def _cases():
    from fastml.kernels.cuda import (
        _util,
        activation,
        conv,
        embedding,
        optim,
        pool,
        recurrent,
    )

    ew, pk, rk = activation._elementwise("float32"), pool._kernels("float32"), recurrent._kernels("float32")
    ok = optim._kernels("float32")
    direct, implicit_gemm, backward_input, backward_weight, backward_bias = conv._kernels("float32")
    conv_args = (INT,) * 7
    return {
        "sigmoid": (ew["sigmoid"], (A1, A1)),
        "sigmoid_backward": (ew["sigmoid_backward"], (A1, A1, A1)),
        "tanh_backward": (ew["tanh_backward"], (A1, A1, A1)),
        "relu": (ew["relu"], (A1, A1)),
        "softmax_rows": (activation._row_kernel("float32"), (INT, A2, A2, A2)),
        "max_pool": (pk.max_pool, (A4,) + (INT,) * 8 + (A4, I4)),
        "max_pool_backward": (pk.max_pool_backward, (A2, I2, A2)),
        "avg_pool": (pk.avg_pool, (A4,) + (INT,) * 6 + (BOOL, INT, A4)),
        "avg_pool_backward": (pk.avg_pool_backward, (A4,) + (INT,) * 6 + (BOOL, INT, A4)),
        "adaptive_pool": (pk.adaptive_pool, (A4, BOOL, A4, I4)),
        "adaptive_avg_backward": (pk.adaptive_avg_backward, (A4, A4)),
        "rnn_forward": (rk.forward, (INT, BOOL, BOOL, A2, A2, A1, A2, A2, I1, A3, A3, A3, A3, A3, A2, A3)),
        "rnn_backward": (rk.backward, (INT, BOOL, INT, A3, I1, A2, A2, A2, A3, A3, A3, A3, A2, A2, A2, A2)),
        "gemm": (_util._gemm_kernel("float32"), (A2, A2, A2, INT, INT, INT, BOOL, BOOL, F32, F32)),
        "column_sums": (_util._colsum_kernel("float32"), (A2, A1, BOOL)),
        "row_norms": (_util._row_norm_kernel("float32"), (A2, A1)),
        "conv_direct": (direct, (A4, A4, A1, BOOL) + conv_args + (A4,)),
        "conv_implicit_gemm": (implicit_gemm, (A4, A1, A2, I2, A1, BOOL) + (INT,) * 5 + (A4,)),
        "conv_backward_input": (backward_input, (A4, A4) + conv_args + (A4,)),
        "conv_backward_weight": (backward_weight, (A4, A4) + conv_args + (A4,)),
        "conv_backward_bias": (backward_bias, (A4, A1)),
        "embedding_gather": (embedding._gather, (I1, A2, A2)),
        "embedding_scatter_add": (embedding._scatter_add, (A2, I1, INT, A2)),
        "sgd": (ok["sgd"], (A1, A1, A1) + (F32,) * 4 + (BOOL,) * 3),
        "adam": (ok["adam"], (A1,) * 5 + (F32, BOOL) + (F32,) * 4 + (BOOL,) + (F32,) * 3),
        "grad_scale": (ok["scale"], (A1, F32)),
        "grad_norm_reduce": (ok["reduce"], (A1, INT, F32, A1, INT)),
    }


@pytest.fixture(scope="module")
def cases():
    import numba.cuda.dispatcher as dispatcher

    # Device functions called from a kernel are compiled for the current device's compute
    # capability; without a GPU there is none, so pretend one (compile_ptx is given cc too).
    saved = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=(8, 0))
    try:
        cuda.compile_ptx(lambda a: None, (A1,), cc=(8, 0))
    except Exception as exc:  # noqa: BLE001 - NVVM missing or unusable
        dispatcher.get_current_device = saved
        pytest.skip(f"cuda.compile_ptx unavailable here ({type(exc).__name__})")
    yield _cases()
    dispatcher.get_current_device = saved


@pytest.mark.parametrize("name", [
    "sigmoid", "sigmoid_backward", "tanh_backward", "relu", "softmax_rows", "max_pool", "max_pool_backward",
    "avg_pool", "avg_pool_backward", "adaptive_pool", "adaptive_avg_backward", "rnn_forward", "rnn_backward",
    "gemm", "column_sums", "row_norms", "conv_direct",
    "conv_implicit_gemm", "conv_backward_input", "conv_backward_weight", "conv_backward_bias", "embedding_gather",
    "embedding_scatter_add", "sgd", "adam", "grad_scale", "grad_norm_reduce"])
def test_float32_kernel_has_no_float64_instruction(cases, name):
    kernel, signature = cases[name]
    ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(8, 0))
    f64 = [line.strip() for line in ptx.splitlines() if re.search(r"\.f64\b", line)]
    assert not f64, f"{name}: float32 kernel computes in float64: {f64[:4]}"
