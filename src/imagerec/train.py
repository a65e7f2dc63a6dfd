"""Training: run a recipe on a dataset and write a complete run directory.

Flow: Dataset (uint8) → tf.data batches → model.fit, phase by phase → evaluate on the test split →
model files, history, curves and metrics.json in the run directory (every file written atomically).
"""

import dataclasses
import datetime
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import imagerec
from imagerec import augment, evaluate, fileio, models, plots, saving
from imagerec.errors import UserError


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    model: keras.Model
    history: list  # per-epoch records, see history.json
    metrics: dict  # metrics.json


def default_run_dir() -> Path:
    return Path("runs") / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def batches(images, labels, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """uint8 arrays → (images, labels) batches; the whole split stays in memory, shuffled each epoch."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size)


def train(dataset, recipe, run_dir=None, seed: int = 0, verbose: int | None = None,
          callbacks=()) -> RunResult:
    """Train `recipe` on `dataset`, evaluate on its test split, and save everything under `run_dir`.

    The test split doubles as the validation data shown per epoch, as in the original tutorial.
    `callbacks` are extra Keras callbacks given to every phase's `fit` (e.g. timers, TensorBoard).
    Raises UserError if `run_dir` already holds files.
    """
    run_dir = _prepare_run_dir(run_dir or default_run_dir())
    verbose = verbose if verbose is not None else (1 if sys.stdout.isatty() else 2)
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    model = models.build_model(recipe.model, dataset.num_classes, dataset.image_shape)
    model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = _fit_phases(model, dataset, recipe, run_dir, seed, verbose, list(callbacks))
    train_wall_s = time.perf_counter() - started
    classifier = saving.Classifier(str(run_dir), "keras", dataset.class_names, dataset.image_shape,
                                   lambda batch: model(batch, training=False), keras_model=model)
    test = evaluate.evaluate(classifier, dataset.x_test, dataset.y_test)
    files = saving.save_model_files(model, run_dir, dataset.class_names, recipe.model)
    _write_history(run_dir, history, recipe)
    metrics = _metrics(test, dataset, recipe, model, seed, files, train_wall_s, time.perf_counter() - started)
    fileio.write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, model, history, metrics)


def _prepare_run_dir(run_dir) -> Path:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file, not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(f"run directory {run_dir} already holds files; choose a new --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _fit_phases(model, dataset, recipe, run_dir: Path, seed: int, verbose: int, callbacks: list) -> list:
    """Phase 1 on the original images, phase 2 with shift/flip; one continuous epoch count."""
    validation = batches(dataset.x_test, dataset.y_test, 256).prefetch(tf.data.AUTOTUNE)
    plain = batches(dataset.x_train, dataset.y_train, recipe.batch_size, shuffle_seed=seed)
    augmenter = augment.shift_and_flip(recipe.shift_fraction, recipe.horizontal_flip, seed)
    phases = [("plain", plain, recipe.plain_epochs),
              ("augmented", augment.augment_batches(plain, augmenter), recipe.augmented_epochs)]
    history, done = [], 0
    for phase, training_batches, epochs in phases:
        if epochs == 0:
            continue
        # CSVLogger streams one row per finished epoch, so even a killed run keeps its log.
        logger = keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=done > 0)
        fit = model.fit(training_batches.prefetch(tf.data.AUTOTUNE), validation_data=validation,
                        initial_epoch=done, epochs=done + epochs, shuffle=False, verbose=verbose,
                        callbacks=[logger, *callbacks])
        for offset in range(epochs):
            record = {"epoch": done + offset + 1, "phase": phase}
            record.update({key: float(values[offset]) for key, values in fit.history.items()})
            history.append(record)
        done += epochs
    return history


def _write_history(run_dir: Path, history: list, recipe) -> None:
    fileio.write_json(run_dir / "history.json", {"epochs": history, "phases": {
        "plain": recipe.plain_epochs, "augmented": recipe.augmented_epochs}})
    for metric in ("accuracy", "loss"):
        plots.plot_curves(history, metric, run_dir / f"{metric}.png",
                          augmentation_starts_after=recipe.plain_epochs if recipe.augmented_epochs else None)


def _metrics(test, dataset, recipe, model, seed, files, train_wall_s, wall_s) -> dict:
    return {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "per_class_accuracy": test["per_class_accuracy"],
        "class_names": list(dataset.class_names),
        "data": dataset.summary(),
        "recipe": dataclasses.asdict(recipe),
        "seed": seed,
        "model": {"name": recipe.model, "parameters": models.count_params(model),
                  "forward_flops_per_image": models.forward_flops(model)},
        "files": files,
        "train_wall_s": round(train_wall_s, 2),
        "wall_s": round(wall_s, 2),
        "versions": versions(),
    }


def versions() -> dict:
    return {"imagerec": imagerec.__version__, "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "processor": platform.machine()}
