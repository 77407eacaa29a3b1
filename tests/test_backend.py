"""Backend selection: global default, nested and thread-/task-local `with backend(...)`, per-call
overrides, bad names, an unavailable CUDA backend, and warmup."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import fastml
from fastml import _backend


@pytest.fixture(autouse=True)
def restore_default_backend():
    before = fastml.get_backend()
    yield
    fastml.set_backend(before)


@pytest.fixture
def calls(monkeypatch):
    """Record which backend's relu kernel each call reaches."""
    seen = []
    for name in ("reference", "cpu"):
        module = _backend.kernels("activation", name, "test")
        real = module.relu

        def spy(x, real=real, name=name):
            seen.append(name)
            return real(x)

        monkeypatch.setattr(module, "relu", spy)
    return seen


X = np.array([-1.0, 2.0], np.float32)


def test_default_is_cpu():
    assert fastml.get_backend() == "cpu"
    assert fastml.BACKENDS == ("reference", "cpu", "cuda")


def test_set_backend_is_global(calls):
    fastml.set_backend("reference")
    assert fastml.get_backend() == "reference"
    fastml.F.relu(X)
    fastml.set_backend("cpu")
    fastml.F.relu(X)
    assert calls == ["reference", "cpu"]


def test_nested_context_managers(calls):
    with fastml.backend("reference") as name:
        assert name == "reference" and fastml.get_backend() == "reference"
        fastml.F.relu(X)
        with fastml.backend("cpu"):
            assert fastml.get_backend() == "cpu"
            fastml.F.relu(X)
            with fastml.backend("reference"):
                fastml.F.relu(X)
            fastml.F.relu(X)
        assert fastml.get_backend() == "reference"
    assert fastml.get_backend() == "cpu"
    fastml.F.relu(X)
    assert calls == ["reference", "cpu", "reference", "cpu", "cpu"]


def test_context_manager_restores_after_an_exception():
    with pytest.raises(KeyError):
        with fastml.backend("reference"):
            raise KeyError("boom")
    assert fastml.get_backend() == "cpu"


def test_context_manager_beats_the_global_default_and_outlives_changes_to_it():
    with fastml.backend("reference"):
        fastml.set_backend("cpu")
        assert fastml.get_backend() == "reference"
    fastml.set_backend("reference")
    with fastml.backend("cpu"):
        assert fastml.get_backend() == "cpu"
    assert fastml.get_backend() == "reference"


def test_per_call_backend_overrides_everything(calls):
    fastml.set_backend("reference")
    with fastml.backend("reference"):
        fastml.F.relu(X, backend="cpu")
    with fastml.backend("cpu"):
        fastml.F.relu(X, backend="reference")
        fastml.F.relu(X)
    assert calls == ["cpu", "reference", "cpu"]


def test_every_op_honours_backend_argument(monkeypatch):
    """Each functional op and gradient looks its kernels up for the backend it was given."""
    asked = []
    real = _backend.kernels
    monkeypatch.setattr(_backend, "kernels", lambda family, name, fn: asked.append((fn, name)) or real(family, name, fn))
    x = np.ones((1, 1, 4, 4), np.float32)
    w = np.ones((1, 1, 2, 2), np.float32)
    F, grad = fastml.F, fastml.F.grad
    y = F.conv2d(x, w, backend="reference")
    grad.conv2d_backward(y, x, w, backend="reference")
    for op in ("max_pool2d", "avg_pool2d"):
        y = getattr(F, op)(x, 2, backend="reference")
        getattr(grad, f"{op}_backward")(y, x, 2, backend="reference")
    for op in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        y = getattr(F, op)(x, 2, backend="reference")
        getattr(grad, f"{op}_backward")(y, x, backend="reference")
    for op in ("relu", "sigmoid", "tanh"):
        y = getattr(F, op)(x, backend="reference")
        getattr(grad, f"{op}_backward")(y, y, backend="reference")
    for op in ("softmax", "log_softmax"):
        y = getattr(F, op)(x, 1, backend="reference")
        getattr(grad, f"{op}_backward")(y, y, 1, backend="reference")
    h = np.ones((2, 3), np.float32)
    lw = np.ones((4, 3), np.float32)
    grad.linear_backward(F.linear(h, lw, backend="reference"), h, lw, backend="reference")
    ops = ["conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "relu", "sigmoid",
           "tanh", "softmax", "log_softmax", "linear"]
    assert {fn for fn, _ in asked} == set(ops) | {f"{op}_backward" for op in ops}
    assert {name for _, name in asked} == {"reference"}


