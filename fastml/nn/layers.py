"""Feed-forward layers with PyTorch's constructor arguments, parameter names and default initialisation.

Each layer is thin: ``forward`` is one call into :mod:`fastml.functional`
(which validates and dispatches to the backend) and ``backward`` one call into
:mod:`fastml.functional.grad`. A layer keeps the arrays its backward needs
only in train mode outside ``fastml.no_grad()``.

Initialisation follows ``torch.nn``: weights Kaiming-uniform with a=sqrt(5)
(i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))), biases U(-1/sqrt(fan_in),
1/sqrt(fan_in)), embeddings N(0, 1). Draws come from ``seed=`` (an int or a
``np.random.Generator``) or from the global generator of ``fastml.manual_seed``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import functional as F
from .._checks import FLOAT_DTYPES, as_float_array, as_int, as_pair, contiguous
from ..device import is_device_array, multiply, to_device
from ..functional import grad as G
from . import init
from .module import Module


def _check_dtype(fn, dtype) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{fn}: `dtype` must be float32 or float64, got {dtype!r}") from None
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{fn}: `dtype` must be float32 or float64, got {dtype}")
    return dtype


def _check_grad_shape(fn, grad_output, shape) -> None:
    if tuple(grad_output.shape) != tuple(shape):
        raise ValueError(f"{fn}: `grad_output` must have the output's shape {tuple(shape)}, "
                         f"got {tuple(grad_output.shape)}")


def _check_bool(fn, name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: `{name}` must be a bool, got {value!r}")
    return bool(value)


class _Layer(Module):
    """A module whose parameters are also attributes (``layer.weight``), with the cache helpers."""

    def __getattr__(self, name):
        params = self.__dict__.get("_parameters")
        if params is not None and name in params:
            return params[name]
        if name == "bias":  # torch: a layer built with bias=False has bias None
            return None
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _input(self, x, fn=None):
        """``x`` as a float array of the layer's dtype (TypeError naming the layer otherwise)."""
        fn = fn or f"{type(self).__name__}.forward"
        x = as_float_array(x, fn, "input")
        dtype = getattr(self, "dtype", None)
        if dtype is not None and x.dtype != dtype:
            raise TypeError(f"{fn}: `input` dtype ({x.dtype}) must equal the layer's dtype ({dtype}); cast the "
                            f"input or build the layer with dtype={x.dtype.name}")
        return x

    def _keep(self, **saved):
        self._ctx = saved if self.keeps_cache else None

    def _saved(self):
        ctx = self.__dict__.get("_ctx")
        if ctx is None:
            raise RuntimeError(f"{type(self).__name__}.backward: no forward cache; call the layer in train mode "
                               f"outside fastml.no_grad() before backward")
        return ctx


