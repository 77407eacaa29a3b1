"""fastml called from 8 Python threads at once: every op family, forward and backward, functional and
nn layers, on different shapes, gives bitwise the serial results; `with backend(...)` and `no_grad()`
stay in their thread; under Numba's workqueue layer (not thread-safe) the launch guard keeps the
process alive (subprocess)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastml.kernels import _jit

import fastml
import fastml.cli
from fastml import nn
from fastml.functional import grad

F = fastml.F
THREADS = 8
ROUNDS = 3

# Per worker: (N, C, H=W, K, kernel, stride, padding). Channel counts cover the three conv algorithms
# (direct C <= 4, lowered 5..15, shifted >= 16) and N=1 the column-split driver.
CONV = [(4, 3, 12, 4, 3, 1, 1), (3, 8, 10, 6, 3, 2, 0), (2, 16, 8, 8, 3, 1, 1), (1, 16, 9, 5, 3, 1, 0),
        (5, 2, 11, 3, 5, 1, 2), (2, 5, 13, 7, 3, 2, 1), (3, 17, 7, 4, 2, 1, 0), (6, 4, 10, 2, 3, 1, 1)]


def _job(worker: int, train: bool = True) -> list:
    """Every op family forward and backward on this worker's shapes; a flat list of every result.

    ``train=False``: the layers only run forward (as under ``no_grad()``, where they keep no cache)."""
    rng = np.random.default_rng(100 + worker)
    f32 = np.float32
    n, c, hw, k, ks, stride, pad = CONV[worker]
    out = []
    # convolution (three algorithms), activations, pooling
    x = rng.standard_normal((n, c, hw, hw)).astype(f32)
    w = (rng.standard_normal((k, c, ks, ks)) * 0.3).astype(f32)
    b = rng.standard_normal(k).astype(f32)
    y = F.conv2d(x, w, b, stride=stride, padding=pad)
    out += [y, *grad.conv2d_backward(np.ones_like(y) * f32(0.5), x, w, stride=stride, padding=pad)]
    for name in ("relu", "sigmoid", "tanh"):
        act = getattr(F, name)(y)
        out += [act, getattr(grad, f"{name}_backward")(y, act if name != "relu" else y)]
    flat = y.reshape(n, -1)
    for name in ("softmax", "log_softmax"):
        s = getattr(F, name)(flat, 1)
        out += [s, getattr(grad, f"{name}_backward")(flat, s, 1)]
    pooled, idx = F.max_pool2d(y, 2, return_indices=True)
    out += [pooled, idx, grad.max_pool2d_backward(pooled, y, 2, indices=idx)]
    avg = F.avg_pool2d(y, 3, stride=2, padding=1)
    out += [avg, grad.avg_pool2d_backward(avg, y, 3, stride=2, padding=1)]
    for name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        a = getattr(F, name)(y, 3)
        out += [a, getattr(grad, f"{name}_backward")(a, y, 3)]
    # linear
    features = 3 + worker
    h = rng.standard_normal((n + 2, features)).astype(f32)
    lw = rng.standard_normal((5, features)).astype(f32)
    lb = rng.standard_normal(5).astype(f32)
    z = F.linear(h, lw, lb)
    out += [z, *grad.linear_backward(z, h, lw)]
    # recurrent cells, functional
    hidden, batch = 4 + worker % 3, 1 + worker % 4
    xi = rng.standard_normal((batch, features)).astype(f32)
    h0, c0 = (rng.standard_normal((batch, hidden)).astype(f32) for _ in range(2))
    for gates, cell in ((4, "lstm"), (3, "gru")):
        w_ih = rng.standard_normal((gates * hidden, features)).astype(f32) * f32(0.4)
        w_hh = rng.standard_normal((gates * hidden, hidden)).astype(f32) * f32(0.4)
        b_ih, b_hh = (rng.standard_normal(gates * hidden).astype(f32) for _ in range(2))
        if cell == "lstm":
            h1, c1 = F.lstm_cell(xi, (h0, c0), w_ih, w_hh, b_ih, b_hh)
            gx, (gh, gc), *gw = F.lstm_cell_backward(h1, c1, xi, (h0, c0), w_ih, w_hh, b_ih, b_hh)
            out += [h1, c1, gx, gh, gc, *gw]
        else:
            h1 = F.gru_cell(xi, h0, w_ih, w_hh, b_ih, b_hh)
            out += [h1, *F.gru_cell_backward(h1, xi, h0, w_ih, w_hh, b_ih, b_hh)]
    # nn layers: a small CNN and LSTM/GRU sequence models, forward + backward + parameter gradients.
    # Each thread builds its own layers: a layer object holds its forward cache, like a torch module.
    cnn = nn.Sequential(nn.Conv2d(c, k, ks, stride=stride, padding=pad, seed=worker), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten())
    feat = cnn(x)
    head = nn.Linear(feat.shape[1], 3, seed=worker)
    logits = head(feat)
    out.append(logits)
    if train:
        out += [cnn.backward(head.backward(np.ones_like(logits))), *cnn.grads.values(), *head.grads.values()]
    seq = rng.standard_normal((3 + worker % 3, batch, features)).astype(f32)
    for layer in (nn.LSTM(features, hidden, num_layers=2, seed=worker),
                  nn.GRU(features, hidden, bidirectional=True, seed=worker)):
        output, _ = layer(seq)
        out.append(output)
        if train:
            out += [layer.backward(output), *layer.grads.values()]
    return out


def _assert_same(results, expected, where):
    assert len(results) == len(expected)
    for i, (got, want) in enumerate(zip(results, expected)):
        assert got.dtype == want.dtype and got.shape == want.shape, f"{where}: result {i}"
        # bitwise: NaN-free data, so array_equal is exact equality
        assert np.array_equal(got, want), f"{where}: result {i} differs by {np.max(np.abs(got - want))}"


def _run_worker(worker: int, barrier: threading.Barrier) -> list:
    """One thread's part: half the workers inside `with backend("reference")`, half inside `no_grad()`
    for an eval pass, each checking that no other thread's block leaks into it."""
    backend = "reference" if worker % 4 == 3 else "cpu"
    grad_mode = worker % 2 == 0
    barrier.wait()
    with fastml.backend(backend):
        results = _job(worker)
        assert fastml.get_backend() == backend
        if grad_mode:
            assert fastml.is_grad_enabled()
            assert nn.Linear(3, 2, seed=0).keeps_cache
        else:
            with fastml.no_grad():
                assert not nn.Linear(3, 2, seed=0).keeps_cache
                results += _job(worker, train=False)  # overlaps the other threads' backward passes
                assert not fastml.is_grad_enabled()
            assert fastml.is_grad_enabled()
        assert fastml.get_backend() == backend
    return results


