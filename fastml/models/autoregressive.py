r"""The notes' T-th order Markov (autoregressive) model: predict x_t from the last T values.

Linear: ``x_t = c + a_1 x_{t-1} + ... + a_T x_{t-T}``, fitted in closed form by least squares (the same
estimate as ``statsmodels.tsa.ar_model.AutoReg(x, lags=T, trend="c")``) or by gradient descent; or with a
hidden layer: ``x_t = W_2 act(W_1 [x_{t-1} .. x_{t-T}] + b_1) + b_2``. Multi-step forecasts feed each
prediction back as the newest lag.

Example:
    >>> model = AutoRegressive(order=9).fit_least_squares(series)
    >>> model.coef_                      # [c, a_1, ..., a_T], statsmodels' params order
    >>> model.forecast(series, steps=20)
"""
from __future__ import annotations

import numpy as np

from .. import nn
from .._checks import as_float_array, as_int
from ..nn import init


def lag_matrix(series, order, fn="lag_matrix"):
    """``(X, y)``: row t of X holds ``[x_{t-1}, ..., x_{t-T}]`` (newest first) and y the value ``x_t``, for
    every t with T values before it."""
    x = as_float_array(series, fn, "series")
    if x.ndim != 1:
        raise ValueError(f"{fn}: `series` must be 1-D, got shape {x.shape}")
    order = as_int(order, fn, "order", minimum=1)
    if x.size <= order:
        raise ValueError(f"{fn}: `series` needs more than `order` (={order}) values, got {x.size}")
    rows = np.lib.stride_tricks.sliding_window_view(x, order)[:-1][:, ::-1]
    return np.ascontiguousarray(rows), x[order:].copy()


class AutoRegressive(nn.Module):
    """T-th order autoregressive model, linear or with one hidden layer.

    Args:
        order: T, the number of past values used.
        hidden: width of a hidden layer (None: the linear model).
        activation: ``"tanh"`` or ``"relu"`` for the hidden layer.
        dtype: float64 (default) or float32.
        seed: int or Generator for the initialisation.

    Shape:
        forward: lags ``(N, T)`` newest first (in the model's standardised units) -> ``(N, 1)``.
    """

    def __init__(self, order, hidden=None, activation="tanh", *, dtype=np.float64, seed=None):
        super().__init__()
        fn = "AutoRegressive"
        self.order = as_int(order, fn, "order", minimum=1)
        self.hidden = None if hidden is None else as_int(hidden, fn, "hidden", minimum=1)
        if activation not in ("tanh", "relu"):
            raise ValueError(f"{fn}: `activation` must be 'tanh' or 'relu', got {activation!r}")
        self.activation = activation
        self.dtype = np.dtype(dtype)
        rng = init.generator(seed)
        if self.hidden is None:
            self.net = nn.Sequential(nn.Linear(self.order, 1, dtype=dtype, seed=rng))
        else:
            act = nn.Tanh() if activation == "tanh" else nn.ReLU()
            self.net = nn.Sequential(nn.Linear(self.order, self.hidden, dtype=dtype, seed=rng), act,
                                     nn.Linear(self.hidden, 1, dtype=dtype, seed=rng))
        # the network works on (x - mean) / scale; least squares uses the raw units (mean 0, scale 1)
        self.mean = 0.0
        self.scale = 1.0

    def forward(self, lags):
        return self.net(lags)

    def backward(self, grad_output):
        return self.net.backward(grad_output)

    # --- fitting ---------------------------------------------------------------------------------------------
    def fit_least_squares(self, series):
        """Closed-form least squares on ``[1, x_{t-1}, ..., x_{t-T}]`` (linear model only); returns self."""
        fn = "AutoRegressive.fit_least_squares"
        if self.hidden is not None:
            raise ValueError(f"{fn}: closed-form least squares needs the linear model (hidden=None), "
                             f"got hidden={self.hidden}")
        lags, target = lag_matrix(np.asarray(series, np.float64), self.order, fn)
        design = np.hstack([np.ones((len(lags), 1)), lags])
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        self.mean, self.scale = 0.0, 1.0
        layer = self.net[0]
        layer.params["bias"] = coef[:1]
        layer.params["weight"] = coef[None, 1:]
        return self

    def fit_gradient(self, series, epochs=200, lr=1e-2, batch_size=32, optimizer="adam", standardize=True, seed=0,
                     progress=False, val_series=None):
        """Train by gradient descent on the MSE of one-step predictions (standardised data); returns the history."""
        from .. import losses, optim
        from ..train import fit

        fn = "AutoRegressive.fit_gradient"
        x = np.asarray(series, np.float64)
        if standardize:
            self.mean, self.scale = float(x.mean()), float(x.std()) or 1.0
        else:
            self.mean, self.scale = 0.0, 1.0
        lags, target = lag_matrix(self._to_units(x), self.order, fn)
        if optimizer == "adam":
            opt = optim.Adam(self, lr=lr)
        elif optimizer == "sgd":
            opt = optim.SGD(self, lr=lr, momentum=0.9)
        else:
            raise ValueError(f"{fn}: `optimizer` must be 'adam' or 'sgd', got {optimizer!r}")
        val = None
        if val_series is not None:
            vx = np.concatenate([x[-self.order:], np.asarray(val_series, np.float64)])
            val = lag_matrix(self._to_units(vx), self.order, fn)
            val = (val[0], val[1][:, None])
        return fit(self, losses.MSELoss(), opt, (lags, target[:, None]), epochs=epochs, batch_size=batch_size,
                   seed=seed, progress=progress, val_data=val)

    def _to_units(self, x):
        return ((x - self.mean) / self.scale).astype(self.dtype)

    @property
    def coef_(self) -> np.ndarray:
        """``[c, a_1, ..., a_T]`` in the data's units (linear model only), statsmodels' ``params`` order."""
        if self.hidden is not None:
            raise ValueError("AutoRegressive.coef_: only the linear model (hidden=None) has coefficients")
        layer = self.net[0]
        a = layer.weight[0].astype(np.float64)
        b = float(layer.bias[0])
        const = self.mean + self.scale * b - self.mean * a.sum()
        return np.concatenate([[const], a])

    # --- prediction ------------------------------------------------------------------------------------------
    def predict(self, series) -> np.ndarray:
        """One-step-ahead predictions of ``series[T:]`` from the true previous values."""
        lags, _ = lag_matrix(np.asarray(series, np.float64), self.order, "AutoRegressive.predict")
        return self._predict_units(self._to_units(lags))

    def _predict_units(self, lags_units):
        from .._backend import no_grad

        with no_grad():
            out = self.net(np.ascontiguousarray(lags_units, dtype=self.dtype))[:, 0]
        return out.astype(np.float64) * self.scale + self.mean

    def forecast(self, history, steps) -> np.ndarray:
        """``steps`` values after ``history``, each prediction fed back as the newest lag."""
        fn = "AutoRegressive.forecast"
        steps = as_int(steps, fn, "steps", minimum=1)
        x = np.asarray(history, np.float64)
        if x.ndim != 1 or x.size < self.order:
            raise ValueError(f"{fn}: `history` must be 1-D with at least `order` (={self.order}) values, "
                             f"got shape {x.shape}")
        window = list(x[-self.order:][::-1])  # newest first
        out = []
        for _ in range(steps):
            value = float(self._predict_units(self._to_units(np.array([window])))[0])
            out.append(value)
            window = [value] + window[:-1]
        return np.array(out)

    def extra_repr(self):
        return f"order={self.order}" + (f", hidden={self.hidden}, activation={self.activation!r}" if self.hidden else "")


