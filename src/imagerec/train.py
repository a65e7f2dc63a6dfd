"""Training: run a recipe on a dataset, score it, save it and report it, into one run directory.

Flow: Dataset (uint8) → the recipe type's trainer (`TRAINERS`: `seed_training`, `airbench`, `finetune`) under
a tf.distribute strategy (TensorFlow; one device on other Keras backends), from a warm start if asked →
the inference model → scores on the test split → model files, history, curves and metrics (`rundir` names
them, every file written atomically) → the report. Also here: validation, resume, the NaN stop and mixed
precision. Keras' backend is chosen before Keras is imported (`backends.use`): the airbench
recipes train on any; the seed recipe, `deterministic` and strategies other than auto/default need TensorFlow.
"""

import contextlib
import dataclasses
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from imagerec import (airbench, backends, distribute, evaluate, finetune, machine, models, recipes, report, rundir,
                      saving, seed_training, warmstart)
from imagerec.classifier import Classifier
from imagerec import data as data_module
from imagerec.batches import ArrayBatches
from imagerec.data import Dataset, check_seed, load_dataset, parse_image_size
from imagerec.errors import UserError, printable

# Each recipe type's trainer: fit(net, dataset, recipe, seed, first_epoch, warm_layers, **distribute.fit
# options) trains `net` in place (`warm_layers`: names of layers a warm start loaded).
TRAINERS = {recipes.SeedRecipe: seed_training.fit, recipes.AirbenchRecipe: airbench.fit,
            recipes.FinetuneRecipe: finetune.fit}
PRECISION_POLICIES = {"off": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
assert set(PRECISION_POLICIES) == set(recipes.PRECISIONS) - {"auto"}


@dataclasses.dataclass
class RunResult:
    run_dir: object  # pathlib.Path; None on a multi-worker run's non-chief workers
    model: Classifier  # the saved model, as `load_model` would return it
    history: list  # per-epoch records, as in history.json
    metrics: dict  # as in metrics.json
    test_probabilities: np.ndarray = None  # (N, K) of the saved model on the test split
    report: dict | None = None  # the report's numbers (report.json) and its page ("path"), when one was written


def train(data, recipe=recipes.DEFAULT, run_dir=None, seed: int = 0, *, data_options=None, report: bool = True,
          tensorboard: bool = False, resume: bool = False, deterministic: bool = False, strategy="auto",
          callbacks=(), validation: str = "auto", init_from=None, trust_model: bool = False, weights: str = "none",
          verbose: int | None = None) -> RunResult:
    """Train `recipe` (a recipe, or a name for `recipes.get_recipe`) on `data` (a `data.Dataset`, or a source
    for `data.load_dataset` with `data_options`), score it on the test split, save every model format, the
    history, curves, metrics and (unless `report=False`) the report under `run_dir` (default runs/<timestamp>;
    `tensorboard=True`: logs too). Every option is checked before data is loaded or a file written (UserError).

    `validation`: what each epoch is validated on (`resolve_validation`); `callbacks`: extra Keras callbacks;
    `init_from` (a run of the same model family, loaded safely unless `trust_model`) and `weights` (none,
    imagenet or a .weights.h5 file of a Keras Applications backbone) warm-start the net (`warmstart`). State is
    backed up every epoch (BackupAndRestore): `resume=True` continues an interrupted run in `run_dir`; a NaN loss
    stops with a UserError and keeps the backup. `deterministic=True`: TensorFlow's op determinism (for the
    process; bit-identical runs per seed on one CPU). `strategy`: a tf.distribute strategy or its name
    (`distribute.STRATEGIES`); under multiworker every worker runs this alike, only the chief writes `run_dir`.
    """
    recipe = _recipe_as_run(recipe)
    validation = resolve_validation(validation, recipe)
    strategy = distribute.make_strategy(strategy) if isinstance(strategy, str) else strategy
    _check_options(recipe, seed, run_dir, resume, tensorboard, strategy, deterministic)
    start = _read_start(recipe, data, data_options, init_from, trust_model, weights)
    dataset = _load(data, seed, data_options, hold_out_validation=validation == "holdout")
    models.check_input_shape(recipe.model, dataset.image_shape)
    verbose = _say_start(verbose, dataset, recipe, strategy)
    if deterministic:
        _enable_op_determinism()
    chief = distribute.is_chief(strategy)
    run_dir = _open_run_dir(run_dir, resume, chief)
    rundir.record_settings(run_dir, _settings(recipe, seed, init_from, weights), resume)
    if tensorboard and chief:
        callbacks = [*callbacks, keras.callbacks.TensorBoard(str(rundir.tensorboard_dir(run_dir)))]
    try:
        result = _train_in(run_dir, dataset, recipe, seed, verbose, callbacks, validation, strategy, start)
    finally:
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)
    if report and chief:
        result.report = _write_report(result, dataset)
    return result if chief else dataclasses.replace(result, run_dir=None)  # the chief wrote the run directory


