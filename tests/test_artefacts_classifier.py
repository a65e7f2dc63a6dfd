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


def test_selective_views_run_only_for_the_images_the_plain_view_is_unsure_of(monkeypatch):
    from imagerec.artefacts import classifier as classifier_module

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    net = models.build_model("airbench_small", 4, (16, 16, 3))
    models.init_airbench_net(net, rng.integers(0, 256, (64, 16, 16, 3)).astype(np.uint8))
    net.get_layer("logits_unscaled").kernel.assign(rng.normal(0, 3, (64, 4)))  # unsaturated, unequal confidences
    with_views = models.inference_model(net, test_time_augmentation=True, temperature=0.8)
    single = Classifier.from_keras(models.inference_model(net, temperature=0.8), list("abcd"))
    classifier = Classifier.from_keras(with_views, list("abcd"))
    images = rng.integers(0, 256, (40, 16, 16, 3)).astype(np.uint8)
    plain, full = single.predict_proba(images), classifier.predict_proba(images)
    threshold = float(np.median(plain.max(axis=1)))  # half the images unsure
    monkeypatch.setattr(classifier_module, "SELECTIVE_CONFIDENCE", threshold)
    selective = classifier.predict_proba_selective(images, batch_size=16)
    unsure = plain.max(axis=1) < threshold
    assert 10 <= unsure.sum() <= 30 and np.abs(plain - full).max() > 1e-3  # the views change the probabilities
    np.testing.assert_allclose(selective[unsure], full[unsure], atol=1e-6)  # the views, where unsure
    np.testing.assert_allclose(selective[~unsure], plain[~unsure], atol=1e-6)  # the plain view's, elsewhere
    # a model without views: selective is the model itself
    np.testing.assert_allclose(single.predict_proba_selective(images), plain, atol=1e-6)
    with pytest.raises(UserError, match="do not fit the model's input"):
        classifier.predict_proba_selective(np.zeros((1, 32, 32, 3), np.uint8))
