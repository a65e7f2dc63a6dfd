"""Training: run a recipe on a dataset and write a complete run directory.

Flow: Dataset (uint8) → tf.data batches → fit under a tf.distribute strategy (the seed recipe here, the fast
recipe in `fast_training`) → evaluate on the test split → model files, history, curves and metrics.json in
the run directory (every file written atomically). Also here: resume, NaN stop and mixed precision.
"""

import contextlib
import csv
import dataclasses
import json
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import imagerec
from imagerec import augment, distribute, evaluate, fast_training, fileio, models, plots, saving
from imagerec.errors import UserError


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    model: keras.Model
    history: list  # per-epoch records, see history.json
    metrics: dict  # metrics.json
    test_probabilities: np.ndarray = None  # (N, K) of the saved model on the test split, for reports


def batches(images, labels, batch_size: int) -> tf.data.Dataset:
    """uint8 arrays → (images, labels) batches in order (evaluation); the whole split stays in memory."""
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)


def seed_batches(images, labels, recipe, seed: int, first_epoch: int = 0) -> tf.data.Dataset:
    """The seed recipe's epochs `first_epoch`..`total_epochs - 1` as one stream of float32 batches.

    Each epoch is a seeded permutation cut into batches (the last one partial, as Keras' own batching); the
    plain phase's epochs give the images as they are, the augmented phase's shift and mirror them. Every
    choice depends only on (seed, epoch, step), so one `fit` covers both phases and a resumed run sees exactly
    the batches the uninterrupted run would have seen.
    """
    images, labels = tf.constant(images), tf.constant(labels)
    count, batch_size = int(labels.shape[0]), recipe.batch_size
    steps = -(-count // batch_size)

    def batch(epoch, step, indices):
        x = tf.cast(tf.gather(images, indices), tf.float32)
        augment_seed = tf.stack([tf.constant(seed, tf.int64) + 1, epoch * steps + step])
        x = tf.cond(epoch >= recipe.plain_epochs,
                    lambda: augment.random_shift_and_flip(x, recipe.shift_fraction, recipe.horizontal_flip,
                                                          augment_seed),
                    lambda: x)
        return x, tf.gather(labels, indices)

    def epoch_batches(epoch):
        order = tf.argsort(tf.random.stateless_uniform([count], tf.stack([tf.constant(seed, tf.int64), epoch])))
        positions = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
        return tf.data.Dataset.zip(tf.data.Dataset.range(steps), positions).map(
            lambda step, indices: batch(epoch, step, indices), num_parallel_calls=tf.data.AUTOTUNE)

    return tf.data.Dataset.range(first_epoch, recipe.total_epochs).flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE)


def train(dataset, recipe, run_dir=None, seed: int = 0, verbose: int | None = None,
          callbacks=(), validate_each_epoch: bool = True, strategy=None, resume: bool = False,
          deterministic: bool = False) -> RunResult:
    """Train `recipe` on `dataset`, evaluate on its test split, and save everything under `run_dir`.

    The test split doubles as the validation data shown per epoch, as in the original tutorial.
    `callbacks` are extra Keras callbacks given to every `fit` (e.g. timers, TensorBoard);
    `validate_each_epoch=False` skips the per-epoch validation pass (benchmarks evaluate on their own).

    Training state is backed up in `run_dir/backup/` after every epoch (Keras' BackupAndRestore);
    `resume=True` continues an interrupted run in `run_dir` from its last completed epoch. A NaN or
    infinite loss stops training with a UserError and keeps that backup.
    `deterministic=True` turns on TensorFlow's op determinism (for the whole process): with the same seed,
    two runs on the same CPU give bit-identical weights and history.

    `strategy` is a tf.distribute strategy (see `distribute.make_strategy`; default: the current one).
    Under multiworker every worker runs all of this alike (saving reads distributed variables, which takes
    every worker), but only the chief writes `run_dir`; the others write to a temporary folder, then delete it.
    Raises UserError if `run_dir` already holds files (unless resuming) or the model does not suit the recipe.
    """
    strategy = strategy or tf.distribute.get_strategy()
    _check_options(recipe, seed, run_dir)  # before any file is written
    if resume and distribute.is_multiworker(strategy):
        raise UserError("--resume is not supported with --strategy multiworker yet: restart the workers instead")
    check_precision(recipe.mixed_precision)  # settings the run cannot use fail before any file is written
    distribute.per_replica_batch(strategy, recipe.batch_size)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    chief = distribute.is_chief(strategy)
    if not chief:
        run_dir = Path(tempfile.mkdtemp(prefix="imagerec-worker-"))
    elif resume:
        run_dir = _resumable_dir(run_dir)
    else:
        run_dir = fileio.prepare_empty_dir(run_dir or fileio.default_run_dir())
    _record_settings(run_dir, recipe, seed, resume)
    try:
        return _train_in(run_dir, dataset, recipe, seed, verbose, callbacks, validate_each_epoch, strategy)
    finally:
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)


