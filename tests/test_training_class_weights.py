"""Per-class loss weights for skewed classes."""

import numpy as np

from imagerec.training import class_weights


def test_balanced_class_weights_make_every_class_weigh_the_same_in_total():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = class_weights.class_weights(labels, 3, "balanced")
    np.testing.assert_allclose(weights, [10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)], rtol=1e-6)
    np.testing.assert_allclose(np.bincount(labels) * weights, 10 / 3, rtol=1e-6)  # each class's total
    assert class_weights.class_weights(labels, 3, "none") is None
