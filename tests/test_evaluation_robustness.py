"""Robustness numbers: accuracy per corruption and severity, the CIFAR-10-C mean over its corruptions only, the
clean accuracy of the same images, and a stratified, seeded choice of images."""

import numpy as np
import pytest

from imagerec.artefacts.classifier import Classifier
from imagerec.evaluation import robustness
from imagerec.errors import UserError


def _brightness_classifier():
    """Class 1 when an image's mean is over 100, else 0: a model whose answers the corruptions change."""
    def predict(images):
        bright = images.reshape(len(images), -1).mean(axis=1) > 100
        return np.stack([~bright, bright], axis=1).astype(np.float32)
    return Classifier("brightness", "keras", ("dark", "bright"), (32, 32, 3), predict)


def test_the_table_holds_every_corruption_and_severity_and_the_mean_counts_cifar_10_c_only():
    rng = np.random.default_rng(0)
    images = np.concatenate([np.full((20, 32, 32, 3), 60, np.uint8), np.full((20, 32, 32, 3), 140, np.uint8)])
    images = np.clip(images + rng.integers(-20, 20, images.shape), 0, 255).astype(np.uint8)
    labels = np.repeat([0, 1], 20)
    result = robustness.corruption_accuracy(_brightness_classifier(), images, labels,
                                            ["brightness", "contrast", "grayscale"], (1, 5), progress=False)
    assert result["clean_accuracy"] == 1.0 and result["count"] == 40
    assert set(result["corruptions"]) == {"brightness", "contrast", "grayscale"}
    assert list(result["corruptions"]["brightness"]["accuracy"]) == ["1", "5"]
    assert list(result["corruptions"]["grayscale"]["accuracy"]) == ["1"]  # one level only
    # +0.3 of value makes the dark images bright: half the images now wrong at severity 5
    assert result["corruptions"]["brightness"]["accuracy"]["5"] == 0.5
    cifar = [result["corruptions"][name]["mean"] for name in ("brightness", "contrast")]
    assert result["mean_corruption_accuracy"] == pytest.approx(np.mean(cifar))  # grayscale is not averaged in
    assert result["cifar_c_evaluated"] == 2 and "frost" in result["left_out"]
    assert "worst" in robustness.summary_line(result) and "40 test images" in robustness.summary_line(result)
    assert "40 validation images" in robustness.summary_line({**result, "split": "validation"})


def test_images_are_picked_by_class_and_seed():
    labels = np.repeat(np.arange(4), 50)
    rows = robustness.pick_images(labels, 40, seed=1)
    assert len(rows) == 40 and np.array_equal(np.bincount(labels[rows]), [10, 10, 10, 10])
    np.testing.assert_array_equal(rows, robustness.pick_images(labels, 40, seed=1))
    assert not np.array_equal(rows, robustness.pick_images(labels, 40, seed=2))
    assert len(robustness.pick_images(labels, 0, seed=0)) == 200  # 0: every image
    with pytest.raises(UserError):
        robustness.pick_images(labels, -1, seed=0)
