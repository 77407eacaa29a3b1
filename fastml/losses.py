"""Loss functions: ``loss(pred, target)`` returns the loss, ``loss.backward()`` its gradient with respect to ``pred``.

Each loss is an object, as in ``torch.nn``; calling it validates the arguments,
computes the loss in a numerically stable form and keeps what ``backward``
needs. ``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"`` (the
per-element / per-sample losses as an array).

Example:
    >>> loss = CrossEntropyLoss()
    >>> value = loss(logits, labels)        # a Python float
    >>> grad_logits = loss.backward()       # same shape and dtype as logits
    >>> model.backward(grad_logits)
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from ._checks import as_float_array, as_int, check_choice

REDUCTIONS = ("mean", "sum", "none")
_LOG_CLAMP = -100.0  # torch's BCELoss clamps log(p) at -100 so that p = 0 or 1 gives a finite loss


class _Loss:
    """Shared body: argument checks, reduction, and the backward bookkeeping."""

    def __init__(self, reduction="mean"):
        self.reduction = check_choice(reduction, REDUCTIONS, type(self).__name__, "reduction")
        self._grad = None

    @property
    def _fn(self):
        return type(self).__name__

    def _pred(self, pred):
        x = as_float_array(pred, self._fn, "input")
        if x.size == 0:
            raise ValueError(f"{self._fn}: `input` must not be empty, got shape {x.shape}")
        return x

    def _same_shape_target(self, x, target):
        if hasattr(target, "detach"):
            target = target.detach().cpu().numpy()
        if isinstance(target, np.ndarray) and target.dtype.kind in "iub":
            target = target.astype(x.dtype)
        y = as_float_array(target, self._fn, "target")
        if y.shape != x.shape:
            raise ValueError(f"{self._fn}: `target` shape {y.shape} must equal `input` shape {x.shape}")
        return y.astype(x.dtype, copy=False)

    def _reduce(self, elementwise, grad, count=None):
        """Reduce per-element losses and scale the matching gradient; store it for backward."""
        self._loss_shape = np.shape(elementwise)
        if self.reduction == "none":
            self._grad = grad
            return elementwise
        total = float(np.sum(elementwise, dtype=np.float64))
        if self.reduction == "mean":
            n = elementwise.size if count is None else count
            self._grad = grad / grad.dtype.type(n) if n else grad * 0
            return total / n if n else float("nan")
        self._grad = grad
        return total

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def backward(self, grad_output=None):
        """Gradient of the loss with respect to ``pred`` (times ``grad_output``; with ``reduction="none"`` an
        array of the loss's shape, default ones)."""
        if self._grad is None:
            raise RuntimeError(f"{self._fn}.backward: call the loss on (pred, target) first")
        if grad_output is None:
            return self._grad
        g = np.asarray(grad_output, dtype=self._grad.dtype)
        if self.reduction == "none":
            if g.shape != self._loss_shape:
                raise ValueError(f"{self._fn}.backward: `grad_output` must have the loss's shape {self._loss_shape}, "
                                 f"got {g.shape}")
            if g.ndim and self._grad.ndim > g.ndim:  # per-sample losses of a (N, C, ...) input
                g = np.expand_dims(g, 1)
        elif g.size != 1:
            raise ValueError(f"{self._fn}.backward: `grad_output` must be a scalar, got shape {g.shape}")
        return self._grad * g

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MAELoss(_Loss):
    """Mean absolute error |pred - target| (``torch.nn.L1Loss``); the gradient at 0 is 0, as in torch,
    and so is the gradient at NaN (torch's sign(NaN) is 0)."""

    def forward(self, pred, target):
        x = self._pred(pred)
        diff = x - self._same_shape_target(x, target)
        sign = np.sign(diff)
        return self._reduce(np.abs(diff), np.where(np.isnan(sign), 0, sign).astype(x.dtype))


L1Loss = MAELoss


class MSELoss(_Loss):
    """Mean squared error (pred - target)^2 (``torch.nn.MSELoss``)."""

    def forward(self, pred, target):
        x = self._pred(pred)
        diff = x - self._same_shape_target(x, target)
        return self._reduce(diff * diff, diff * x.dtype.type(2))


def _check_unit_interval(fn, name, array):
    finite = array[~np.isnan(array)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise ValueError(f"{fn}: every entry of `{name}` must lie in [0, 1], got values in "
                         f"[{finite.min():.4g}, {finite.max():.4g}]")


def _check_broadcast(fn, name, weight, shape):
    """``weight`` (or None) must broadcast to the input's ``shape`` without growing it, as in torch."""
    if weight is None:
        return
    try:
        fits = np.broadcast_shapes(weight.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{fn}: `{name}` shape {weight.shape} must broadcast to `input` shape {tuple(shape)}")


class BCELoss(_Loss):
    """Binary cross entropy -[y log p + (1 - y) log(1 - p)] of probabilities p (``torch.nn.BCELoss``).

    log is clamped at -100 as in torch, so p = 0 or 1 gives a finite loss. Prefer
    :class:`BCEWithLogitsLoss` after a final sigmoid: it is stable for any logit.
    """

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = None if weight is None else np.asarray(weight)

    def forward(self, pred, target):
        fn = self._fn
        p = self._pred(pred)
        y = self._same_shape_target(p, target)
        _check_unit_interval(fn, "input", p)
        _check_unit_interval(fn, "target", y)
        _check_broadcast(fn, "weight", self.weight, p.shape)
        with np.errstate(divide="ignore"):
            log_p = np.maximum(np.log(p), _LOG_CLAMP)
            log_1mp = np.maximum(np.log1p(-p), _LOG_CLAMP)
        losses = -(y * log_p + (1 - y) * log_1mp)
        # torch's formula: (p - y) / max(p (1 - p), 1e-12)
        grad = (p - y) / np.maximum(p * (1 - p), p.dtype.type(np.float32(1e-12)))  # torch: a float EPSILON
        if self.weight is not None:
            losses, grad = losses * self.weight, grad * self.weight
        return self._reduce(losses.astype(p.dtype, copy=False), grad.astype(p.dtype, copy=False))


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy of sigmoid(logits), computed as ``max(x, 0) - x y + log(1 + exp(-|x|))``
    (``torch.nn.BCEWithLogitsLoss``); stable for any finite logit. ``pos_weight`` scales the positive term."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.weight = None if weight is None else np.asarray(weight)
        self.pos_weight = None if pos_weight is None else np.asarray(pos_weight)

    def forward(self, pred, target):
        x = self._pred(pred)
        y = self._same_shape_target(x, target)
        _check_unit_interval(self._fn, "target", y)
        _check_broadcast(self._fn, "weight", self.weight, x.shape)
        _check_broadcast(self._fn, "pos_weight", self.pos_weight, x.shape)
        softplus_neg = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)  # log(1 + exp(-x)) = -log sigmoid(x)
        sig = F.sigmoid(x)
        if self.pos_weight is None:
            losses = (1 - y) * x + softplus_neg
            grad = sig - y
        else:
            pw = self.pos_weight.astype(x.dtype)
            losses = (1 - y) * x + (1 + (pw - 1) * y) * softplus_neg
            grad = (pw * y + 1 - y) * sig - pw * y
        if self.weight is not None:
            losses, grad = losses * self.weight, grad * self.weight
        return self._reduce(losses.astype(x.dtype, copy=False), grad.astype(x.dtype, copy=False))


class CrossEntropyLoss(_Loss):
    r"""Categorical cross entropy ``-sum_c q_c log p_c`` (``torch.nn.CrossEntropyLoss``).

    Args:
        weight: optional per-class weights ``(C,)``.
        ignore_index: label whose samples are skipped (integer labels only), e.g. padding.
        reduction: ``"mean"`` (over non-ignored samples, weighted as torch), ``"sum"`` or ``"none"``.
        label_smoothing: ε in [0, 1]: the target becomes ``(1 - ε) onehot + ε / C``.
        from_logits: ``pred`` holds logits (default; ``p = softmax(pred)`` computed stably as
            log_softmax) or, when False, probabilities (log clamped at -100).

    Shape:
        pred ``(N, C)``, ``(C,)`` or ``(N, C, d1, ...)``; target integer labels ``(N,)`` /
        ``()`` / ``(N, d1, ...)`` in [0, C), or class probabilities of pred's shape.
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, from_logits=True):
        super().__init__(reduction)
        fn = self._fn
        if not isinstance(label_smoothing, (int, float, np.floating)) or isinstance(label_smoothing, bool):
            raise TypeError(f"{fn}: `label_smoothing` must be a number in [0, 1], got {label_smoothing!r}")
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"{fn}: `label_smoothing` must be in [0, 1], got {label_smoothing}")
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"{fn}: `from_logits` must be a bool, got {from_logits!r}")
        self.weight = None if weight is None else np.asarray(weight, dtype=np.float64)
        self.ignore_index = as_int(ignore_index, fn, "ignore_index")
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def forward(self, pred, target):
        fn = self._fn
        x = self._pred(pred)
        if x.ndim == 0:
            raise ValueError(f"{fn}: `input` must be 1-D (C,) or at least 2-D (N, C, ...), got shape ()")
        unbatched = x.ndim == 1
        if unbatched:
            x = x[None]
        num_classes = x.shape[1]
        if self.weight is not None and self.weight.shape != (num_classes,):
            raise ValueError(f"{fn}: `weight` must have shape ({num_classes},), got {self.weight.shape}")
        # classes last, one row per sample
        rows = np.moveaxis(x, 1, -1).reshape(-1, num_classes)
        if hasattr(target, "detach"):
            target = target.detach().cpu().numpy()
        if target is None or isinstance(target, (str, bytes, dict, set)):
            raise TypeError(f"{fn}: `target` must be an array, got {type(target).__name__}")
        try:
            t = np.asarray(target)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{fn}: `target` must be a rectangular array, got a ragged sequence ({exc})") from None
        if t.dtype.kind in "iu":
            q, sample_w, valid = self._label_targets(t, x, unbatched, num_classes, rows.dtype)
        elif t.dtype.kind == "f":
            label_shape = () if unbatched else (x.shape[0],) + x.shape[2:]
            if t.shape != np.shape(pred) and t.shape == label_shape:
                if not np.isfinite(t).all():
                    raise ValueError(f"{fn}: `target` holds NaN or Inf where integer class labels are expected "
                                     f"(its shape {t.shape} is `input`'s without the class dimension)")
                raise TypeError(f"{fn}: `target` class labels must have an integer dtype, got {t.dtype} (cast "
                                f"with .astype(np.int64); a float `target` of `input`'s shape holds probabilities)")
            q, sample_w, valid = self._prob_targets(t, pred, rows.dtype, num_classes)
        else:
            raise TypeError(f"{fn}: `target` must be integer class labels or float class probabilities, "
                            f"got dtype {t.dtype}")
        if self.from_logits:
            log_p = F.log_softmax(np.ascontiguousarray(rows), -1)
        else:
            _check_unit_interval(fn, "input", rows)
            with np.errstate(divide="ignore"):
                log_p = np.maximum(np.log(rows), rows.dtype.type(_LOG_CLAMP))
        terms = q * log_p
        if self._labels:  # a label picks log p of one class (torch gathers it): 0 * -inf elsewhere is no NaN
            terms = np.where(q == 0, 0, terms)
        losses = -np.sum(terms, axis=1) * sample_w
        if self.from_logits:
            grad = (np.exp(log_p) * np.sum(q, axis=1, keepdims=True) - q) * sample_w[:, None]
        else:
            clamped = log_p <= _LOG_CLAMP
            grad = np.where(clamped, 0, -q / np.where(clamped, 1, rows)) * sample_w[:, None]
        grad = grad.astype(rows.dtype, copy=False)
        losses = losses.astype(rows.dtype, copy=False)
        # back to pred's layout
        lead = np.moveaxis(x, 1, -1).shape
        grad = np.moveaxis(grad.reshape(lead), -1, 1)
        losses = losses.reshape(lead[:-1])
        if unbatched:
            grad, losses = grad[0], losses[0]
        grad = np.ascontiguousarray(grad)
        count = float(np.sum(sample_w[valid])) if self._labels else None
        if self.reduction == "mean" and not self._labels:
            count = losses.size if losses.ndim else 1
        return self._reduce(losses, grad, count)

    def _label_targets(self, t, x, unbatched, num_classes, dtype):
        fn = self._fn
        self._labels = True
        expected = (x.shape[0],) + x.shape[2:]
        if unbatched:
            expected = ()
            t = t.reshape(1) if t.ndim == 0 else t
            if t.shape != (1,):
                raise ValueError(f"{fn}: `target` must be a scalar label for an unbatched (C,) input, got shape "
                                 f"{np.shape(t)}")
        elif t.shape != expected:
            raise ValueError(f"{fn}: `target` shape {t.shape} must be {expected} (pred shape {x.shape} without the "
                             f"class dimension 1)")
        labels = t.reshape(-1).astype(np.int64)
        valid = labels != self.ignore_index
        bad = valid & ((labels < 0) | (labels >= num_classes))
        if bad.any():
            raise ValueError(f"{fn}: class labels in `target` must lie in [0, {num_classes}) (or equal ignore_index="
                             f"{self.ignore_index}), got {labels[bad][0]}")
        safe = np.where(valid, labels, 0)
        eps = self.label_smoothing
        q = np.full((labels.size, num_classes), eps / num_classes, dtype=dtype)
        q[np.arange(labels.size), safe] += dtype.type(1 - eps)
        q[~valid] = 0
        if self.weight is not None:
            if eps:
                # torch weights the smoothing term per class and the label term by the label's weight
                sample_w = np.where(valid, self.weight[safe], 0.0)
                q = q * (self.weight[None, :] / np.where(sample_w > 0, sample_w, 1.0)[:, None]).astype(dtype)
                q[np.arange(labels.size), safe] = ((1 - eps) + eps / num_classes * self.weight[safe]
                                                   / np.where(sample_w > 0, sample_w, 1.0)).astype(dtype)
                q[~valid] = 0
            else:
                sample_w = np.where(valid, self.weight[safe], 0.0)
        else:
            sample_w = valid.astype(np.float64)
        return q, sample_w.astype(dtype), valid

    def _prob_targets(self, t, pred, dtype, num_classes):
        fn = self._fn
        self._labels = False
        if t.shape != np.shape(pred):
            raise ValueError(f"{fn}: float `target` (class probabilities) shape {t.shape} must equal `input` shape "
                             f"{np.shape(pred)}; pass integer labels for class indices")
        q = np.moveaxis(t[None] if t.ndim == 1 else t, 1, -1).reshape(-1, num_classes).astype(dtype)
        _check_unit_interval(fn, "target", q)
        if self.label_smoothing:
            q = q * dtype.type(1 - self.label_smoothing) + dtype.type(self.label_smoothing / num_classes)
        if self.weight is not None:
            q = q * self.weight[None, :].astype(dtype)
        return q, np.ones(q.shape[0], dtype), np.ones(q.shape[0], bool)

    def __repr__(self):
        extra = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        extra += ", from_logits=False" if not self.from_logits else ""
        return f"CrossEntropyLoss(reduction={self.reduction!r}{extra})"


__all__ = ["MAELoss", "L1Loss", "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "REDUCTIONS"]
