"""LeNet on scikit-learn's digits: shapes, a short training run, and (slow) the full >= 97% target."""
import numpy as np
import pytest

import fastml
from fastml.models import LeNet, lenet

pytest.importorskip("sklearn")


def test_split_is_fixed_and_shaped():
    x_train, x_test, y_train, y_test = lenet.load_digits_split()
    assert x_train.shape == (1347, 1, 8, 8) and x_test.shape == (450, 1, 8, 8)
    assert x_train.dtype == np.float32 and 0 <= x_train.min() and x_train.max() <= 1
    assert np.array_equal(y_test, lenet.load_digits_split()[3])


def test_lenet_shapes_and_keys():
    model = LeNet(seed=0)
    assert model(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 10)
    assert list(model.params)[:2] == ["0.weight", "0.bias"]
    with pytest.raises(ValueError, match="`image_size` must be divisible by 4"):
        LeNet(image_size=10)


def test_short_training_learns():
    fastml.manual_seed(0)
    result = lenet.train_digits(epochs=4, max_train=600, progress=False)
    assert result["test_accuracy"] > 0.8
    assert result["history"]["loss"][-1] < result["history"]["loss"][0]


@pytest.mark.slow
def test_full_training_reaches_97_percent():
    result = lenet.train_digits(progress=False)
    assert result["test_accuracy"] >= 0.97