def load_sunspots():
    """Yearly sunspot activity 1700-2008 from ``statsmodels.datasets.sunspots``: ``(years, values)``."""
    try:
        from statsmodels.datasets import sunspots
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the sunspots data ships with statsmodels: pip install 'fastml-numba[demo]'") from exc
    data = sunspots.load_pandas().data
    return data["YEAR"].to_numpy().astype(int), data["SUNACTIVITY"].to_numpy().astype(np.float64)


def sunspot_experiment(order=9, hidden=16, test_years=29, epochs=300, seed=0, progress=False) -> dict:
    """Fit the linear model (least squares) and the hidden-layer model (Adam) on all but the last
    ``test_years`` years; report one-step and multi-step (recursive) RMSE on those years."""
    import time

    years, values = load_sunspots()
    train, test = values[:-test_years], values[-test_years:]
    results = {"years": years, "values": values, "train_size": len(train)}
    start = time.perf_counter()
    linear = AutoRegressive(order).fit_least_squares(train)
    results["linear_seconds"] = time.perf_counter() - start
    from ._threads import single_threaded

    start = time.perf_counter()
    neural = AutoRegressive(order, hidden=hidden, seed=seed)
    with single_threaded():
        neural.fit_gradient(train, epochs=epochs, lr=3e-3, seed=seed, progress="epoch" if progress else False)
    results["hidden_seconds"] = time.perf_counter() - start
    history_and_test = np.concatenate([train[-order:], test])
    for name, model in (("linear", linear), ("hidden", neural)):
        one_step = model.predict(history_and_test)
        multi = model.forecast(train, test_years)
        results[name] = model
        results[f"{name}_one_step"] = one_step
        results[f"{name}_forecast"] = multi
        results[f"{name}_one_step_rmse"] = float(np.sqrt(np.mean((one_step - test) ** 2)))
        results[f"{name}_forecast_rmse"] = float(np.sqrt(np.mean((multi - test) ** 2)))
    return results