def _check_options(recipe, seed: int, run_dir) -> None:
    models.check_model_name(recipe.model)
    if isinstance(seed, bool) or not (isinstance(seed, (int, np.integer)) and 0 <= seed < 2**32):
        raise UserError(f"the seed must be a whole number from 0 to {2**32 - 1}, got {seed!r}")
    if run_dir is not None and not str(run_dir).strip():
        raise UserError("the run directory is an empty name; pass a folder (or None for runs/<timestamp>)")


def _train_in(run_dir, dataset, recipe, seed, verbose, callbacks, validate_each_epoch, strategy) -> RunResult:
    verbose = verbose if verbose is not None else (1 if sys.stdout.isatty() else 2)
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    if distribute.is_multiworker(strategy):
        validate_each_epoch = False  # see distribute.fit
    validation = batches(dataset.x_test, dataset.y_test, 500).prefetch(tf.data.AUTOTUNE) if validate_each_epoch else None
    first_epoch = _prepare_resume(run_dir)
    # The CSV row of an epoch is written before its backup: a kill in between leaves an extra row, which
    # _prepare_resume drops, never a missing one.
    callbacks = [_csv_logger(run_dir), *_safety_callbacks(run_dir, strategy), *callbacks]
    trainer = {"seed": _train_seed, "fast": fast_training.train_fast}[recipe.kind]
    with strategy.scope(), _dtype_policy(recipe.mixed_precision):
        net = models.build_model(recipe.model, dataset.num_classes, dataset.image_shape)
        try:
            trainer(net, dataset, recipe, seed, verbose, callbacks, validation, strategy, first_epoch)
        except RuntimeError as error:
            if "NaN or Inf" not in str(error):
                raise
            raise UserError(f"training stopped: the loss became NaN or infinite ({_first_line(error)}); the last "
                            f"good epoch is kept in {run_dir / BACKUP_DIR} (--resume continues from it, e.g. "
                            "after lowering --learning-rate)") from None
    if recipe.mixed_precision != "off":
        net = _float32_copy(net, recipe, dataset)
    train_wall_s = time.perf_counter() - started
    model = inference_model(net, recipe)
    test_probabilities = saving.Classifier.from_keras(model, dataset.class_names, run_dir).predict_proba(dataset.x_test)
    test = evaluate.score(test_probabilities, dataset.y_test, dataset.class_names)
    files = saving.save_model_files(model, run_dir, dataset.class_names, recipe.model,
                                    test_time_augmentation=_uses_tta(recipe))
    history = _history_from_csv(run_dir, recipe)
    _write_history(run_dir, history)
    metrics = _metrics(test, dataset, recipe, net, model, seed, files, train_wall_s, time.perf_counter() - started)
    fileio.write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, model, history, metrics, test_probabilities)


# ---------------------------------------------------------------- precision

