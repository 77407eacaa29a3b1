"""Soak: 2,000 training iterations (forward, loss, backward, optimizer step) of a small CNN and of a
small LSTM keep the resident set flat: growth < 5% from the end of a 200-iteration warm-up to the end.

Each soak runs in a fresh interpreter (so the baseline is fastml's own, not the test session's) and
reads RSS from /proc/self/statm (psutil is not a dependency). The CI variant pins Numba to one thread:
on a busy 2-core runner every parallel kernel launch can cost milliseconds (threads waiting to be
scheduled), which would make 2 x 2,000 iterations take a minute; the `slow` variant soaks with every
thread.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ITERATIONS = 2000
WARMUP = 200
MAX_GROWTH = 0.05

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _soak(step, iterations=ITERATIONS, warmup=WARMUP) -> dict:
    """Run ``step()`` ``iterations`` times; RSS after the warm-up, every 200 iterations, and at the end."""
    import time

    samples = []
    for i in range(iterations):
        if i == warmup:
            start = time.perf_counter()
        if i >= warmup and (i - warmup) % 200 == 0:
            samples.append(_rss_bytes())
        loss = step()
    samples.append(_rss_bytes())
    base = samples[0]
    return {"iterations": iterations, "rss_after_warmup_mb": base / 2**20, "rss_end_mb": samples[-1] / 2**20,
            "growth": samples[-1] / base - 1, "max_growth": max(samples) / base - 1,
            "seconds_after_warmup": time.perf_counter() - start, "final_loss": float(loss)}


def _cnn_step():
    from fastml import losses, nn, optim

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 8)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, seed=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 3 * 3, 3, seed=1))
    loss, optimizer = losses.CrossEntropyLoss(), optim.SGD(net, lr=0.05, momentum=0.9)

    def step():
        optimizer.zero_grad()
        value = loss(net(x), labels)
        net.backward(loss.backward())
        optimizer.step()
        return value

    return step


def _lstm_step():
    from fastml import losses, nn, optim

    rng = np.random.default_rng(1)
    seq = rng.standard_normal((6, 4, 5)).astype(np.float32)  # (T, N, I)
    target = rng.standard_normal((4, 3)).astype(np.float32)
    lstm, head = nn.LSTM(5, 8, seed=0), nn.Linear(8, 3, seed=1)
    loss, optimizer = losses.MSELoss(), optim.Adam(nn.Sequential(lstm, head), lr=1e-3)

    def step():
        optimizer.zero_grad()
        output, _ = lstm(seq)
        value = loss(head(output[-1]), target)
        grad_output = np.zeros_like(output)
        grad_output[-1] = head.backward(loss.backward())
        lstm.backward(grad_output)
        optimizer.step()
        return value

    return step


def _main(model: str) -> None:
    """Entry point of the subprocess: print the soak's measurements as JSON."""
    print(json.dumps(_soak(_cnn_step() if model == "cnn" else _lstm_step())))


def _run(model: str, numba_threads: int | None) -> dict:
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    if numba_threads is not None:
        env["NUMBA_NUM_THREADS"] = str(numba_threads)
    code = f"import sys; sys.path.insert(0, {tests!r}); import test_soak; test_soak._main({model!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=env,
                            cwd=tests, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check(model, numba_threads):
    facts = _run(model, numba_threads)
    print(f"\nsoak {model} (numba threads: {numba_threads or 'all'}): {json.dumps(facts)}")
    assert facts["iterations"] == ITERATIONS
    assert np.isfinite(facts["final_loss"])
    assert facts["growth"] < MAX_GROWTH and facts["max_growth"] < MAX_GROWTH, facts


@pytest.mark.parametrize("model", ["cnn", "lstm"])
def test_soak_rss_stays_flat(model):
    _check(model, numba_threads=1)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn", "lstm"])
def test_soak_rss_stays_flat_all_threads(model):
    _check(model, numba_threads=None)