def _settings(recipe, seed: int, init_from, weights) -> dict:
    """What run.json records and `resume` checks: the recipe, the seed and any warm start."""
    return {"recipe": dataclasses.asdict(recipe), "seed": seed, **({"init_from": str(init_from)} if init_from else {}),
            **({"weights": str(weights)} if weights not in (None, "none") else {})}


def _say_start(verbose, dataset, recipe, strategy) -> int:
    """The Keras verbosity (a bar on a terminal, a line per epoch in logs), after printing what is trained."""
    verbose = verbose if verbose is not None else (1 if sys.stdout.isatty() else 2)
    if verbose:
        print(printable(_describe_start(dataset, recipe, strategy)), flush=True)
    return verbose


def _read_start(recipe, data, data_options, init_from, trust_model: bool, weights):
    """(an earlier run's warmstart.Source, a backbone's weights), each None when not asked for, read before any
    file is written or data decoded: a wrong file, no internet for ImageNet's, or a size the model refuses
    fails here."""
    if not isinstance(data, Dataset) and (data_options or {}).get("image_size") is not None:
        models.check_input_shape(recipe.model, (*parse_image_size(data_options["image_size"]), 3))
    source = None if init_from is None else warmstart.read_run(init_from, trust_model)
    backbone_weights = None if weights in (None, "none") else warmstart.read_backbone_weights(recipe.model, weights)
    return source, backbone_weights


def resolve_validation(validation: str, recipe) -> str:
    """The per-epoch validation a run uses (`recipes.VALIDATIONS`): "holdout", a stratified slice of the training
    images (`val_split` of the data options, default 0.2), so that the test split is looked at once, at the end;
    "test", the test split, as the original tutorial does; "none"; "auto": "test" for the seed recipe (the
    tutorial) and "none" for the others (their training data and results stay those of BENCHMARKS.md)."""
    if validation not in recipes.VALIDATIONS:
        raise UserError(f"`validation` must be one of {', '.join(recipes.VALIDATIONS)}, got {validation!r}")
    if validation == "auto":
        return "test" if isinstance(recipe, recipes.SeedRecipe) else "none"
    return validation


def _load(data, seed: int, data_options, hold_out_validation: bool) -> Dataset:
    """The Dataset `data` is or names, with a validation hold-out when asked for."""
    options = {"seed": seed, **(data_options or {})}
    if not isinstance(data, Dataset):
        return load_dataset(data, **options, hold_out_validation=hold_out_validation)
    if hold_out_validation and data.y_val is None:
        return data_module.hold_out(data, options.get("val_split", 0.2), options["seed"])
    return data


def _recipe_as_run(recipe):
    """The recipe (or the named one), validated, with the precision this machine runs resolved ("auto")."""
    recipe = recipes.get_recipe(recipe) if isinstance(recipe, str) else recipe.validate()
    return dataclasses.replace(recipe, mixed_precision=resolve_precision(recipe.mixed_precision))


def _enable_op_determinism() -> None:
    import tensorflow as tf  # `_check_options` made sure the backend is TensorFlow

    tf.config.experimental.enable_op_determinism()


def _describe_start(dataset, recipe, strategy) -> str:
    replicas = strategy.num_replicas_in_sync
    where = "" if replicas == 1 and type(strategy).__name__ in ("_DefaultDistributionStrategy", "SingleDevice") \
        else f"; {type(strategy).__name__}, {replicas} replica(s)"
    if not backends.is_tensorflow():
        where += f"; Keras on {backends.current()}"
    held_out = f" / {len(dataset.y_val)} validation" if dataset.y_val is not None else ""
    height, width = dataset.image_shape[:2]
    return (f"imagerec: {dataset.source}: {len(dataset.y_train)} train{held_out} / {len(dataset.y_test)} test images "
            f"at {height}x{width}, {dataset.num_classes} classes; recipe {recipe.name} ({recipe.epochs} epochs){where}")


