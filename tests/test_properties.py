"""Property tests over the conv / pool / recurrent argument space, invalid arguments included.

Each drawn configuration is judged by a small predicate written here, independently of
fastml's own checks: a valid one must give the shape ``conv_output_shape`` / ``pool_output_shape``
predict (and the predicate's own formula) with the cpu backend matching ``reference``; an
invalid one must raise the documented ValueError / TypeError, naming the function, before
any kernel runs. CI draws a few hundred configurations; ``pytest -m slow`` over 2,000.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from _compare import assert_close
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fastml

F = fastml.F

# (CI examples, nightly examples) per family: 310 in CI, 2,100 with -m slow.
EXAMPLES = {"conv": (150, 1000), "pool": (100, 700), "recurrent": (60, 400)}
COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


def _expect(problems, fn, call):
    """``call`` must raise the problems' exception type (either, if they differ), naming ``fn``."""
    types = {exc for exc, _ in problems}
    expected = types.pop() if len(types) == 1 else (ValueError, TypeError)
    with pytest.raises(expected, match="^" + re.escape(f"{fn}: ")):
        call()


def _pair(value):
    return value if isinstance(value, tuple) else (value, value)


def pick(*values):
    """One of ``values``: repeats weight the draw, so that each bad value is rare and about half of
    all configurations are valid, half invalid."""
    return st.sampled_from(values)


def int_or_pair(*values):
    return st.one_of(pick(*values), st.tuples(pick(*values), pick(*values)))


# --- conv2d ---------------------------------------------------------------------------------------
@st.composite
def conv_configs(draw):
    groups = draw(pick(1, 1, 1, 2, 3, 0))
    g = max(groups, 1)
    c_in = draw(st.integers(1, 2)) * g + draw(pick(*[0] * 11, 1))   # now and then not divisible
    out_ch = draw(st.integers(1, 2)) * g + draw(pick(*[0] * 11, 1))
    c_group = c_in // g if draw(pick(*[True] * 11, False)) else draw(st.integers(1, 3))
    return {
        "n": draw(st.integers(1, 2)), "c_in": c_in, "h": draw(st.integers(1, 8)), "w": draw(st.integers(1, 8)),
        "out_ch": out_ch, "c_group": max(c_group, 1),
        "kernel": (draw(st.integers(1, 4)), draw(st.integers(1, 4))),
        "stride": draw(int_or_pair(*[1] * 6, 2, 2, 3, 0)),
        "padding": draw(st.one_of(int_or_pair(*[0] * 6, 1, 1, 2, 3, -1), pick("same", "same", "valid", "full"))),
        "dilation": draw(int_or_pair(*[1] * 8, 2, 3, 0)),
        "groups": groups, "bias": draw(pick(*["none", "ok"] * 6, "wrong")),
        "dtype": draw(pick(np.float32, np.float64)), "weight_dtype_differs": draw(st.integers(0, 15)) == 0,
    }


def conv_problems(c):
    """The predicate: what is wrong with a conv configuration, as (exception type, reason) pairs."""
    problems = []
    stride, dilation = _pair(c["stride"]), _pair(c["dilation"])
    if c["groups"] < 1:
        problems.append((ValueError, "groups"))
    elif c["c_in"] != c["c_group"] * c["groups"] or c["out_ch"] % c["groups"]:
        problems.append((ValueError, "channels"))
    if min(stride) < 1:
        problems.append((ValueError, "stride"))
    if min(dilation) < 1:
        problems.append((ValueError, "dilation"))
    if c["weight_dtype_differs"]:
        problems.append((TypeError, "dtype"))
    if c["bias"] == "wrong":
        problems.append((ValueError, "bias"))
    padding = c["padding"]
    if padding == "full":
        problems.append((ValueError, "padding word"))
    elif padding == "same" and stride != (1, 1):
        problems.append((ValueError, "same with stride"))
    elif not isinstance(padding, str) and min(_pair(padding)) < 0:
        problems.append((ValueError, "padding"))
    if not problems and min(conv_size(c)) < 1:
        problems.append((ValueError, "kernel larger than padded input"))
    return problems


