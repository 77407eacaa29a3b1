"""The lecture notes' worked pooling example, on every backend."""
import numpy as np
import pytest

import fastml
from _compare import assert_close


@pytest.mark.boundscheck
@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_notes_example(backend, dtype):
    x = np.arange(9, dtype=dtype).reshape(1, 1, 3, 3)
    assert_close(fastml.F.max_pool2d(x, 2, stride=1, backend=backend)[0, 0], np.array([[4, 5], [7, 8]], dtype))
    assert_close(fastml.F.avg_pool2d(x, 2, stride=1, backend=backend)[0, 0], np.array([[2, 3], [5, 6]], dtype))