def _check_options(recipe, seed: int, run_dir, resume: bool, tensorboard: bool, strategy,
                   deterministic: bool) -> None:
    models.check_model_name(recipe.model)
    if run_dir is not None and not str(run_dir).strip():
        raise UserError("`run_dir` is an empty name; give a folder (or None for runs/<timestamp>)")
    if type(recipe) not in TRAINERS:
        raise UserError(f"no trainer for a {type(recipe).__name__}; recipes are made by `recipes.get_recipe`")
    if isinstance(recipe, recipes.SeedRecipe):
        backends.require_tensorflow("the seed recipe (its tf.data pipeline)")
    if isinstance(recipe, recipes.FinetuneRecipe) and resume:
        # Two fits, one per phase: Keras' BackupAndRestore keeps a restored epoch for the next fit (seed_training.fit).
        raise UserError("`resume` is not supported by the finetune recipe yet: start the run again")
    if deterministic:
        backends.require_tensorflow("`deterministic` (TensorFlow's op determinism)")
    check_seed(seed)
    if resume and distribute.is_multiworker(strategy):
        raise UserError("`resume` is not supported with the multiworker strategy yet: restart the workers instead")
    if tensorboard:
        _require_tensorboard()
    check_precision(recipe.mixed_precision)
    distribute.per_replica_batch(strategy, recipe.batch_size)
    if resume:
        rundir.check_resumable(run_dir)
    elif run_dir is not None and distribute.is_chief(strategy):
        rundir.check_new(run_dir, create=False)


def _require_tensorboard() -> None:
    # TensorFlow 2.21 does not depend on tensorboard, and Keras' callback then fails mid-run (TBNotInstalledError).
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError("`tensorboard` needs the tensorboard package: pip install 'imagerec[tensorboard]'") from None


def _open_run_dir(run_dir, resume: bool, chief: bool):
    """The folder this process writes: the run directory (created; `_check_options` checked a given one), or a
    scratch folder on a non-chief worker."""
    if not chief:
        return Path(tempfile.mkdtemp(prefix="imagerec-worker-"))
    if resume:
        return Path(run_dir)
    return rundir.check_new(run_dir if run_dir is not None else rundir.default_path())  # new: created here


def _train_in(run_dir, dataset, recipe, seed, verbose, callbacks, validation, strategy, start) -> RunResult:
    """Fit, then score and save in `run_dir`; `start`: (an earlier run's warmstart.Source, backbone weights)."""
    started = time.perf_counter()
    net, warm_start = _fit(run_dir, dataset, recipe, seed, verbose, callbacks, validation, strategy, start)
    train_wall_s = time.perf_counter() - started
    inference = models.inference_model(net, test_time_augmentation=recipe.test_time_augmentation)
    classifier = Classifier.from_keras(inference, dataset.class_names, rundir.model_path(run_dir))
    test_probabilities = classifier.predict_proba(dataset.x_test)
    test = evaluate.score(test_probabilities, dataset.y_test, dataset.class_names)
    info = rundir.ModelInfo(tuple(dataset.class_names), tuple(inference.input_shape[1:]), recipe.model,
                            recipe.test_time_augmentation)
    files = saving.save_model_files(inference, run_dir, info)
    history = rundir.read_history_csv(run_dir, recipe.phase)
    rundir.write_history(run_dir, history)
    for metric in rundir.CURVE_FILES:
        report.plot_curves(history, metric, rundir.curve_path(run_dir, metric))
    metrics = _metrics(test, dataset, recipe, net, inference, seed, files, train_wall_s,
                       time.perf_counter() - started, validation)
    metrics["init_from"] = warm_start
    rundir.write_metrics(run_dir, metrics)
    return RunResult(run_dir, classifier, history, metrics, test_probabilities)


def _fit(run_dir, dataset, recipe, seed, verbose, callbacks, validation, strategy, start):
    """(the trained net (float32), the warm start's record or None): the net built under the strategy and the
    recipe's precision, its backbone's weights and an earlier run's layers loaded (`start`), and trained from
    the run's last completed epoch."""
    source, backbone_weights = start
    keras.utils.set_random_seed(seed)
    validation_data = None
    if distribute.is_multiworker(strategy):
        pass  # see distribute.fit
    elif validation == "test":
        validation_data = _validation_data(dataset.x_test, dataset.y_test)
    elif validation == "holdout":
        validation_data = _validation_data(dataset.x_val, dataset.y_val)
    first_epoch = rundir.completed_epochs(run_dir)
    # CSVLogger appends one row per finished epoch (before the backup: see rundir.completed_epochs), so one
    # logger serves a resumed run too.
    callbacks = [keras.callbacks.CSVLogger(str(rundir.history_csv(run_dir)), append=True),
                 *_safety_callbacks(run_dir, strategy), *callbacks]
    with strategy.scope(), _dtype_policy(recipe.mixed_precision):
        net = models.build_model(recipe.model, dataset.num_classes, dataset.image_shape)
        if backbone_weights is not None:
            net.get_layer(models.BACKBONE_LAYER).set_weights(backbone_weights)
        warm_start = None if source is None else warmstart.apply(net, source, dataset.class_names)
        if warm_start and verbose:
            print(printable(warmstart.describe(warm_start)), flush=True)
        try:
            TRAINERS[type(recipe)](net, dataset, recipe, seed, first_epoch, warm_layers=(warm_start or {}).get(
                                       "loaded", ()), strategy=strategy,
                                   validation_data=validation_data, callbacks=callbacks, verbose=verbose)
        except RuntimeError as error:
            if "NaN or Inf" not in str(error):
                raise
            raise UserError(f"training stopped: the loss became NaN or infinite ({_first_line(error)}); the last "
                            f"good epoch is kept in {rundir.backup_dir(run_dir)} (`resume` continues from it, "
                            f"e.g. after lowering `learning_rate`)") from None
    return (_float32_copy(net, recipe, dataset) if recipe.mixed_precision != "off" else net), warm_start