def conv_size(c):
    """floor((n + 2p - d*(k-1) - 1) / s) + 1 per dimension ("same": n)."""
    if c["padding"] == "same":
        return c["h"], c["w"]
    pads = (0, 0) if c["padding"] == "valid" else _pair(c["padding"])
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, p, d, k, s in zip((c["h"], c["w"]), pads, _pair(c["dilation"]), c["kernel"], _pair(c["stride"])))


def check_conv(c):
    rng = np.random.default_rng(0)
    dtype = c["dtype"]
    x = rng.standard_normal((c["n"], c["c_in"], c["h"], c["w"])).astype(dtype)
    w_dtype = np.float64 if (c["weight_dtype_differs"] and dtype == np.float32) else (
        np.float32 if c["weight_dtype_differs"] else dtype)
    weight = rng.standard_normal((c["out_ch"], c["c_group"]) + c["kernel"]).astype(w_dtype)
    bias = {"none": None, "ok": rng.standard_normal(c["out_ch"]).astype(dtype),
            "wrong": np.zeros(c["out_ch"] + 1, dtype)}[c["bias"]]
    args = {"stride": c["stride"], "padding": c["padding"], "dilation": c["dilation"], "groups": c["groups"]}
    problems = conv_problems(c)
    event("invalid" if problems else "valid")
    if problems:
        _expect(problems, "conv2d", lambda: F.conv2d(x, weight, bias, **args, backend="cpu"))
        return
    out = F.conv2d(x, weight, bias, **args, backend="cpu")
    predicted = fastml.conv_output_shape((c["h"], c["w"]), c["kernel"], c["stride"], c["padding"], c["dilation"])
    assert predicted == conv_size(c)
    assert out.shape == (c["n"], c["out_ch"]) + predicted
    assert_close(out, F.conv2d(x, weight, bias, **args, backend="reference"),
                 reduction=c["c_group"] * c["kernel"][0] * c["kernel"][1])


@settings(max_examples=EXAMPLES["conv"][0], **COMMON)
@given(conv_configs())
def test_conv2d_shape_or_documented_error(config):
    check_conv(config)


@pytest.mark.slow
@settings(max_examples=EXAMPLES["conv"][1], **COMMON)
@given(conv_configs())
def test_conv2d_shape_or_documented_error_nightly(config):
    check_conv(config)


# --- max / avg / adaptive pooling -------------------------------------------------------------------
@st.composite
def pool_configs(draw):
    op = draw(st.sampled_from(["max", "avg", "adaptive_avg", "adaptive_max"]))
    return {
        "op": op, "n": draw(st.integers(1, 2)), "c": draw(st.integers(1, 2)),
        "h": draw(st.integers(1, 8)), "w": draw(st.integers(1, 8)),
        "kernel": draw(int_or_pair(*[1, 2, 2, 3, 3, 4] * 2, 0)),
        "stride": draw(st.one_of(st.none(), int_or_pair(*[1, 1, 2, 2, 3] * 2, 0))),
        "padding": draw(int_or_pair(*[0] * 8, 1, 1, 1, 2, -1)),
        "dilation": draw(int_or_pair(*[1] * 8, 2, 3, 0)) if op == "max" else 1,
        "ceil_mode": draw(st.booleans()), "count_include_pad": draw(st.booleans()),
        "output_size": draw(int_or_pair(1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 0, -1)),
        "dtype": draw(pick(np.float32, np.float64)),
    }


def pool_size(n, k, s, p, d, ceil_mode):
    span = n + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:  # the last window must start inside the input or left padding
        out -= 1
    return out