def _serial() -> list:
    barrier = threading.Barrier(1)
    return [_run_worker(worker, barrier) for worker in range(THREADS)]


def test_eight_threads_match_serial_results_bitwise():
    expected = _serial()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for round_ in range(ROUNDS):
            barrier = threading.Barrier(THREADS)
            futures = [pool.submit(_run_worker, worker, barrier) for worker in range(THREADS)]
            for worker, future in enumerate(futures):
                _assert_same(future.result(timeout=600), expected[worker], f"round {round_}, worker {worker}")


def test_no_grad_and_backend_blocks_stay_in_their_thread():
    """A `no_grad()` / `backend(...)` block in one thread is invisible to another; set_backend is process-wide."""
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def worker():
        with fastml.no_grad(), fastml.backend("reference"):
            seen["worker"] = (fastml.is_grad_enabled(), fastml.get_backend())
            inside.set()
            release.wait(10)
        seen["worker after"] = (fastml.is_grad_enabled(), fastml.get_backend())

    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(10)
    layer = nn.Linear(3, 2, seed=0)
    y = layer(np.ones((2, 3), np.float32))
    seen["main meanwhile"] = (fastml.is_grad_enabled(), fastml.get_backend(), layer.keeps_cache)
    layer.backward(np.ones_like(y))  # the cache was kept: this thread is not under the worker's no_grad
    release.set()
    thread.join(10)
    assert seen == {"worker": (False, "reference"), "main meanwhile": (True, "cpu", True),
                    "worker after": (True, "cpu")}

    with fastml.no_grad():
        result = []
        thread = threading.Thread(target=lambda: result.append(fastml.is_grad_enabled()))
        thread.start()
        thread.join(10)
        assert result == [True]  # a new thread starts with gradients on, whatever its creator's block
    try:
        fastml.set_backend("reference")
        result = []
        thread = threading.Thread(target=lambda: result.append(fastml.get_backend()))
        thread.start()
        thread.join(10)
        assert result == ["reference"]  # the global default is shared, like torch.set_default_dtype
    finally:
        fastml.set_backend("cpu")


def test_info_reports_threading_layer_and_concurrency():
    facts = fastml.cli.info()
    layer = facts["numba threading layer (in use)"]
    assert layer == _jit.threading_layer()
    assert facts["concurrent calls"].startswith("guarded" if layer == "workqueue" else "safe")
    assert _jit.launches_serialised() == (layer == "workqueue")


_WORKQUEUE_SCRIPT = textwrap.dedent("""
    import sys, threading
    import numpy as np
    sys.path.insert(0, {tests!r})
    import fastml, fastml.cli
    from fastml.kernels import _jit
    import test_concurrency as tc

    assert _jit.threading_layer() == "workqueue", _jit.threading_layer()
    if {unguarded}:
        _jit._serialise_launches = False  # switch the guard off: shows that it is needed
        x = [np.random.default_rng(i).standard_normal(50_000).astype(np.float32) for i in range(8)]
        barrier = threading.Barrier(8)

        def spin(i):
            barrier.wait()
            for _ in range(500):
                fastml.F.relu(x[i])

        threads = [threading.Thread(target=spin, args=(i,)) for i in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("survived")
    else:
        expected = tc._serial()
        for round_ in range(2):
            barrier = threading.Barrier(8)
            results = [None] * 8

            def run(worker):
                results[worker] = tc._run_worker(worker, barrier)

            threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            for worker in range(8):
                tc._assert_same(results[worker], expected[worker], f"round {{round_}}, worker {{worker}}")
        print("concurrent calls:", fastml.cli.info()["concurrent calls"])
""")


def _run_workqueue(tmp_path, unguarded: bool):
    tests = os.path.dirname(os.path.abspath(__file__))
    script = tmp_path / "workqueue_threads.py"
    script.write_text(_WORKQUEUE_SCRIPT.format(tests=tests, unguarded=unguarded))
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env,
                          cwd=tmp_path, check=False)


def test_workqueue_layer_is_guarded(tmp_path):
    result = _run_workqueue(tmp_path, unguarded=False)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "concurrent calls: guarded: workqueue is not thread-safe" in result.stdout


def test_workqueue_layer_without_the_guard_aborts(tmp_path):
    """The reason for the guard: Numba's workqueue layer kills the process on concurrent launches."""
    result = _run_workqueue(tmp_path, unguarded=True)
    if result.returncode == 0:  # pragma: no cover - the threads never overlapped (8 x 500 launches)
        pytest.skip("the unguarded threads happened not to overlap")
    assert "Concurrent access has been detected" in result.stderr
