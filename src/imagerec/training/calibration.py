"""Calibration: a temperature fitted on images the net did not train on, so that "70%" means right 70% of
the time (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).

The images are the run's validation hold-out when it has one (no cost), else a stratified slice of the
training split held out before training (`calibration_images`, at most 2% of it: a cost in accuracy that
BENCHMARKS.md measures). Never the test split: its figures would then flatter the calibration. The fitted
temperature goes inside the saved model (`models.inference.inference_model`), so every format and the server
answer calibrated probabilities, and it never changes which class is most probable.
"""

import dataclasses

import numpy as np

from imagerec.data import splits
from imagerec.training import batches

MAX_SHARE = 0.02  # of the training split, held out for calibration when there is no validation hold-out
MIN_IMAGES = 100  # fewer held-out images than this fit a temperature too noisy to trust: none is fitted
TEMPERATURE_RANGE = (0.05, 20.0)


@dataclasses.dataclass(frozen=True)
class CalibrationSet:
    """Images held out from training to fit the temperature on, and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    source: str  # "validation" (the run's hold-out) or "training slice" (held out of train/ for this)
    rows: np.ndarray | None = None  # the slice's rows in the training split as loaded (None for validation)

    def record(self) -> dict:
        return {"images": int(len(self.labels)), "source": self.source}


def hold_out(dataset, requested: int, seed: int):
    """(the dataset to train on, a CalibrationSet or None, why none): the validation hold-out when the dataset has
    one; else min(`requested`, 2% of train/) stratified training images, taken out of the training split;
    None when `requested` is 0, that would be fewer than MIN_IMAGES, or the training images are too large to copy
    (a memory-mapped set over `batches.IN_GRAPH_BYTES`, which training reads from disk)."""
    if requested <= 0:
        return dataset, None, "calibration_images is 0"
    if dataset.y_val is not None and len(dataset.y_val) >= MIN_IMAGES:
        return dataset, CalibrationSet(dataset.x_val, np.asarray(dataset.y_val), "validation"), None
    if dataset.x_train.nbytes > batches.IN_GRAPH_BYTES:  # memory-mapped, read batch by batch: do not copy it
        return dataset, None, (f"the {dataset.x_train.nbytes / 2**20:,.0f} MB of training images are read from disk "
                               f"batch by batch and a slice would copy them into memory: train with --validation "
                               f"holdout (decoded apart) to calibrate on its images")
    count = min(requested, int(len(dataset.y_train) * MAX_SHARE))
    if count < MIN_IMAGES:
        return dataset, None, (f"{MIN_IMAGES} held-out images are needed and 2% of {len(dataset.y_train)} training "
                               f"images is {count}: train with --validation holdout to calibrate on its images")
    kept, taken = splits.stratified_rows(np.asarray(dataset.y_train), count / len(dataset.y_train), seed,
                                         "calibration")
    calibration = CalibrationSet(dataset.x_train[taken], np.asarray(dataset.y_train)[taken], "training slice", taken)
    return dataset.with_train_rows(kept), calibration, None


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the mean negative log-likelihood of softmax(log p / T) (bounded search over
    log T: the likelihood is smooth and has one minimum in T)."""
    from scipy import optimize

    scores = np.log(np.maximum(np.asarray(probabilities, np.float64), 1e-30))
    labels = np.asarray(labels).astype(np.int64)

    def loss(log_temperature):
        scaled = scores / np.exp(log_temperature)
        scaled -= scaled.max(axis=1, keepdims=True)
        log_softmax = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return -log_softmax[np.arange(len(labels)), labels].mean()

    low, high = np.log(TEMPERATURE_RANGE)
    return float(np.exp(optimize.minimize_scalar(loss, bounds=(low, high), method="bounded",
                                                 options={"xatol": 1e-4}).x))