def _validation_data(images, labels):
    """The per-epoch validation data: the arrays, or, when they are larger than airbench.IN_GRAPH_BYTES (a
    memory map), batches read from them one at a time (Keras would copy whole arrays into a tensor)."""
    if images.nbytes <= airbench.IN_GRAPH_BYTES:
        return images, labels
    return ArrayBatches(images, labels, distribute.VALIDATION_BATCH)


def _safety_callbacks(run_dir, strategy) -> list:
    # TerminateOnNaN's graceful default would run on_train_end, where BackupAndRestore deletes its backup.
    callbacks = [keras.callbacks.TerminateOnNaN(raise_error=True)]
    if not distribute.is_multiworker(strategy):
        # double_checkpoint keeps the previous epoch's files, so a kill while Keras writes leaves one loadable.
        callbacks.insert(0, keras.callbacks.BackupAndRestore(str(rundir.backup_dir(run_dir)), double_checkpoint=True))
    return callbacks


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


# ---------------------------------------------------------------- precision

@contextlib.contextmanager
def _dtype_policy(mixed_precision: str):
    """Keras' global dtype policy for building and training, restored afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[mixed_precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def resolve_precision(mixed_precision: str) -> str:
    """The precision a run uses: "auto" is bf16 on a GPU or a CPU with bfloat16 instructions, else off."""
    if mixed_precision != "auto":
        return mixed_precision
    return "bf16" if machine.accelerator() is not None or machine.cpu_has_bf16() else "off"


def check_precision(mixed_precision: str) -> None:
    """UserError for a precision the hardware cannot run; a warning where it runs but slowly."""
    has_gpu = machine.accelerator() is not None
    if mixed_precision == "fp16" and not has_gpu:
        raise UserError("`mixed_precision` fp16 needs a GPU (TensorFlow's CPU kernels emulate float16 slowly); "
                        "on a CPU use bf16")
    if mixed_precision == "bf16" and not has_gpu and not machine.cpu_has_bf16():
        warnings.warn("this CPU has no bfloat16 instructions (AVX512_BF16 or AMX): mixed_bfloat16 will run, "
                      "but slower than float32", stacklevel=3)


def _float32_copy(net, recipe, dataset):
    """The trained net rebuilt in float32 with the same weights: every saved and exported format is float32."""
    copy = models.build_model(recipe.model, dataset.num_classes, dataset.image_shape)
    copy.set_weights(net.get_weights())
    return copy


# ---------------------------------------------------------------- what a finished run records

def _class_weights_record(dataset, recipe):
    weights = data_module.class_weights(dataset.y_train, dataset.num_classes, recipe.class_weight)
    return None if weights is None else dict(zip(dataset.class_names, weights.round(4).tolist()))


def _metrics(test, dataset, recipe, net, model, seed, files, train_wall_s, wall_s, validation) -> dict:
    return {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_balanced_accuracy": test["balanced_accuracy"],  # mean per-class accuracy: honest on skewed classes
        "per_class_accuracy": test["per_class_accuracy"],
        "class_names": list(dataset.class_names),
        "data": dataset.summary(),
        "recipe": dataclasses.asdict(recipe),
        "seed": seed,
        "validation": validation,
        "class_weights": _class_weights_record(dataset, recipe),
        "model": {"name": recipe.model, "parameters": models.count_params(model),
                  "forward_flops_per_image": models.forward_flops(model),  # as saved (with any test-time views)
                  "net_forward_flops_per_image": models.forward_flops(net)},  # one view, as trained
        "files": files,
        "train_wall_s": round(train_wall_s, 2),
        "wall_s": round(wall_s, 2),
        "versions": machine.versions(),
    }


def _write_report(result: RunResult, dataset) -> dict:
    """The report's numbers, and its page under "path"."""
    out_dir = rundir.report_dir(result.run_dir)
    numbers = report.write_report(out_dir, result.model, dataset.x_test, dataset.y_test, dataset=dataset,
                                  history=result.history, run=result.metrics, probabilities=result.test_probabilities)
    return {**numbers, "path": str(out_dir / report.REPORT_HTML)}
