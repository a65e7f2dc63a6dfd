"""Training: run a recipe on a dataset and write a complete run directory.

Flow: Dataset (uint8) → tf.data batches → model.fit, phase by phase → evaluate on the test split →
model files, history, curves and metrics.json in the run directory (every file written atomically).
"""

import dataclasses
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import imagerec
from imagerec import augment, evaluate, fileio, models, optim, plots, saving
from imagerec.errors import UserError


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    model: keras.Model
    history: list  # per-epoch records, see history.json
    metrics: dict  # metrics.json


def batches(images, labels, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """uint8 arrays → (images, labels) batches; the whole split stays in memory, shuffled each epoch."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size)


def train(dataset, recipe, run_dir=None, seed: int = 0, verbose: int | None = None,
          callbacks=(), validate_each_epoch: bool = True) -> RunResult:
    """Train `recipe` on `dataset`, evaluate on its test split, and save everything under `run_dir`.

    The test split doubles as the validation data shown per epoch, as in the original tutorial.
    `callbacks` are extra Keras callbacks given to every `fit` (e.g. timers, TensorBoard);
    `validate_each_epoch=False` skips the per-epoch validation pass (benchmarks evaluate on their own).
    Raises UserError if `run_dir` already holds files or the model does not suit the recipe.
    """
    run_dir = fileio.prepare_empty_dir(run_dir or fileio.default_run_dir())
    verbose = verbose if verbose is not None else (1 if sys.stdout.isatty() else 2)
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    net = models.build_model(recipe.model, dataset.num_classes, dataset.image_shape)
    trainer = {"seed": _train_seed, "fast": _train_fast}[recipe.kind]
    validation = batches(dataset.x_test, dataset.y_test, 500).prefetch(tf.data.AUTOTUNE) if validate_each_epoch else None
    history = trainer(net, dataset, recipe, run_dir, seed, verbose, list(callbacks), validation)
    train_wall_s = time.perf_counter() - started
    model = inference_model(net, recipe)
    test = evaluate.evaluate(saving.Classifier.from_keras(model, dataset.class_names, run_dir),
                             dataset.x_test, dataset.y_test)
    files = saving.save_model_files(model, run_dir, dataset.class_names, recipe.model,
                                    test_time_augmentation=_uses_tta(recipe))
    _write_history(run_dir, history)
    metrics = _metrics(test, dataset, recipe, net, model, seed, files, train_wall_s, time.perf_counter() - started)
    fileio.write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, model, history, metrics)


def _uses_tta(recipe) -> bool:
    return bool(getattr(recipe, "test_time_augmentation", False))


def inference_model(net, recipe):
    """The model a recipe saves: raw pixels → probabilities (with the recipe's test-time views)."""
    return models.inference_model(net, test_time_augmentation=_uses_tta(recipe))


def _history_records(fit_history, first_epoch: int, phase: str) -> list:
    epochs = len(next(iter(fit_history.history.values()), []))
    return [{"epoch": first_epoch + offset + 1, "phase": phase,
             **{key: float(values[offset]) for key, values in fit_history.history.items()}}
            for offset in range(epochs)]


def _csv_logger(run_dir: Path, append: bool):
    # CSVLogger streams one row per finished epoch, so even a killed run keeps its log.
    return keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=append)


# ---------------------------------------------------------------- the seed recipe

def _train_seed(model, dataset, recipe, run_dir: Path, seed: int, verbose: int, callbacks: list,
                validation) -> list:
    """Adam; phase 1 on the original images, phase 2 with shift/flip; one continuous epoch count."""
    if not models.outputs_probabilities(model):
        raise UserError(f"the seed recipe trains models that end in softmax; {recipe.model!r} returns logits")
    model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    plain = batches(dataset.x_train, dataset.y_train, recipe.batch_size, shuffle_seed=seed)
    augmenter = augment.shift_and_flip(recipe.shift_fraction, recipe.horizontal_flip, seed)
    phases = [("plain", plain, recipe.plain_epochs),
              ("augmented", augment.augment_batches(plain, augmenter), recipe.augmented_epochs)]
    history, done = [], 0
    for phase, training_batches, epochs in phases:
        if epochs == 0:
            continue
        fit = model.fit(training_batches.prefetch(tf.data.AUTOTUNE), validation_data=validation,
                        initial_epoch=done, epochs=done + epochs, shuffle=False, verbose=verbose,
                        callbacks=[_csv_logger(run_dir, append=done > 0), *callbacks])
        history += _history_records(fit, done, phase)
        done += epochs
    return history


# ---------------------------------------------------------------- the fast recipe

def fast_batches(images, labels, batch_size: int, epochs: int, seed: int, translate: int,
                 alternating_flip: bool) -> tf.data.Dataset:
    """All epochs of training batches as one stream, made in the graph from the uint8 arrays.

    Each epoch: a seeded permutation (the last partial batch dropped), alternating flip, random translate.
    Everything depends only on (seed, epoch, batch), so a run is reproducible and resumable.
    """
    images, labels = tf.constant(images), tf.constant(labels)
    count = int(labels.shape[0])
    steps = count // batch_size
    start_flipped = tf.random.stateless_uniform([count], (seed, 0)) < 0.5

    def batch(epoch, step, indices):
        x = tf.gather(images, indices)
        if alternating_flip:
            x = augment.alternating_flip(x, tf.gather(start_flipped, indices), epoch)
        x = augment.random_translate(x, translate, tf.stack([seed + 1, epoch * steps + step]))
        return x, tf.gather(labels, indices)

    def epoch_batches(epoch):
        order = tf.argsort(tf.random.stateless_uniform([count], tf.stack([seed + 2, epoch])))
        order = tf.reshape(order[:steps * batch_size], [steps, batch_size])
        steps_range = tf.data.Dataset.range(steps)
        return tf.data.Dataset.zip(steps_range, tf.data.Dataset.from_tensor_slices(order)).map(
            lambda step, indices: batch(epoch, step, indices), num_parallel_calls=tf.data.AUTOTUNE)

    return tf.data.Dataset.range(epochs).flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE)