class Linear(_Layer):
    r"""Fully connected layer ``y = x W^T + b``, as ``torch.nn.Linear``.

    Args:
        in_features, out_features: sizes of x's last dimension and of y's.
        bias: learn an additive bias.
        dtype: float32 (default) or float64 parameters; inputs must match.
        seed: int or ``np.random.Generator`` for the initialisation (default: the global generator).

    Shape:
        input ``(*, in_features)``, output ``(*, out_features)``; ``weight`` ``(out_features, in_features)``.

    Example:
        >>> layer = Linear(20, 30)
        >>> y = layer(np.zeros((128, 20), np.float32))
        >>> grad_x = layer.backward(np.ones_like(y))
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, seed=None):
        super().__init__()
        fn = "Linear"
        self.in_features = as_int(in_features, fn, "in_features", minimum=1)
        self.out_features = as_int(out_features, fn, "out_features", minimum=1)
        self.dtype = _check_dtype(fn, dtype)
        rng = init.generator(seed)
        self.register_parameter("weight", init.kaiming_uniform((self.out_features, self.in_features),
                                                               self.in_features, rng, self.dtype))
        if _check_bool(fn, "bias", bias):
            self.register_parameter("bias", init.fan_in_uniform((self.out_features,), self.in_features, rng,
                                                                self.dtype))

    def forward(self, input):
        x = self._input(input)
        self._keep(x=x)
        return F.linear(x, self.weight, self.bias, backend=self.backend)

    def backward(self, grad_output):
        x = self._saved()["x"]
        grad_x, grad_w, grad_b = G.linear_backward(grad_output, x, self.weight, (True, True, self.bias is not None),
                                                   backend=self.backend)
        self._accumulate("weight", grad_w)
        if self.bias is not None:
            self._accumulate("bias", grad_b)
        return grad_x

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(_Layer):
    r"""2-D convolution (cross-correlation) over NCHW input, as ``torch.nn.Conv2d``.

    Args:
        in_channels, out_channels: C and K.
        kernel_size, stride, dilation: int or pair. padding: int, pair, ``"valid"`` or ``"same"``.
        groups: channel groups. bias: learn a per-channel bias.
        padding_mode: only ``"zeros"``.
        dtype, seed: as :class:`Linear`.

    Shape:
        input ``(N, C, H, W)`` or ``(C, H, W)``; output ``(N, K, out_h, out_w)`` with
        ``out_h = floor((H + 2p - d*(R-1) - 1)/s) + 1``; ``weight`` ``(K, C/groups, R, S)``.

    Example:
        >>> conv = Conv2d(1, 6, 5, padding=2)
        >>> conv(np.zeros((4, 1, 28, 28), np.float32)).shape
        (4, 6, 28, 28)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", *, dtype=np.float32, seed=None):
        super().__init__()
        fn = "Conv2d"
        self.in_channels = as_int(in_channels, fn, "in_channels", minimum=1)
        self.out_channels = as_int(out_channels, fn, "out_channels", minimum=1)
        self.kernel_size = as_pair(kernel_size, fn, "kernel_size", minimum=1)
        self.stride = as_pair(stride, fn, "stride", minimum=1)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"{fn}: `padding` must be an int, a pair, 'valid' or 'same', got {padding!r}")
            self.padding = padding
        else:
            self.padding = as_pair(padding, fn, "padding", minimum=0)
        self.dilation = as_pair(dilation, fn, "dilation", minimum=1)
        if self.padding == "same" and self.stride != (1, 1):
            raise ValueError(f"{fn}: `padding`='same' requires `stride` 1, got {self.stride}")
        self.groups = as_int(groups, fn, "groups", minimum=1)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{fn}: `groups` (={self.groups}) must divide `in_channels` (={self.in_channels}) and "
                             f"`out_channels` (={self.out_channels})")
        if padding_mode != "zeros":
            raise ValueError(f"{fn}: `padding_mode` must be 'zeros' (the only mode fastml implements), "
                             f"got {padding_mode!r}")
        self.dtype = _check_dtype(fn, dtype)
        rng = init.generator(seed)
        fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.register_parameter("weight", init.kaiming_uniform(shape, fan_in, rng, self.dtype))
        if _check_bool(fn, "bias", bias):
            self.register_parameter("bias", init.fan_in_uniform((self.out_channels,), fan_in, rng, self.dtype))

    def _hyper(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def forward(self, input):
        x = self._input(input)
        self._keep(x=x)
        return F.conv2d(x, self.weight, self.bias, **self._hyper(), backend=self.backend)

    def backward(self, grad_output):
        x = self._saved()["x"]
        grad_x, grad_w, grad_b = G.conv2d_backward(grad_output, x, self.weight, **self._hyper(),
                                                   output_mask=(True, True, self.bias is not None),
                                                   backend=self.backend)
        self._accumulate("weight", grad_w)
        if self.bias is not None:
            self._accumulate("bias", grad_b)
        return grad_x

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class MaxPool2d(_Layer):
    """2-D max pooling, as ``torch.nn.MaxPool2d`` (``stride`` defaults to ``kernel_size``).

    Example:
        >>> MaxPool2d(2)(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))[0, 0]
        array([[ 5.,  7.],
               [13., 15.]], dtype=float32)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        fn = "MaxPool2d"
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.dilation = dilation
        self.return_indices = _check_bool(fn, "return_indices", return_indices)
        self.ceil_mode = _check_bool(fn, "ceil_mode", ceil_mode)
        as_pair(kernel_size, fn, "kernel_size", minimum=1)
        as_pair(self.stride, fn, "stride", minimum=1)
        as_pair(padding, fn, "padding", minimum=0)
        as_pair(dilation, fn, "dilation", minimum=1)

    def _hyper(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation,
                    ceil_mode=self.ceil_mode)

    def forward(self, input):
        x = self._input(input)
        if not (self.return_indices or self.keeps_cache):  # inference: no indices to make
            self._keep()
            return F.max_pool2d(x, **self._hyper(), backend=self.backend)
        out, indices = F.max_pool2d(x, **self._hyper(), return_indices=True, backend=self.backend)
        self._keep(x=x, indices=indices)
        return (out, indices) if self.return_indices else out

    def backward(self, grad_output):
        saved = self._saved()
        # indices this layer made and never returned (return_indices=False) need no range check
        return G.max_pool2d_backward(grad_output, saved["x"], **self._hyper(), indices=saved["indices"],
                                     backend=self.backend, _own_indices=not self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(_Layer):
    """2-D average pooling, as ``torch.nn.AvgPool2d``."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        fn = "AvgPool2d"
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = _check_bool(fn, "ceil_mode", ceil_mode)
        self.count_include_pad = _check_bool(fn, "count_include_pad", count_include_pad)
        self.divisor_override = divisor_override
        as_pair(kernel_size, fn, "kernel_size", minimum=1)
        as_pair(self.stride, fn, "stride", minimum=1)
        as_pair(padding, fn, "padding", minimum=0)

    def _hyper(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode,
                    count_include_pad=self.count_include_pad, divisor_override=self.divisor_override)

    def forward(self, input):
        x = self._input(input)
        self._keep(x=x)
        return F.avg_pool2d(x, **self._hyper(), backend=self.backend)

    def backward(self, grad_output):
        return G.avg_pool2d_backward(grad_output, self._saved()["x"], **self._hyper(), backend=self.backend)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(_Layer):
    """Average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d`` (1 = global average)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        x = self._input(input)
        self._keep(x=x)
        return F.adaptive_avg_pool2d(x, self.output_size, backend=self.backend)

    def backward(self, grad_output):
        return G.adaptive_avg_pool2d_backward(grad_output, self._saved()["x"], self.output_size,
                                              backend=self.backend)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Flatten(_Layer):
    """Flatten dimensions ``start_dim..end_dim`` into one, as ``torch.nn.Flatten`` (default: all but the batch)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = as_int(start_dim, "Flatten", "start_dim")
        self.end_dim = as_int(end_dim, "Flatten", "end_dim")

    def forward(self, input):
        x = self._input(input)
        fn = "Flatten.forward"
        ndim = max(x.ndim, 1)
        start, end = self.start_dim, self.end_dim
        for name, dim in (("start_dim", start), ("end_dim", end)):
            if not -ndim <= dim < ndim:
                raise ValueError(f"{fn}: `{name}` (={dim}) is out of range for a {x.ndim}-D input of shape {x.shape}")
        start, end = start % ndim, end % ndim
        if start > end:
            raise ValueError(f"{fn}: `start_dim` (={self.start_dim}) must not come after `end_dim` (={self.end_dim})")
        out = x.reshape(1) if x.ndim == 0 else contiguous(x).reshape(
            tuple(x.shape[:start]) + (-1,) + tuple(x.shape[end + 1:]))
        self._keep(shape=x.shape, out_shape=out.shape)
        return out

    def backward(self, grad_output):
        saved = self._saved()
        g = as_float_array(grad_output, "Flatten.backward", "grad_output")  # device arrays stay there
        _check_grad_shape("Flatten.backward", g, saved["out_shape"])
        return contiguous(g).reshape(saved["shape"])

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class ReLU(_Layer):
    """max(x, 0) elementwise, as ``torch.nn.ReLU`` (``inplace`` is accepted and ignored)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = _check_bool("ReLU", "inplace", inplace)

    def forward(self, input):
        x = self._input(input)
        self._keep(x=x)
        return F.relu(x, backend=self.backend)

    def backward(self, grad_output):
        return G.relu_backward(grad_output, self._saved()["x"], backend=self.backend)


class Sigmoid(_Layer):
    """1 / (1 + exp(-x)) elementwise, stable for any finite x."""

    def forward(self, input):
        out = F.sigmoid(self._input(input), backend=self.backend)
        self._keep(out=out)
        return out

    def backward(self, grad_output):
        return G.sigmoid_backward(grad_output, self._saved()["out"], backend=self.backend)


class Tanh(_Layer):
    """tanh(x) elementwise."""

    def forward(self, input):
        out = F.tanh(self._input(input), backend=self.backend)
        self._keep(out=out)
        return out

    def backward(self, grad_output):
        return G.tanh_backward(grad_output, self._saved()["out"], backend=self.backend)


def _implicit_dim(ndim):
    # torch's legacy rule when dim=None
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(_Layer):
    """exp(x - max) / sum(exp(x - max)) along ``dim``, as ``torch.nn.Softmax``."""

    _op, _grad = staticmethod(F.softmax), staticmethod(G.softmax_backward)

    def __init__(self, dim=None):
        super().__init__()
        self.dim = None if dim is None else as_int(dim, type(self).__name__, "dim")

    def forward(self, input):
        x = self._input(input)
        dim = _implicit_dim(x.ndim) if self.dim is None else self.dim
        out = self._op(x, dim, backend=self.backend)
        self._keep(out=out, dim=dim)
        return out

    def backward(self, grad_output):
        saved = self._saved()
        return self._grad(grad_output, saved["out"], saved["dim"], backend=self.backend)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """(x - max) - log(sum(exp(x - max))) along ``dim``, as ``torch.nn.LogSoftmax``."""

    _op, _grad = staticmethod(F.log_softmax), staticmethod(G.log_softmax_backward)


class Identity(_Layer):
    """f(x) = x (the notes' "linear" activation); accepts and ignores any arguments, like torch."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return F.identity(self._input(input), backend=self.backend)

    def backward(self, grad_output):
        return G.identity_backward(grad_output, backend=self.backend)


class Dropout(_Layer):
    """Zero each element with probability ``p`` in train mode and scale the rest by 1/(1-p); identity in eval mode.

    Args:
        p: drop probability in [0, 1].
        inplace: accepted for torch compatibility, ignored.
        seed: int or Generator for the masks (default: the global generator).
    """

    def __init__(self, p=0.5, inplace=False, *, seed=None):
        super().__init__()
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise TypeError(f"Dropout: `p` must be a number in [0, 1], got {p!r}")
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"Dropout: `p` must be in [0, 1], got {p}")
        self.p = float(p)
        self.inplace = _check_bool("Dropout", "inplace", inplace)
        self._rng = init.generator(seed) if seed is not None else None

    def forward(self, input):
        x = self._input(input)
        if not self.training or self.p == 0.0:
            self._keep(mask=None)
            return x
        rng = self._rng or init.generator()
        keep = rng.random(x.shape) >= self.p
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        mask = keep.astype(x.dtype) * x.dtype.type(scale)
        if is_device_array(x):  # the mask is drawn on the host and copied once; the product runs on the device
            mask = to_device(mask)
        self._keep(mask=mask)
        return multiply(x, mask)

    def backward(self, grad_output):
        mask = self._saved()["mask"]
        g = as_float_array(grad_output, "Dropout.backward", "grad_output")
        if mask is not None:
            _check_grad_shape("Dropout.backward", g, mask.shape)
        return g if mask is None else multiply(g, mask)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Embedding(_Layer):
    """A lookup table of ``num_embeddings`` vectors, as ``torch.nn.Embedding`` (weights N(0, 1)).

    Args:
        num_embeddings: vocabulary size. embedding_dim: vector size.
        padding_idx: this row starts at zero and gets no gradient.
        dtype, seed: as :class:`Linear`.

    Shape:
        input: integer indices of any shape ``(*)``; output ``(*, embedding_dim)``.
        ``backward`` returns None (indices have no gradient).

    On ``.to("cuda")`` the lookup is a gather kernel and the gradient a scatter-add with atomic adds;
    host indices are checked on the host and copied once per call, device indices are range-checked on
    the device (one int comes back; see :mod:`fastml.functional.embedding`).
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, *, dtype=np.float32, seed=None):
        super().__init__()
        fn = "Embedding"
        self.num_embeddings = as_int(num_embeddings, fn, "num_embeddings", minimum=1)
        self.embedding_dim = as_int(embedding_dim, fn, "embedding_dim", minimum=1)
        if padding_idx is not None:
            padding_idx = as_int(padding_idx, fn, "padding_idx")
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"{fn}: `padding_idx` must be within num_embeddings (={self.num_embeddings}), "
                                 f"got {padding_idx}")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        self.dtype = _check_dtype(fn, dtype)
        weight = init.generator(seed).standard_normal((self.num_embeddings, self.embedding_dim)).astype(self.dtype)
        if padding_idx is not None:
            weight[padding_idx] = 0
        self.register_parameter("weight", weight)

    def forward(self, input):
        self._keep(idx=input)
        return F.embedding(input, self.weight, self.padding_idx, backend=self.backend, fn="Embedding.forward")

    def backward(self, grad_output):
        grad_w = G.embedding_backward(grad_output, self._saved()["idx"], self.weight, self.padding_idx,
                                      backend=self.backend, fn="Embedding.backward")
        self._accumulate("weight", grad_w)
        return None

    def extra_repr(self):
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        return text + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")


class Sequential(_Layer):
    """A chain of modules: ``forward`` feeds each output to the next, ``backward`` runs them in reverse.

    Children are named ``"0"``, ``"1"``, ... (or by the keys of an ``OrderedDict``), so parameters are keyed
    ``"0.weight"`` like torch's.

    Example:
        >>> net = Sequential(Linear(4, 8), ReLU(), Linear(8, 2))
        >>> list(net.params)
        ['0.weight', '0.bias', '2.weight', '2.bias']
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, module in items:
            self.add_module(name, module)

    def add_module(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: every entry must be a fastml Module, got {type(module).__name__} "
                            f"for {name!r}")
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"Sequential: module `name` must be a non-empty str without '.', got {name!r}")
        setattr(self, name, module)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return modules[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, input):
        for module in self._modules.values():
            input = module(input)
        return input

    def backward(self, grad_output):
        for module in reversed(list(self._modules.values())):
            grad_output = module.backward(grad_output)
            if grad_output is None:
                break
        return grad_output


__all__ = ["Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "ReLU", "Sigmoid", "Tanh",
           "Softmax", "LogSoftmax", "Identity", "Dropout", "Embedding", "Sequential"]