def test_with_block_is_thread_local():
    """A `with backend(...)` in one thread is invisible to others; set_backend is seen by all."""
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def worker():
        with fastml.backend("reference"):
            seen["worker_inside"] = fastml.get_backend()
            inside.set()
            release.wait(5)
        seen["worker_after"] = fastml.get_backend()

    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(5)
    seen["main_meanwhile"] = fastml.get_backend()
    with fastml.backend("cpu"):
        seen["main_own_block"] = fastml.get_backend()
    release.set()
    thread.join(5)
    assert seen == {"worker_inside": "reference", "main_meanwhile": "cpu", "main_own_block": "cpu",
                    "worker_after": "cpu"}

    with fastml.backend("reference"):
        result = []
        thread = threading.Thread(target=lambda: result.append(fastml.get_backend()))
        thread.start()
        thread.join(5)
        assert result == ["cpu"]  # a new thread starts from the global default, not the caller's block

    fastml.set_backend("reference")
    result = []
    thread = threading.Thread(target=lambda: result.append(fastml.get_backend()))
    thread.start()
    thread.join(5)
    assert result == ["reference"]


def test_with_block_is_local_to_an_asyncio_task():
    async def task(name, started, other_started):
        with fastml.backend(name):
            started.set()
            await other_started.wait()
            return fastml.get_backend()

    async def main():
        a, b = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(task("reference", a, b), task("cpu", b, a))

    assert asyncio.run(main()) == ["reference", "cpu"]


@pytest.mark.parametrize("bad", ["gpu", "CPU", "", None, 0, "reference "])
def test_bad_names_raise_value_error(bad):
    with pytest.raises(ValueError, match=r"^set_backend: `backend` must be one of \['reference', 'cpu', 'cuda'\]"):
        fastml.set_backend(bad)
    with pytest.raises(ValueError, match=r"^backend: `backend` must be one of"):
        with fastml.backend(bad):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match=r"^relu: `backend` must be one of"):
        fastml.F.relu(X, backend=bad if bad is not None else "none")
    assert fastml.get_backend() == "cpu"


def test_cuda_status_reports_a_reason():
    ok, reason = fastml.cuda_status()
    assert isinstance(ok, bool) and isinstance(reason, str) and reason


def test_unavailable_cuda_raises_runtime_error_saying_why(monkeypatch):
    monkeypatch.setattr(_backend, "cuda_status", lambda: (False, "no CUDA driver or no CUDA device was found"))
    expected = r"the 'cuda' backend is unavailable: no CUDA driver or no CUDA device was found"
    with pytest.raises(RuntimeError, match=r"^set_backend: " + expected):
        fastml.set_backend("cuda")
    assert fastml.get_backend() == "cpu"
    with pytest.raises(RuntimeError, match=r"^backend: " + expected):
        with fastml.backend("cuda"):
            pass  # pragma: no cover
    with pytest.raises(RuntimeError, match=r"^conv2d: " + expected):
        fastml.F.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), backend="cuda")


def test_cuda_on_this_machine():
    ok, reason = fastml.cuda_status()
    if ok:
        pytest.skip("CUDA is available here; the CUDA suite covers it")
    with pytest.raises(RuntimeError, match="unavailable: " + reason.split("(")[0].strip()[:40]):
        fastml.set_backend("cuda")


@pytest.mark.parametrize("backends,dtypes", [(("cpu",), ("float32",)), (("reference", "cpu"), ("float32", "float64"))])
def test_warmup_runs(backends, dtypes):
    assert fastml.warmup() is None
    fastml.warmup(dtypes=dtypes, backends=backends)


def test_warmup_rejects_a_bad_backend():
    with pytest.raises(ValueError, match="`backend` must be one of"):
        fastml.warmup(backends=("gpu",))
