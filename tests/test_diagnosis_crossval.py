"""Cross-validation: every training image judged by a model that never trained on it, the test split by every
fold's model, and folds that cannot be made refused."""

import numpy as np
import pytest

from imagerec.data.dataset import Dataset
from imagerec.diagnosis import crossval
from imagerec.errors import UserError


class _Memoriser:
    """A 'model' that knows its training images by heart: certain of their labels, uniform on any other."""

    def __init__(self, fold_dataset, classes):
        self.known = {image.tobytes(): label for image, label in zip(fold_dataset.x_train, fold_dataset.y_train)}
        self.classes = classes

    def predict_proba(self, images):
        out = np.full((len(images), self.classes), 1 / self.classes, np.float32)
        for row, image in enumerate(images):
            if image.tobytes() in self.known:
                out[row] = np.eye(self.classes)[self.known[image.tobytes()]]
        return out

    def embed(self, images):
        return images.reshape(len(images), -1).astype(np.float32)


def _unique_images(count, rng):
    return rng.permutation(256 ** 2)[:count].astype(np.uint16).view(np.uint8).reshape(count, 1, 2, 1).repeat(3, -1)


def test_no_image_is_judged_by_a_model_that_trained_on_it():
    rng = np.random.default_rng(0)
    dataset = Dataset(_unique_images(60, rng), np.arange(60) % 3, _unique_images(12, rng), np.arange(12) % 3,
                      ("a", "b", "c"), source="memory")
    fits = []

    def fit(fold_dataset, seed):
        fits.append((len(fold_dataset.y_train), seed))
        return _Memoriser(fold_dataset, 3)

    out = crossval.cross_validate(dataset, fit, folds=4, seed=7, progress=False)
    # A memoriser is certain of what it trained on: any out-of-fold row that is not uniform was in-sample.
    np.testing.assert_allclose(out.train, 1 / 3)
    np.testing.assert_allclose(out.test, 1 / 3)
    assert fits == [(45, 7), (45, 8), (45, 9), (45, 10)]  # each fold trains on the other three
    assert sorted(np.bincount(out.fold_of_train).tolist()) == [15, 15, 15, 15]
    assert out.embeddings["train"].shape == (60, 6) and len(out.fold_wall_s) == 4 and len(out.fold_wall_s[0]) == 2


def test_the_folds_are_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [10, 20, 30])
    folds = crossval.fold_rows(labels, 5, seed=1)
    for fold in range(5):
        assert np.bincount(labels[folds == fold]).tolist() == [2, 4, 6]
    assert (crossval.fold_rows(labels, 5, seed=1) == folds).all() and not (crossval.fold_rows(labels, 5, 2) == folds).all()


@pytest.mark.parametrize("folds, message", [(1, "2 or more"), (0, "2 or more"), (2.5, "whole number"),
                                            (True, "whole number"), (6, "more than the 5 training image.s. of class b")])
def test_folds_that_cannot_be_made_are_refused(folds, message):
    with pytest.raises(UserError, match=message):
        crossval.check_folds(folds, np.repeat([0, 1], [9, 5]), ("a", "b"))
