"""Calibration: the temperature is fitted on images the net did not train on (the validation hold-out, else a
training slice held out before training, never the test split), recovers a known temperature, lowers the ECE,
never changes the predicted class, and is inside every saved format."""

import numpy as np
import pytest

from helpers import synthetic_image
from imagerec.artefacts import loading
from imagerec.data.dataset import Dataset
from imagerec.evaluation import evaluate
from imagerec.export.checked import export_model
from imagerec.models import inference
from imagerec.training import calibration, recipes, run


def _softmax(scores):
    scores = scores - scores.max(axis=1, keepdims=True)
    return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)


def test_the_fitted_temperature_is_the_one_that_made_the_probabilities_overconfident():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (20000, 10))
    labels = np.array([rng.choice(10, p=row) for row in _softmax(logits)])  # drawn from the calibrated model
    overconfident = _softmax(logits * 2.5)  # what a model with temperature 1/2.5 says
    temperature = calibration.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(2.5, rel=0.05)
    calibrated = evaluate.apply_temperature(overconfident, temperature)
    ece = [evaluate.calibration_table(p.max(axis=1), p.argmax(axis=1) == labels)["expected_calibration_error"]
           for p in (overconfident, calibrated)]
    assert ece[1] < 0.02 < ece[0]
    np.testing.assert_array_equal(calibrated.argmax(axis=1), overconfident.argmax(axis=1))


def _noisy_dataset(train: int, test: int = 300, noise: float = 0.3, seed: int = 0) -> Dataset:
    """Four synthetic classes with `noise` of the labels drawn at random: no model can be certain."""
    rng = np.random.default_rng(seed)

    def split(count):
        labels = rng.integers(0, 4, count)
        images = np.stack([synthetic_image(int(label), rng) for label in labels])
        flip = rng.random(count) < noise
        return images, np.where(flip, rng.integers(0, 4, count), labels).astype(np.int32)
    (x_train, y_train), (x_test, y_test) = split(train), split(test)
    return Dataset(x_train, y_train, x_test, y_test, ("a", "b", "c", "d"), "noisy")


def test_the_slice_is_held_out_of_training_and_never_the_test_split():
    dataset = _noisy_dataset(6000)
    kept, held_out, why_not = calibration.hold_out(dataset, 1000, seed=0)
    assert why_not is None and held_out.source == "training slice"
    assert len(held_out.labels) == 120  # 2% of 6,000, under the 1,000 asked for
    assert len(kept.y_train) == 6000 - 120
    trained_on = {image.tobytes() for image in kept.x_train}
    assert not any(image.tobytes() in trained_on for image in held_out.images)
    np.testing.assert_array_equal(kept.x_test, dataset.x_test)
    assert np.array_equal(np.bincount(held_out.labels, minlength=4) > 0, [True] * 4)  # stratified
    small = _noisy_dataset(1000)
    assert calibration.hold_out(small, 1000, seed=0)[1] is None  # 2% would be 20 images: none fitted, and why
    assert "holdout" in calibration.hold_out(small, 1000, seed=0)[2]
    assert calibration.hold_out(dataset, 0, seed=0)[1] is None


def test_training_images_read_from_disk_are_not_copied_for_a_slice(monkeypatch):
    """A memory-mapped training set over the in-graph size is read batch by batch (data larger than memory):
    taking a slice out of it would copy it all into memory, so none is taken, and the note says how to calibrate."""
    from imagerec.training import batches

    dataset = _noisy_dataset(6000)
    monkeypatch.setattr(batches, "IN_GRAPH_BYTES", dataset.x_train.nbytes - 1)
    kept, held_out, why_not = calibration.hold_out(dataset, 1000, seed=0)
    assert held_out is None and kept is dataset and "--validation holdout" in why_not


def test_a_run_fits_its_temperature_on_the_held_out_images_only(monkeypatch, tmp_path):
    """Fails if the temperature were fitted on training or test images: the probabilities the fit sees are the
    uncalibrated model's on exactly the held-out slice, which the net did not train on."""
    seen = {}
    fit, hold_out = calibration.fit_temperature, calibration.hold_out

    def spy_hold_out(dataset, requested, seed):
        kept, held_out, why_not = hold_out(dataset, requested, seed)
        seen.update(held_out=held_out, trained_on=kept)
        return kept, held_out, why_not

    def spy_fit(probabilities, labels):
        seen.update(fitted_labels=np.asarray(labels), fitted_count=len(probabilities))
        return fit(probabilities, labels)

    monkeypatch.setattr(calibration, "hold_out", spy_hold_out)
    monkeypatch.setattr(calibration, "fit_temperature", spy_fit)
    dataset = _noisy_dataset(5000)
    recipe = recipes.get_recipe("seed", model="tiny", epochs=2, augmented_epochs=0, batch_size=64)
    result = run.train(dataset, recipe, tmp_path / "run", verbose=0, report=False)
    held_out = seen["held_out"]
    assert seen["fitted_count"] == len(held_out.labels) == 100
    np.testing.assert_array_equal(seen["fitted_labels"], held_out.labels)
    trained_on = {image.tobytes() for image in seen["trained_on"].x_train}
    tested_on = {image.tobytes() for image in dataset.x_test}
    assert not any(image.tobytes() in trained_on | tested_on for image in held_out.images)
    record = result.metrics["calibration"]
    assert record["source"] == "training slice" and record["images"] == 100
    assert result.metrics["data"]["train_count"] == 4900  # the slice was not trained on
    assert record["temperature"] == pytest.approx(inference.temperature_of(result.model.keras_model))


def test_calibration_lowers_the_ece_keeps_the_answers_and_travels_in_every_format(tmp_path):
    """airbench_small with label smoothing and test-time views is underconfident on noisy labels; its
    validation hold-out (no training image spent) fits the temperature. Every saved format answers alike."""
    dataset = _noisy_dataset(1200)
    recipe = recipes.get_recipe("airbench_small", epochs=4, batch_size=64)
    result = run.train(dataset, recipe, tmp_path / "run", verbose=0, report=False, validation="holdout",
                       data_options={"val_split": 0.15})
    record = result.metrics["calibration"]
    assert record["source"] == "validation" and record["images"] == 180
    assert record["temperature"] < 1  # underconfident: sharpened
    assert record["test_ece_after"] < record["test_ece_before"]
    probabilities = result.test_probabilities
    before = evaluate.apply_temperature(probabilities, 1 / record["temperature"])
    np.testing.assert_array_equal(before.argmax(axis=1), probabilities.argmax(axis=1))
    for name in ("model.keras", "imagerecognition_tf_cifar.h5", "gfgModelWeights.weights.h5", "saved_model/my_model"):
        loaded = loading.load_model(tmp_path / "run" / name)
        np.testing.assert_allclose(loaded.predict_proba(dataset.x_test[:32]), probabilities[:32], atol=1e-5)
    for format_name in ("tflite", "onnx"):  # the exports run in their own runtimes and are compared with Keras
        exported = export_model(result.model, tmp_path / f"model.{format_name}", format_name, dataset, check_images=32)
        assert exported.top1_agreement == 1.0 and exported.max_abs_difference < 1e-5
