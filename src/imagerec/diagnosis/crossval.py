"""Out-of-sample probabilities for every image: K-fold cross-validation of a fast recipe over the training
split, each fold's model predicting only the training images it never saw, and every fold's model predicting
the test split (their mean is the test split's probabilities).

Why the test split does not join the folds: it stays out of every model's training, as it stays out of
`train`'s, so the doctor's verdict on the test split never rests on the test labels it judges, and each test
image is seen by K models instead of one (an ensemble is the more accurate judge: the doctor's quality is its
models' quality). The fold models' own embeddings (the input of the last dense layer, from the first fold's
model) feed the near-duplicate search.
"""

import dataclasses
import sys
import time

import numpy as np

from imagerec.data.dataset import Dataset
from imagerec.errors import UserError, printable


@dataclasses.dataclass
class OutOfSample:
    """Probabilities no model saw the image's label for: `train` (N_train, K) out-of-fold, `test` (N_test, K)
    the mean over the fold models; `fold_of_train` each training image's fold; `fold_accuracy` each fold
    model's accuracy on its held-out images; `embeddings` {"train", "test"} from the first fold's model."""

    train: np.ndarray
    test: np.ndarray
    fold_of_train: np.ndarray
    fold_accuracy: list
    embeddings: dict
    fold_wall_s: list  # each fold's seconds: [training, predicting (and embedding)]
    labels: np.ndarray  # the training labels the folds were made from

    @property
    def cross_validated_accuracy(self) -> float:
        """Out-of-fold accuracy over every training image."""
        return float(np.mean(self.train.argmax(1) == self.labels))


def check_fold_count(folds) -> None:
    """UserError unless `folds` is a whole number of 2 or more (checked before any data is read)."""
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise UserError(f"`folds` must be a whole number of 2 or more (each image is judged by a model trained "
                        f"on the other folds), got {folds!r}")


def check_folds(folds, labels: np.ndarray, class_names) -> None:
    """UserError unless `folds` is a whole number from 2 to the smallest class's count of training images."""
    check_fold_count(folds)
    counts = np.bincount(labels, minlength=len(class_names))
    smallest = int(counts.argmin())
    if folds > counts[smallest]:
        raise UserError(printable(f"`folds` {folds} is more than the {counts[smallest]} training image(s) of class "
                                  f"{class_names[smallest]}: every fold needs one of each class; use --folds "
                                  f"{max(2, int(counts[smallest]))} or fewer, or add images"))


def fold_rows(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each training image's fold (0 to folds-1): scikit-learn's stratified K-fold, shuffled by `seed`."""
    from sklearn.model_selection import StratifiedKFold

    fold_of = np.empty(len(labels), np.int32)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold_of[held] = fold
    return fold_of


def cross_validate(dataset: Dataset, fit, folds: int, seed: int, progress: bool = True) -> OutOfSample:
    """Out-of-sample probabilities of every image of `dataset`. `fit(fold_dataset, seed)` returns a predictor
    with `predict_proba(images)` and `embed(images)` trained on `fold_dataset`'s training images only
    (`recipe_fit` makes one from a recipe)."""
    fold_of = fold_rows(dataset.y_train, folds, seed)
    train = np.zeros((len(dataset.y_train), dataset.num_classes), np.float32)
    test = np.zeros((len(dataset.y_test), dataset.num_classes), np.float32)
    accuracy, wall, embeddings = [], [], {}
    for fold in range(folds):
        started = time.perf_counter()
        held = np.flatnonzero(fold_of == fold)
        predictor = fit(_fold_dataset(dataset, fold_of != fold, held), (seed + fold) % 2**32)
        trained = time.perf_counter()
        train[held] = predictor.predict_proba(dataset.x_train[held])
        test += predictor.predict_proba(dataset.x_test) / folds
        if fold == 0:
            embeddings = {"train": predictor.embed(dataset.x_train), "test": predictor.embed(dataset.x_test)}
        accuracy.append(float(np.mean(train[held].argmax(1) == dataset.y_train[held])))
        wall.append([trained - started, time.perf_counter() - trained])
        if progress:
            _say_fold(fold, folds, accuracy[-1], wall)
    return OutOfSample(train, test, fold_of, accuracy, embeddings, wall, np.asarray(dataset.y_train))


def _fold_dataset(dataset: Dataset, training: np.ndarray, held: np.ndarray) -> Dataset:
    """The fold's training images (a copy: the other folds' rows), and its held-out images as the test split
    (which a trainer never trains on)."""
    return Dataset(dataset.x_train[training], dataset.y_train[training], dataset.x_train[held],
                   dataset.y_train[held], dataset.class_names, source=f"{dataset.source} (fold)")


def _say_fold(fold: int, folds: int, accuracy: float, wall: list) -> None:
    left = np.sum(wall[-1]) * (folds - fold - 1)
    print(printable(f"imagerec doctor: fold {fold + 1}/{folds} trained in {wall[-1][0]:.0f} s and predicted in "
                    f"{wall[-1][1]:.0f} s, {100 * accuracy:.1f}% on its held-out images"
                    + (f"; about {left:.0f} s left" if left else "")),
          file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class _NetPredictor:
    classifier: object  # artefacts.classifier.Classifier of the inference model
    embedder: object  # keras.Model: pixels → the last dense layer's input

    def predict_proba(self, images):
        return self.classifier.predict_proba(images)

    def embed(self, images, batch_size: int = 512) -> np.ndarray:
        parts = [np.asarray(self.embedder.predict_on_batch(images[start:start + batch_size].astype(np.float32)))
                 for start in range(0, len(images), batch_size)]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)


def recipe_fit(recipe, views: bool):
    """`fit` for `cross_validate` that trains `recipe` (training.run.fit) and predicts with its inference
    model (with the test-time views when `views`)."""
    from imagerec.artefacts.classifier import Classifier
    from imagerec.models import inference
    from imagerec.training import run

    def fit(fold_dataset: Dataset, seed: int):
        net = run.fit(fold_dataset, recipe, seed)
        model = inference.inference_model(net, test_time_augmentation=views)
        return _NetPredictor(Classifier.from_keras(model, fold_dataset.class_names), embedding_model(net))
    return fit


def embedding_model(net):
    """pixels → what the net's last dense layer is given (its features), as a Keras model."""
    import keras

    dense = [layer for layer in net.layers if isinstance(layer, keras.layers.Dense)]
    if not dense:
        raise UserError(f"the {net.name} net has no dense layer to take features from")
    return keras.Model(net.inputs, dense[-1].input)