PRECISION_POLICIES = {"off": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@contextlib.contextmanager
def _dtype_policy(mixed_precision: str):
    """Keras' global dtype policy for building and training, restored afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[mixed_precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def check_precision(mixed_precision: str) -> None:
    """UserError for a precision the hardware cannot run; a warning where it runs but slowly."""
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    if mixed_precision == "fp16" and not has_gpu:
        raise UserError("--mixed-precision fp16 needs a GPU (TensorFlow's CPU kernels emulate float16 slowly); "
                        "on a CPU use bf16")
    if mixed_precision == "bf16" and not has_gpu and not cpu_has_bf16():
        warnings.warn("this CPU has no bfloat16 instructions (AVX512_BF16 or AMX): mixed_bfloat16 will run, "
                      "but slower than float32", stacklevel=3)


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _float32_copy(net, recipe, dataset):
    """The trained net rebuilt in float32 with the same weights: every saved and exported format is float32."""
    copy = models.build_model(recipe.model, dataset.num_classes, dataset.image_shape)
    copy.set_weights(net.get_weights())
    return copy


# ---------------------------------------------------------------- resume and safety

BACKUP_DIR = "backup"  # BackupAndRestore's own folder: latest.weights.h5, training_metadata.json (+ .bkp)
HISTORY_CSV = "history.csv"


def _resumable_dir(run_dir) -> Path:
    if run_dir is None:
        raise UserError("--resume needs --out: the run directory to continue")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"cannot resume: {run_dir} is not a run directory")
    if (run_dir / "metrics.json").exists():
        raise UserError(f"cannot resume: the run in {run_dir} has already finished")
    return run_dir


def _record_settings(run_dir: Path, recipe, seed: int, resume: bool) -> None:
    """Write run.json (recipe and seed) when a run starts; a resumed run must have the same."""
    settings = {"recipe": dataclasses.asdict(recipe), "seed": seed}
    path = run_dir / "run.json"
    if resume and path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved != json.loads(json.dumps(settings)):
            changed = sorted(key for key in {**saved["recipe"], **settings["recipe"]}
                             if saved["recipe"].get(key) != settings["recipe"].get(key))
            changed += ["seed"] if saved.get("seed") != seed else []
            raise UserError(f"--resume must repeat the run's options; these differ from {path}: {', '.join(changed)}")
        return
    fileio.write_json(path, settings)


def _prepare_resume(run_dir: Path) -> int:
    """Epochs already completed in `run_dir` (0 for a new run); drops history rows of later, unfinished ones."""
    completed = 0
    for name in ("training_metadata.json", "training_metadata.json.bkp"):  # Keras' backup, then its previous one
        try:
            completed = int(json.loads((run_dir / BACKUP_DIR / name).read_text())["epoch"])
            break
        except (OSError, ValueError, KeyError, TypeError):
            continue
    history = run_dir / HISTORY_CSV
    if history.exists():
        rows = list(csv.DictReader(history.open(newline="", encoding="utf-8")))
        kept = [row for row in rows if int(row["epoch"]) < completed]  # CSVLogger counts epochs from 0
        with fileio.atomic_path(history, suffix=".csv") as temporary, \
                temporary.open("w", newline="", encoding="utf-8") as handle:
            if kept:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(kept)
    return completed


def _safety_callbacks(run_dir: Path, strategy) -> list:
    # TerminateOnNaN's graceful default would run on_train_end, where BackupAndRestore deletes its backup.
    callbacks = [keras.callbacks.TerminateOnNaN(raise_error=True)]
    if not distribute.is_multiworker(strategy):
        # double_checkpoint keeps the previous epoch's files, so a kill while Keras writes leaves one loadable.
        callbacks.insert(0, keras.callbacks.BackupAndRestore(str(run_dir / BACKUP_DIR), double_checkpoint=True))
    return callbacks


def _history_from_csv(run_dir: Path, recipe) -> list:
    """Every epoch's record, across resumed runs, from the CSV that Keras' CSVLogger streams."""
    path = run_dir / HISTORY_CSV
    if not path.exists():
        return []
    records = []
    for row in csv.DictReader(path.open(newline="", encoding="utf-8")):
        epoch = int(row.pop("epoch")) + 1
        records.append({"epoch": epoch, "phase": _phase(recipe, epoch),
                        **{key: float(value) for key, value in row.items() if value not in ("", "NA", None)}})
    return records


def _phase(recipe, epoch: int) -> str:
    if recipe.kind == "seed":
        return "plain" if epoch <= recipe.plain_epochs else "augmented"
    return "train"


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def _uses_tta(recipe) -> bool:
    return bool(getattr(recipe, "test_time_augmentation", False))


def inference_model(net, recipe):
    """The model a recipe saves: raw pixels → probabilities (with the recipe's test-time views)."""
    return models.inference_model(net, test_time_augmentation=_uses_tta(recipe))


def _csv_logger(run_dir: Path):
    # CSVLogger streams one row per finished epoch, so even a killed run keeps its log (see _prepare_resume);
    # it appends, so one logger serves both phases of the seed recipe and a resumed run.
    return keras.callbacks.CSVLogger(str(run_dir / HISTORY_CSV), append=True)


# ---------------------------------------------------------------- the seed recipe

def _train_seed(model, dataset, recipe, seed: int, verbose: int, callbacks: list, validation, strategy,
                first_epoch: int = 0) -> None:
    """Adam; the plain phase then the augmented phase, in one `fit` over one epoch count.

    One `fit`, not one per phase: Keras' BackupAndRestore leaves the model's `_initial_epoch` set after
    restoring, and `fit` prefers it to its own `initial_epoch`, so a second `fit` after a resume re-ran the
    restored epochs. A run killed after its last epoch's backup fits zero epochs, which restores it.
    """
    if not models.outputs_probabilities(model):
        raise UserError(f"the seed recipe trains models that end in softmax; {recipe.model!r} returns logits")
    model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=recipe.jit_compile)
    steps = -(-len(dataset.y_train) // recipe.batch_size)
    distribute.fit(model, seed_batches(dataset.x_train, dataset.y_train, recipe, seed, first_epoch), strategy,
                   epochs=recipe.total_epochs, steps_per_epoch=steps, initial_epoch=first_epoch,
                   validation_data=validation, verbose=verbose, callbacks=callbacks)


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