class FastTrainer(keras.Model):
    """Wraps a fast net for `fit` with airbench's update: label-smoothed cross-entropy, L2 added to the
    gradient, BatchNorm biases at `bias_lr_scale` x the learning rate, and a gate that freezes the
    whitening bias. Keras' optimizers have no per-variable learning rate, hence this train_step."""

    def __init__(self, net, recipe, **kwargs):
        super().__init__(**kwargs)
        self.net, self.recipe = net, recipe
        self.whiten_bias_gate = tf.Variable(1.0, trainable=False, name="whiten_bias_gate")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]

    def call(self, images, training=False):
        return self.net(images, training=training)

    def _loss(self, labels, logits):
        targets = tf.one_hot(labels, tf.shape(logits)[-1])
        return tf.reduce_mean(keras.losses.categorical_crossentropy(
            targets, logits, from_logits=True, label_smoothing=self.recipe.label_smoothing))

    def _scales(self, variable):
        """(gradient scale, L2 scale) of a variable: the gated whitening bias gets neither once frozen."""
        if variable.path.startswith("whiten/"):
            return self.whiten_bias_gate, self.whiten_bias_gate
        if "_bn" in variable.path and variable.name == "beta":
            return self.recipe.bias_lr_scale, 1.0
        return 1.0, 1.0

    def train_step(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            logits = self.net(images, training=True)
            loss = self._loss(labels, logits)
        variables = self.net.trainable_variables
        gradients = tape.gradient(loss, variables)
        # airbench's decoupled units: this L2 gives every variable the same per-step decay.
        l2 = self.recipe.weight_decay / self.recipe.learning_rate
        scales = [self._scales(variable) for variable in variables]
        gradients = [gradient_scale * gradient + l2_scale * l2 * variable
                     for gradient, variable, (gradient_scale, l2_scale) in zip(gradients, variables, scales)]
        self.optimizer.apply(gradients, variables)
        return self._update_metrics(loss, labels, logits)

    def test_step(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self.net(images, training=False)
        return self._update_metrics(self._loss(labels, logits), labels, logits)

    def _update_metrics(self, loss, labels, logits):
        self.loss_tracker.update_state(loss)
        self.accuracy.update_state(labels, logits)
        return {metric.name: metric.result() for metric in self.metrics}


class _WhitenBiasFreeze(keras.callbacks.Callback):
    def __init__(self, gate, epochs: int):
        super().__init__()
        self.gate, self.epochs = gate, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.gate.assign(1.0 if epoch < self.epochs else 0.0)


def fast_learning_rate(recipe) -> float:
    """airbench's decoupled learning rate as the SGD step size for a batch-mean loss."""
    return recipe.learning_rate * recipe.batch_size / (1024 * (1 + 1 / (1 - recipe.momentum)))


def _train_fast(net, dataset, recipe, run_dir: Path, seed: int, verbose: int, callbacks: list,
                validation) -> list:
    if "whiten" not in [layer.name for layer in net.layers]:
        raise UserError(f"the fast recipe trains the fast model family; {recipe.model!r} is not one of them")
    steps = len(dataset.y_train) // recipe.batch_size
    if steps == 0:
        raise UserError(f"batch size {recipe.batch_size} is larger than the {len(dataset.y_train)} training images")
    total_steps = steps * recipe.epochs
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(dataset.y_train), min(recipe.whitening_images, len(dataset.y_train)), replace=False)
    models.init_fast_net(net, dataset.x_train[np.sort(sample)])
    trainer = FastTrainer(net, recipe)
    schedule = optim.TriangleSchedule(fast_learning_rate(recipe), total_steps, recipe.lr_start,
                                      recipe.lr_peak_at, recipe.lr_end)
    trainer.compile(optimizer=keras.optimizers.SGD(schedule, momentum=recipe.momentum, nesterov=True),
                    jit_compile=recipe.jit_compile)
    lookahead = optim.Lookahead(net, total_steps, recipe.lookahead_start_epoch, recipe.lookahead_every,
                                recipe.lookahead_decay, recipe.lookahead_power)
    training_batches = fast_batches(dataset.x_train, dataset.y_train, recipe.batch_size, recipe.epochs, seed,
                                    recipe.translate, recipe.alternating_flip)
    fit = trainer.fit(training_batches, epochs=recipe.epochs, steps_per_epoch=steps, validation_data=validation,
                      shuffle=False,
                      verbose=verbose, callbacks=[_WhitenBiasFreeze(trainer.whiten_bias_gate, recipe.whiten_bias_epochs),
                                                  lookahead, _csv_logger(run_dir, append=False), *callbacks])
    return _history_records(fit, 0, "train")


# ---------------------------------------------------------------- run files

def _write_history(run_dir: Path, history: list) -> None:
    phases = {}
    for record in history:
        phases[record["phase"]] = phases.get(record["phase"], 0) + 1
    fileio.write_json(run_dir / "history.json", {"epochs": history, "phases": phases})
    for metric in ("accuracy", "loss"):
        plots.plot_curves(history, metric, run_dir / f"{metric}.png")


def _metrics(test, dataset, recipe, net, model, seed, files, train_wall_s, wall_s) -> dict:
    return {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "per_class_accuracy": test["per_class_accuracy"],
        "class_names": list(dataset.class_names),
        "data": dataset.summary(),
        "recipe": dataclasses.asdict(recipe),
        "seed": seed,
        "model": {"name": recipe.model, "parameters": models.count_params(model),
                  "forward_flops_per_image": models.forward_flops(model),  # as saved (with any test-time views)
                  "net_forward_flops_per_image": models.forward_flops(net)},  # one view, as trained
        "files": files,
        "train_wall_s": round(train_wall_s, 2),
        "wall_s": round(wall_s, 2),
        "versions": versions(),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions() -> dict:
    return {"imagerec": imagerec.__version__, "cpu": cpu_name(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "processor": platform.machine()}
