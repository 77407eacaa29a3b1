"""Output-size arithmetic and receptive fields, against the ops themselves, PyTorch and textbook values."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastml
from fastml import conv_output_shape, pool_output_shape, receptive_field

try:  # PyTorch is a test peer only: the torch comparisons run when it is installed
    import torch
    import torch.nn as tnn

    torch.set_num_threads(1)  # tiny shapes; idle spinning torch threads would starve Numba's
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

F = fastml.F
TORCH_ERRORS = (RuntimeError, ValueError)


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


# --- conv_output_shape / pool_output_shape --------------------------------------------------

@pytest.mark.parametrize("args,kwargs,expected", [
    ((28, 5), {}, (24, 24)),
    (((28, 28), 5), {}, (24, 24)),
    (((1, 3, 28, 30), 5), {}, (24, 26)),                 # a full NCHW shape
    (([32, 32], 3), dict(stride=2, padding=1), (16, 16)),
    (((7, 9), (3, 5)), dict(stride=(2, 1), padding=(1, 2)), (4, 9)),
    ((10, 3), dict(dilation=2), (6, 6)),
    ((10, 4), dict(padding="same"), (10, 10)),           # even kernel
    ((10, 4), dict(padding="same", dilation=3), (10, 10)),
    ((10, 4), dict(padding="valid"), (7, 7)),
    ((5, 1), dict(stride=3), (2, 2)),
])
def test_conv_output_shape_examples(args, kwargs, expected):
    assert conv_output_shape(*args, **kwargs) == expected


@pytest.mark.parametrize("args,kwargs,expected", [
    (((3, 3), 2), dict(stride=1), (2, 2)),
    (((5, 5), 2), dict(ceil_mode=True), (3, 3)),
    (((5, 5), 2), {}, (2, 2)),
    (((1, 1, 6, 7), 3), dict(stride=2, padding=1), (3, 4)),
    ((6, 2), dict(stride=2, padding=1, ceil_mode=True), (4, 4)),  # the last window starts in the input
    ((5, 3), dict(stride=2, padding=1, ceil_mode=True), (3, 3)),  # a window starting in the padding is dropped
    ((9, 3), dict(dilation=2), (2, 2)),           # stride defaults to the kernel size, not the dilated span
    ((9, 3), dict(stride=1, dilation=4), (1, 1)),
])
def test_pool_output_shape_examples(args, kwargs, expected):
    assert pool_output_shape(*args, **kwargs) == expected


@st.composite
def conv_geometries(draw):
    size = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                             st.sampled_from(["valid", "same"])))
    stride = (1, 1) if padding == "same" and draw(st.booleans()) else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return size, kernel, dict(stride=stride, padding=padding, dilation=dilation)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@settings(max_examples=200, deadline=None)
@given(geo=conv_geometries())
def test_conv_output_shape_matches_conv2d_and_torch(geo):
    size, kernel, kwargs = geo
    x = np.zeros((1, 1) + size, np.float32)
    weight = np.zeros((1, 1) + kernel, np.float32)
    try:
        expected = conv_output_shape(size, kernel, **kwargs)
    except ValueError:
        with pytest.raises(ValueError, match="^conv2d: "):
            F.conv2d(x, weight, **kwargs)
        if torch is not None:
            with pytest.raises(TORCH_ERRORS):
                torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(weight), **kwargs)
        return
    assert F.conv2d(x, weight, **kwargs).shape[2:] == expected
    if torch is not None:
        assert tuple(torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(weight), **kwargs).shape[2:]) == expected


@st.composite
def pool_geometries(draw):
    size = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return size, kernel, dict(
        stride=draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3)))),
        padding=(draw(st.integers(0, 3)), draw(st.integers(0, 3))),  # sometimes more than half the kernel
        dilation=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        ceil_mode=draw(st.booleans()))


@settings(max_examples=200, deadline=None)
@given(geo=pool_geometries())
def test_pool_output_shape_matches_pooling_and_torch(geo):
    size, kernel, kwargs = geo
    x = np.zeros((1, 1) + size, np.float32)
    avg_kwargs = {k: v for k, v in kwargs.items() if k != "dilation"}
    for op, op_kwargs in ((F.max_pool2d, kwargs), (F.avg_pool2d, avg_kwargs)):
        try:
            expected = pool_output_shape(size, kernel, **op_kwargs)
        except ValueError as exc:
            message = str(exc).replace("pool_output_shape: ", "")
            with pytest.raises(ValueError) as raised:
                op(x, kernel, **op_kwargs)
            assert str(raised.value).endswith(message)  # the same check, named for the op
            continue
        assert op(x, kernel, **op_kwargs).shape[2:] == expected
        if torch is not None:
            t_op = getattr(torch.nn.functional, op.__name__)
            assert tuple(t_op(torch.tensor(x), kernel, **op_kwargs).shape[2:]) == expected


# --- receptive_field --------------------------------------------------------------------------

def _last(rows):
    row = rows[-1]
    return row.receptive_field[0], row.jump[0], row.size[0]


def test_stacked_3x3_convs():
    """Textbook: n stacked 3x3 convs see 2n+1 pixels; a 2x2/2 pool doubles the jump."""
    assert _last(receptive_field([(3, 1, 1)] * 2, 32)) == (5, 1, 32)
    assert _last(receptive_field([(3, 1, 1)] * 3, 32)) == (7, 1, 32)
    rows = receptive_field([(3, 1, 1), (2, 2, 0), (3, 1, 1)], 32)
    assert [(r.receptive_field[0], r.jump[0], r.size[0]) for r in rows] == [(1, 1, 32), (3, 1, 32), (4, 2, 16), (8, 2, 16)]
    assert rows[0].name == "input" and rows[0].start == (0.5, 0.5)


def test_dilated_stack_grows_exponentially():
    rows = receptive_field([dict(kernel_size=3, padding=d, dilation=d) for d in (1, 2, 4, 8)], 64)
    assert [r.receptive_field[0] for r in rows[1:]] == [3, 7, 15, 31]
    assert all(r.size == (64, 64) and r.jump == (1, 1) for r in rows)


LENET = [(5, 1, 0), (2, 2, 0), (5, 1, 0), (2, 2, 0)]


def test_lenet():
    rows = receptive_field(LENET, (1, 1, 32, 32))
    assert [r.size[0] for r in rows] == [32, 28, 14, 10, 5]
    assert [r.receptive_field[0] for r in rows] == [1, 5, 6, 14, 16]
    assert [r.jump[0] for r in rows] == [1, 1, 2, 2, 4]


def _vgg16_layers():
    layers = []
    for convs in (2, 2, 3, 3, 3):
        layers += [dict(kernel_size=3, padding=1, name="conv")] * convs + [dict(kernel_size=2, stride=2, name="pool")]
    return layers


def test_vgg16():
    rows = receptive_field(_vgg16_layers(), 224)
    pools = [r for r in rows if r.name.endswith("pool")]
    assert [r.size[0] for r in pools] == [112, 56, 28, 14, 7]
    assert [r.jump[0] for r in pools] == [2, 4, 8, 16, 32]
    assert [r.receptive_field[0] for r in pools] == [6, 16, 44, 100, 212]
    assert rows[-2].receptive_field == (196, 196)  # conv5_3


def test_alexnet():
    layers = [(11, 4, 0), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1), (3, 1, 1), (3, 2, 0)]
    rows = receptive_field(layers, 227)
    assert [r.size[0] for r in rows] == [227, 55, 27, 27, 13, 13, 13, 13, 6]
    assert [r.receptive_field[0] for r in rows] == [1, 11, 19, 51, 67, 99, 131, 163, 195]
    assert rows[-1].jump == (32, 32)


def test_non_square_layers_and_input():
    rows = receptive_field([dict(kernel_size=(3, 5), stride=(1, 2), padding=(1, 2)), ((2, 1), (2, 1), 0)], (16, 20))
    assert rows[1].size == (16, 10) and rows[1].receptive_field == (3, 5) and rows[1].jump == (1, 2)
    assert rows[2].size == (8, 10) and rows[2].receptive_field == (4, 5) and rows[2].jump == (2, 2)


def test_same_padding_with_even_kernel_keeps_the_size():
    rows = receptive_field([dict(kernel_size=4, padding="same"), dict(kernel_size=2, padding="same", dilation=3)], 10)
    assert [r.size for r in rows] == [(10, 10)] * 3
    assert rows[1].receptive_field == (4, 4) and rows[2].receptive_field == (7, 7)
    # PyTorch puts the odd padding row/column after the input: output 0 sees pixels -1..2, centred at 1.0
    assert rows[1].start == (1.0, 1.0) and rows[2].start == (1.5, 1.5)


def test_layers_without_a_kernel_are_skipped():
    rows = receptive_field([(3, 1, 1), {"name": "relu"}, object(), (3, 1, 1)], 8)
    assert len(rows) == 3 and rows[-1].receptive_field == (5, 5)
    assert "rf 5x5" in str(rows[-1])


def test_pool_with_default_stride_in_dict_and_tuple():
    by_dict = receptive_field([dict(kernel_size=2, stride=None)], 8)
    by_tuple = receptive_field([(2, None, 0)], 8)
    assert by_dict[-1].size == by_tuple[-1].size == (4, 4)
    assert by_dict[-1].jump == by_tuple[-1].jump == (2, 2)


def _torch_stack():
    return tnn.Sequential(
        tnn.Conv2d(1, 1, 5), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(1, 1, 3, padding=2, dilation=2), tnn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
        tnn.Conv2d(1, 1, (4, 2), padding="same"), tnn.MaxPool2d(3, stride=2, ceil_mode=True), tnn.Flatten(),
    )


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_torch_layers_tuples_and_dicts_agree():
    pytest.importorskip("torch")
    stack = _torch_stack()
    as_tuples = [(5, 1, 0), (2, 2, 0), (3, 1, 2, 2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                 dict(kernel_size=(4, 2), padding="same"), dict(kernel_size=3, stride=2, ceil_mode=True)]
    from_torch = receptive_field(stack, (1, 1, 29, 31))
    from_tuples = receptive_field(as_tuples, (29, 31))
    strip = lambda rows: [(r.size, r.receptive_field, r.jump, r.start) for r in rows]  # noqa: E731
    assert strip(from_torch) == strip(from_tuples)
    # the sizes are those PyTorch produces, layer by layer
    x = torch.zeros(1, 1, 29, 31)
    sizes = [tuple(x.shape[2:])]
    for layer in stack:
        x = layer(x)
        if hasattr(layer, "kernel_size"):
            sizes.append(tuple(x.shape[2:]))
    assert [r.size for r in from_torch] == sizes


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("stack_name", ["convs", "dilated", "strided", "same_even"])
def test_receptive_field_and_start_match_autograd(stack_name):
    """The input pixels that reach one output unit (non-zero gradient with all-ones weights)
    span exactly `receptive_field`, centred on `start + index * jump`."""
    pytest.importorskip("torch")
    stacks = {
        "convs": [tnn.Conv2d(1, 1, 3, padding=1), tnn.Conv2d(1, 1, 3, padding=1), tnn.AvgPool2d(2), tnn.Conv2d(1, 1, 3)],
        "dilated": [tnn.Conv2d(1, 1, 3, dilation=2, padding=2), tnn.Conv2d(1, 1, 2, dilation=3), tnn.AvgPool2d(3, 2, 1)],
        "strided": [tnn.Conv2d(1, 1, 5, stride=2, padding=2), tnn.AvgPool2d(3, stride=2), tnn.Conv2d(1, 1, (3, 2), stride=(1, 3))],
        "same_even": [tnn.Conv2d(1, 1, 4, padding="same"), tnn.AvgPool2d(2), tnn.Conv2d(1, 1, 2, padding="same", dilation=3)],
    }
    layers = stacks[stack_name]
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, tnn.Conv2d):
                layer.weight.fill_(1.0)
                layer.bias.zero_()
    size = (40, 41)
    row = receptive_field(layers, size)[-1]
    x = torch.ones((1, 1) + size, requires_grad=True)
    out = tnn.Sequential(*layers)(x)
    assert tuple(out.shape[2:]) == row.size
    i, j = row.size[0] // 2, row.size[1] // 2  # an inner unit, so padding does not clip its field
    out[0, 0, i, j].backward()
    hit_rows = np.nonzero(x.grad[0, 0].abs().sum(dim=1).numpy())[0]
    hit_cols = np.nonzero(x.grad[0, 0].abs().sum(dim=0).numpy())[0]
    for hits, axis, index in ((hit_rows, 0, i), (hit_cols, 1, j)):
        lo, hi = hits[0], hits[-1]
        assert hi - lo + 1 == row.receptive_field[axis]
        assert (lo + hi + 1) / 2 == pytest.approx(row.start[axis] + index * row.jump[axis])
