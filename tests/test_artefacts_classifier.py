"""The runtime predictor: any model as raw uint8 images in, probabilities out."""

import keras
import numpy as np
import pytest

from imagerec import models
from imagerec.artefacts.classifier import Classifier
from imagerec.errors import UserError


def test_a_keras_model_predicts_in_batches_and_refuses_the_wrong_shape():
    net = models.build_model("tiny", 3, (16, 16, 3))
    classifier = Classifier.from_keras(net, ["a", "b", "c"], "mine.keras")
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3)).astype(np.uint8)
    probabilities = classifier.predict_proba(images, batch_size=2)
    assert probabilities.shape == (5, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, net(images.astype(np.float32), training=False), atol=1e-6)
    assert classifier.predict_proba(images[:0]).shape == (0, 3)
    with pytest.raises(UserError, match="do not fit the model's input"):
        classifier.predict_proba(np.zeros((1, 32, 32, 3), np.uint8))
    assert (classifier.format, classifier.input_shape, classifier.keras_model) == ("keras", (16, 16, 3), net)
    assert isinstance(classifier.keras_model, keras.Model)