def pool_problems(c):
    if c["op"].startswith("adaptive"):
        return [(ValueError, "output_size")] if min(_pair(c["output_size"])) < 1 else []
    kernel, padding, dilation = _pair(c["kernel"]), _pair(c["padding"]), _pair(c["dilation"])
    stride = kernel if c["stride"] is None else _pair(c["stride"])
    problems = [(ValueError, name) for name, value, low in
                (("kernel_size", kernel, 1), ("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1))
                if min(value) < low]
    if problems:
        return problems
    if any(2 * p > k for p, k in zip(padding, kernel)):
        return [(ValueError, "padding over half the kernel")]
    sizes = [pool_size(n, k, s, p, d, c["ceil_mode"])
             for n, k, s, p, d in zip((c["h"], c["w"]), kernel, stride, padding, dilation)]
    if min(sizes) < 1:
        return [(ValueError, "kernel larger than padded input")]
    # no window may hold padding only: brute force over every window's taps
    for n, k, s, p, d, out in zip((c["h"], c["w"]), kernel, stride, padding, dilation, sizes):
        if any(all(not 0 <= i * s - p + j * d < n for j in range(k)) for i in range(out)):
            return [(ValueError, "window of padding only")]
    return []


def pool_call(c, x, backend):
    if c["op"] == "adaptive_avg":
        return F.adaptive_avg_pool2d(x, c["output_size"], backend=backend)
    if c["op"] == "adaptive_max":
        return F.adaptive_max_pool2d(x, c["output_size"], return_indices=True, backend=backend)
    if c["op"] == "max":
        return F.max_pool2d(x, c["kernel"], c["stride"], c["padding"], c["dilation"], c["ceil_mode"],
                            return_indices=True, backend=backend)
    return F.avg_pool2d(x, c["kernel"], c["stride"], c["padding"], c["ceil_mode"], c["count_include_pad"],
                        backend=backend)


def check_pool(c):
    x = np.random.default_rng(0).standard_normal((c["n"], c["c"], c["h"], c["w"])).astype(c["dtype"])
    fn = c["op"] + "_pool2d"
    problems = pool_problems(c)
    event(f"{fn} {'invalid' if problems else 'valid'}")
    if problems:
        _expect(problems, fn, lambda: pool_call(c, x, "cpu"))
        return
    got, expected = pool_call(c, x, "cpu"), pool_call(c, x, "reference")
    if c["op"].startswith("adaptive"):
        predicted = _pair(c["output_size"])
    else:
        predicted = fastml.pool_output_shape((c["h"], c["w"]), c["kernel"], c["stride"], c["padding"],
                                             c["dilation"], c["ceil_mode"])
        stride = c["kernel"] if c["stride"] is None else c["stride"]
        assert predicted == tuple(pool_size(n, k, s, p, d, c["ceil_mode"]) for n, k, s, p, d in zip(
            (c["h"], c["w"]), _pair(c["kernel"]), _pair(stride), _pair(c["padding"]), _pair(c["dilation"])))
    if isinstance(got, tuple):  # max pooling: values and indices
        np.testing.assert_array_equal(got[1], expected[1])
        got, expected = got[0], expected[0]
    assert got.shape == (c["n"], c["c"]) + tuple(predicted)
    assert_close(got, expected)


@settings(max_examples=EXAMPLES["pool"][0], **COMMON)
@given(pool_configs())
def test_pooling_shape_or_documented_error(config):
    check_pool(config)


@pytest.mark.slow
@settings(max_examples=EXAMPLES["pool"][1], **COMMON)
@given(pool_configs())
def test_pooling_shape_or_documented_error_nightly(config):
    check_pool(config)


# --- recurrent sequences ---------------------------------------------------------------------------
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "gru_reset_before": 3}


@st.composite
def recurrent_configs(draw):
    t, n = draw(pick(*[1, 2, 3, 4] * 3, 0)), draw(pick(*[1, 2, 3] * 4, 0))
    lengths = st.lists(st.integers(1, t), min_size=n, max_size=n) if t else st.none()
    return {
        "mode": draw(pick(*sorted(GATES))), "t": t, "n": n, "i": draw(st.integers(1, 3)),
        "hidden": draw(st.integers(1, 3)), "layers": draw(st.integers(1, 2)), "bidirectional": draw(st.booleans()),
        "batch_first": draw(st.booleans()), "bias": draw(st.booleans()), "with_state": draw(st.booleans()),
        "input_size_off": draw(pick(*[0] * 11, 1)), "state_layers_off": draw(pick(*[0] * 5, 1)),
        "lengths": draw(st.one_of(st.none(), lengths, lengths,   # and now and then out of range or too few
                                  st.lists(st.integers(-1, 6), min_size=max(n - 1, 0), max_size=n))),
        "dropout": draw(pick(*[0.0] * 8, 0.5, 0.5, 1.5)),
        "dtype": draw(pick(np.float32, np.float64)),
    }


def recurrent_problems(c):
    problems = []
    if c["input_size_off"]:
        problems.append((ValueError, "input size"))
    if c["t"] < 1 or c["n"] < 1:
        problems.append((ValueError, "empty input"))
    lengths = c["lengths"]
    if lengths is not None and c["t"] >= 1 and c["n"] >= 1 and (
            len(lengths) != c["n"] or min(lengths) < 1 or max(lengths) > c["t"]):
        problems.append((ValueError, "lengths"))
    if c["with_state"] and c["state_layers_off"]:
        problems.append((ValueError, "state shape"))
    if c["dropout"] > 1:
        problems.append((ValueError, "dropout"))
    return problems


def check_recurrent(c):
    rng = np.random.default_rng(0)
    dtype, hidden, dirs = c["dtype"], c["hidden"], 2 if c["bidirectional"] else 1
    gates = GATES[c["mode"]] * hidden
    shape = (c["n"], c["t"], c["i"]) if c["batch_first"] else (c["t"], c["n"], c["i"])
    x = rng.standard_normal(shape).astype(dtype)
    weights = []
    for layer in range(c["layers"]):
        in_size = c["i"] + c["input_size_off"] if layer == 0 else dirs * hidden
        for _ in range(dirs):
            arrays = [rng.uniform(-0.5, 0.5, s).astype(dtype) for s in ((gates, in_size), (gates, hidden))]
            arrays += [rng.uniform(-0.5, 0.5, gates).astype(dtype) for _ in range(2)] if c["bias"] else [None, None]
            weights.append(tuple(arrays))
    hx = None
    if c["with_state"]:
        states = c["layers"] * dirs + c["state_layers_off"]
        h0 = rng.standard_normal((states, c["n"], hidden)).astype(dtype)
        hx = (h0, rng.standard_normal(h0.shape).astype(dtype)) if c["mode"] == "lstm" else h0
    lengths = None if c["lengths"] is None else np.array(c["lengths"], dtype=np.int64)
    args = {"num_layers": c["layers"], "bidirectional": c["bidirectional"], "batch_first": c["batch_first"],
            "dropout": c["dropout"], "lengths": lengths}
    problems = recurrent_problems(c)
    event("invalid" if problems else "valid")
    if problems:
        _expect(problems, "rnn_sequence", lambda: F.rnn_sequence(x, hx, weights, c["mode"], **args, backend="cpu"))
        return
    out, h_n, c_n, ctx = F.rnn_sequence(x, hx, weights, c["mode"], **args, keep=True, backend="cpu")
    ref_out, ref_h, ref_c, ref_ctx = F.rnn_sequence(x, hx, weights, c["mode"], **args, keep=True,
                                                    backend="reference")
    assert out.shape == shape[:2] + (dirs * hidden,)
    assert h_n.shape == (c["layers"] * dirs, c["n"], hidden)
    assert_close(out, ref_out)
    assert_close(h_n, ref_h)
    if c["mode"] == "lstm":
        assert_close(c_n, ref_c)
    grad_out = rng.standard_normal(out.shape).astype(dtype)
    grads = F.rnn_sequence_backward(ctx, grad_out)
    ref_grads = F.rnn_sequence_backward(ref_ctx, grad_out)
    assert_close(grads.input, ref_grads.input, reduction=c["t"] * hidden)
    assert_close(grads.h0, ref_grads.h0, reduction=c["t"] * hidden)


@settings(max_examples=EXAMPLES["recurrent"][0], **COMMON)
@given(recurrent_configs())
def test_rnn_sequence_shape_or_documented_error(config):
    check_recurrent(config)


@pytest.mark.slow
@settings(max_examples=EXAMPLES["recurrent"][1], **COMMON)
@given(recurrent_configs())
def test_rnn_sequence_shape_or_documented_error_nightly(config):
    check_recurrent(config)


def test_nightly_runs_draw_at_least_2000_configurations():
    assert sum(nightly for _, nightly in EXAMPLES.values()) >= 2000
    assert 200 <= sum(ci for ci, _ in EXAMPLES.values()) <= 500
