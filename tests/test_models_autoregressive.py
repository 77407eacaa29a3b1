"""AutoRegressive(order=T): least squares matches statsmodels' AutoReg on the sunspots, gradient training
converges to it, multi-step forecasts match statsmodels' dynamic prediction, the hidden-layer model learns."""
import numpy as np
import pytest

from fastml.models.autoregressive import AutoRegressive, lag_matrix, load_sunspots

pytest.importorskip("statsmodels")
from statsmodels.tsa.ar_model import AutoReg  # noqa: E402


@pytest.fixture(scope="module")
def sunspots():
    return load_sunspots()[1]


@pytest.mark.parametrize("order", [1, 2, 9, 15])
def test_least_squares_matches_statsmodels(order, sunspots):
    model = AutoRegressive(order).fit_least_squares(sunspots)
    reference = AutoReg(sunspots, lags=order, trend="c").fit()
    np.testing.assert_allclose(model.coef_, reference.params, rtol=0, atol=1e-6)
    n = len(sunspots)
    np.testing.assert_allclose(model.forecast(sunspots, 12), reference.predict(start=n, end=n + 11), atol=1e-6)
    np.testing.assert_allclose(model.predict(sunspots), reference.fittedvalues, atol=1e-6)


def test_gradient_training_converges_to_least_squares(sunspots):
    exact = AutoReg(sunspots, lags=3, trend="c").fit().params
    model = AutoRegressive(3, seed=0)
    history = model.fit_gradient(sunspots, epochs=1500, lr=0.02, batch_size=len(sunspots))
    assert history["loss"][-1] < history["loss"][0]
    np.testing.assert_allclose(model.coef_, exact, rtol=2e-3, atol=2e-3)


def test_hidden_layer_model_learns(sunspots):
    model = AutoRegressive(6, hidden=8, seed=0)
    history = model.fit_gradient(sunspots[:250], epochs=60, lr=1e-2)
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    baseline = np.sqrt(np.mean((sunspots[250:] - sunspots[:250].mean()) ** 2))
    one_step = model.predict(np.concatenate([sunspots[244:250], sunspots[250:]]))
    assert np.sqrt(np.mean((one_step - sunspots[250:]) ** 2)) < 0.6 * baseline
    assert model.forecast(sunspots, 5).shape == (5,)
    assert list(model.params) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]


def test_lag_matrix_layout():
    lags, target = lag_matrix(np.arange(6.0), 2)
    np.testing.assert_array_equal(lags, [[1, 0], [2, 1], [3, 2], [4, 3]])
    np.testing.assert_array_equal(target, [2, 3, 4, 5])


ERRORS = [
    (lambda: AutoRegressive(0), ValueError, "AutoRegressive: `order` must be >= 1"),
    (lambda: AutoRegressive(2, activation="gelu"), ValueError, "`activation` must be 'tanh' or 'relu'"),
    (lambda: AutoRegressive(3, hidden=4).fit_least_squares(np.arange(10.0)), ValueError, "needs the linear model"),
    (lambda: AutoRegressive(5).fit_least_squares(np.arange(4.0)), ValueError, "needs more than `order` (=5) values"),
    (lambda: AutoRegressive(2).fit_least_squares(np.zeros((3, 3))), ValueError, "`series` must be 1-D"),
    (lambda: AutoRegressive(2).forecast(np.arange(5.0), 0), ValueError, "`steps` must be >= 1"),
    (lambda: AutoRegressive(3).forecast(np.arange(2.0), 2), ValueError, "at least `order` (=3) values"),
]


@pytest.mark.parametrize("call, exc, phrase", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_errors(call, exc, phrase):
    with pytest.raises(exc) as info:
        call()
    assert phrase in str(info.value)
