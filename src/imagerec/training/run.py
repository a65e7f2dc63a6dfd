"""Training: run a recipe on a dataset, score it, save it and report it, into one run directory.

Flow: options checked into a frozen `RunPlan` → Dataset (uint8) → `fitting`: the recipe type's trainer under a
tf.distribute strategy (TensorFlow; one device on other Keras backends), from a warm start if asked →
`outcome`: the inference model, scores on the test split, model files, history, curves, metrics (`layout`
names them, every file written atomically) and the report. Keras' backend is chosen before Keras is
imported (`backends.use`): what a recipe needs of it is the recipe type's `needs_tensorflow`; `deterministic`
and strategies other than auto/default need TensorFlow too.
"""

import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras

from imagerec import backends
from imagerec.artefacts import layout, rundir
from imagerec.data import load as data_load
from imagerec.data import exclude as data_exclude
from imagerec.data import splits
from imagerec.data.dataset import Dataset, parse_image_size
from imagerec.errors import UserError, printable
from imagerec.models import registry
from imagerec.training import calibration, distribute, fitting, outcome, precision, recipes, warmstart
from imagerec.training.outcome import RunResult

__all__ = ["train", "fit", "RunResult", "RunPlan", "resolve_validation"]


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What a run decided before it trains: the recipe (its precision resolved), the seed, the validation, the
    strategy, callbacks and verbosity, and the warm start read from disk. Every later step reads this."""

    recipe: object
    seed: int
    validation: str  # "holdout", "test" or "none" (`resolve_validation`)
    strategy: object
    callbacks: tuple = ()
    verbose: int = 2
    init_from: str | None = None  # an earlier run to start from (`warmstart.read_run`)
    weights: str = "none"  # a backbone's start: none, imagenet or a .weights.h5 file
    warm_source: object = None  # warmstart.Source, read from `init_from`
    backbone_weights: list | None = None  # read from `weights`
    exclusions: object = None  # data.exclude.Exclusions read from `exclude`, or None
    excluded: dict | None = None  # what they left out of this run's data (`data.exclude.apply`)
    calibration: object = None  # calibration.CalibrationSet the temperature is fitted on, or None
    calibration_note: str | None = None  # why there is none

    @property
    def chief(self) -> bool:
        return distribute.is_chief(self.strategy)

    def settings(self) -> dict:
        """What run.json records and `resume` checks: the recipe, the seed and any warm start."""
        return {"recipe": dataclasses.asdict(self.recipe), "seed": self.seed,
                **({"init_from": str(self.init_from)} if self.init_from else {}),
                **({"weights": str(self.weights)} if self.weights not in (None, "none") else {}),
                **({"exclude": self.exclusions.file} if self.exclusions is not None else {})}


def train(data, recipe=recipes.DEFAULT, run_dir=None, seed: int = 0, *, data_options=None, report: bool = True,
          tensorboard: bool = False, resume: bool = False, deterministic: bool = False, strategy="auto",
          callbacks=(), validation: str = "auto", init_from=None, trust_model: bool = False, weights: str = "none",
          exclude=None, verbose: int | None = None) -> RunResult:
    """Train `recipe` (a recipe, or a name for `recipes.get_recipe`) on `data` (a `Dataset`, or a source for
    `load_dataset` with `data_options`), score it on the test split, save every model format, the history,
    curves, metrics and (unless `report=False`) the report under `run_dir` (default runs/<timestamp>;
    `tensorboard=True`: logs too). Every option is checked before data is loaded or a file written (UserError).

    `validation`: what each epoch is validated on (`resolve_validation`); `callbacks`: extra Keras callbacks;
    `init_from` (a run of the same model family, loaded safely unless `trust_model`) and `weights` (none,
    imagenet or a .weights.h5 file of a Keras Applications backbone) warm-start the net (`warmstart`). `exclude`
    (a doctor's issues.csv or a list of paths) leaves files out of training (`data.exclude`). State is
    backed up every epoch (BackupAndRestore): `resume=True` continues an interrupted run in `run_dir`; a NaN loss
    stops with a UserError and keeps the backup. `deterministic=True`: TensorFlow's op determinism (for the
    process; bit-identical runs per seed on one CPU). `strategy`: a tf.distribute strategy or its name
    (`distribute.STRATEGIES`); under multiworker every worker runs this alike, only the chief writes `run_dir`.
    """
    recipe = _recipe_as_run(recipe)
    plan = RunPlan(recipe, seed, resolve_validation(validation, recipe), _strategy(strategy), tuple(callbacks),
                   _verbosity(verbose), init_from, weights, exclusions=_read_exclusions(exclude))
    _check_options(plan, run_dir, resume=resume, tensorboard=tensorboard, deterministic=deterministic)
    plan = _with_warm_start(plan, data, data_options, trust_model)
    dataset, plan = _calibrating(*_excluding(_load(data, plan, data_options), plan))
    registry.check_input_shape(recipe.model, dataset.image_shape)
    if plan.verbose:
        print(printable(_describe_start(dataset, plan)), flush=True)
    if deterministic:
        _enable_op_determinism()
    run_dir = _open_run_dir(run_dir, resume, plan.chief)
    rundir.record_settings(run_dir, plan.settings(), resume)
    plan = _with_tensorboard(plan, run_dir) if tensorboard and plan.chief else plan
    try:
        result = outcome.finish(run_dir, dataset, plan, _fitted(run_dir, dataset, plan))
    finally:
        if not plan.chief:
            shutil.rmtree(run_dir, ignore_errors=True)
    if report and plan.chief:
        result.report = outcome.write_report(result, dataset)
    return result if plan.chief else dataclasses.replace(result, run_dir=None)  # the chief wrote the run directory


def fit(dataset: Dataset, recipe=recipes.DEFAULT, seed: int = 0, verbose: int = 0):
    """The trained net (float32, returning what its family returns: logits or probabilities) of `recipe` on
    `dataset`'s training images, without a run directory: nothing is scored, saved or validated (Keras' backup
    lives in a scratch folder while it trains). What the doctor's cross-validation trains per fold."""
    recipe = _recipe_as_run(recipe)
    plan = RunPlan(recipe, seed, "none", _strategy("auto"), verbose=verbose)
    _check_options(plan, None, resume=False, tensorboard=False, deterministic=False)
    registry.check_input_shape(recipe.model, dataset.image_shape)
    with tempfile.TemporaryDirectory(prefix="imagerec-fit-") as scratch:
        net, _ = fitting.fit_net(scratch, dataset, plan)
    return net


def _with_tensorboard(plan: RunPlan, run_dir) -> RunPlan:
    logs = keras.callbacks.TensorBoard(str(layout.tensorboard_dir(run_dir)))
    return dataclasses.replace(plan, callbacks=(*plan.callbacks, logs))


def _fitted(run_dir, dataset, plan: RunPlan) -> "outcome.Trained":
    started = time.perf_counter()
    net, warm_start = fitting.fit_net(run_dir, dataset, plan)
    return outcome.Trained(net, warm_start, started, time.perf_counter() - started)


def resolve_validation(validation: str, recipe) -> str:
    """The per-epoch validation a run uses (`recipes.VALIDATIONS`): "holdout", a stratified slice of the training
    images (`val_split` of the data options, default 0.2), so that the test split is looked at once, at the end;
    "test", the test split, as the original tutorial does; "none"; "auto": the recipe type's
    `default_validation` ("test" for the seed recipe, the tutorial's; "none" for the others, whose training data
    and results stay those of BENCHMARKS.md)."""
    if validation not in recipes.VALIDATIONS:
        raise UserError(f"`validation` must be one of {', '.join(recipes.VALIDATIONS)}, got {validation!r}")
    return recipe.default_validation if validation == "auto" else validation


def _recipe_as_run(recipe):
    """The recipe (or the named one), validated, with the precision this machine runs resolved ("auto")."""
    recipe = recipes.get_recipe(recipe) if isinstance(recipe, str) else recipe.validate()
    return dataclasses.replace(recipe, mixed_precision=precision.resolve_precision(recipe.mixed_precision))


def _strategy(strategy):
    return distribute.make_strategy(strategy) if isinstance(strategy, str) else strategy


def _verbosity(verbose) -> int:
    """The Keras verbosity: a bar on a terminal, a line per epoch in logs."""
    return verbose if verbose is not None else (1 if sys.stdout.isatty() else 2)


def _check_options(plan: RunPlan, run_dir, *, resume: bool, tensorboard: bool, deterministic: bool) -> None:
    """UserError for any option no run can use, before data is loaded or a file written."""
    recipe = plan.recipe
    if run_dir is not None and not str(run_dir).strip():
        raise UserError("`run_dir` is an empty name; give a folder (or None for runs/<timestamp>)")
    if getattr(recipe, "trainer", None) is None:
        raise UserError(f"no trainer for a {type(recipe).__name__}; recipes are made by `recipes.get_recipe`")
    recipes.check_model(recipe)
    if recipe.needs_tensorflow:
        backends.require_tensorflow(f"the {recipe.name} recipe ({recipe.trainer})")
    if resume and not recipe.resumable:
        raise UserError(f"`resume` is not supported by the {recipe.name} recipe yet: start the run again")
    if deterministic:
        backends.require_tensorflow("`deterministic` (TensorFlow's op determinism)")
    splits.check_seed(plan.seed)
    if resume and distribute.is_multiworker(plan.strategy):
        raise UserError("`resume` is not supported with the multiworker strategy yet: restart the workers instead")
    if tensorboard:
        _require_tensorboard()
    precision.check_precision(recipe.mixed_precision)
    distribute.per_replica_batch(plan.strategy, recipe.batch_size)
    if resume:
        rundir.check_resumable(run_dir)
    elif run_dir is not None and plan.chief:
        rundir.check_new(run_dir, create=False)


def _require_tensorboard() -> None:
    # TensorFlow 2.21 does not depend on tensorboard, and Keras' callback then fails mid-run (TBNotInstalledError).
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError("`tensorboard` needs the tensorboard package: pip install 'imagerec[tensorboard]'") from None


def _with_warm_start(plan: RunPlan, data, data_options, trust_model: bool) -> RunPlan:
    """The plan with an earlier run's layers and a backbone's weights read, each when asked for, before any file
    is written or data decoded: a wrong file, no internet for ImageNet's, or a size the model refuses fails
    here."""
    if not isinstance(data, Dataset) and (data_options or {}).get("image_size") is not None:
        registry.check_input_shape(plan.recipe.model, (*parse_image_size(data_options["image_size"]), 3))
    source = None if plan.init_from is None else warmstart.read_run(plan.init_from, trust_model)
    backbone_weights = None if plan.weights in (None, "none") else warmstart.read_backbone_weights(
        plan.recipe.model, plan.weights)
    return dataclasses.replace(plan, warm_source=source, backbone_weights=backbone_weights)


def _load(data, plan: RunPlan, data_options) -> Dataset:
    """The Dataset `data` is or names, with a validation hold-out when the plan validates on one."""
    options = {"seed": plan.seed, **(data_options or {})}
    hold_out_validation = plan.validation == "holdout"
    if not isinstance(data, Dataset):
        return data_load.load_dataset(data, **options, hold_out_validation=hold_out_validation)
    if hold_out_validation and data.y_val is None:
        return splits.hold_out(data, options.get("val_split", 0.2), options["seed"])
    return data


def _read_exclusions(exclude):
    return None if exclude is None else data_exclude.read_exclusions(exclude)


def _excluding(dataset: Dataset, plan: RunPlan) -> tuple:
    """(the dataset without the plan's excluded training files, the plan recording what they were)."""
    if plan.exclusions is None:
        return dataset, plan
    dataset, excluded = data_exclude.apply(dataset, plan.exclusions)
    if plan.verbose:
        print(printable(f"imagerec: left out {excluded['count']} training file(s) listed in {excluded['file']} "
                        f"({_counts_text(excluded['by_kind'])}); {excluded['kept_in_test']} listed test file(s) "
                        f"kept in the test split"), flush=True)
    return dataset, dataclasses.replace(plan, excluded=excluded)


def _calibrating(dataset: Dataset, plan: RunPlan) -> tuple:
    """(the dataset without a calibration slice of its training images, if one is held out; the plan with the
    images the temperature will be fitted on)."""
    dataset, held_out, note = calibration.hold_out(dataset, plan.recipe.calibration_images, plan.seed)
    return dataset, dataclasses.replace(plan, calibration=held_out, calibration_note=note)


def _counts_text(counts: dict) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in counts.items()) or "none"


def _enable_op_determinism() -> None:
    import tensorflow as tf  # `_check_options` made sure the backend is TensorFlow

    tf.config.experimental.enable_op_determinism()


def _describe_start(dataset, plan: RunPlan) -> str:
    strategy, recipe = plan.strategy, plan.recipe
    replicas = strategy.num_replicas_in_sync
    where = "" if replicas == 1 and type(strategy).__name__ in ("_DefaultDistributionStrategy", "SingleDevice") \
        else f"; {type(strategy).__name__}, {replicas} replica(s)"
    if not backends.is_tensorflow():
        where += f"; Keras on {backends.current()}"
    held_out = f" / {len(dataset.y_val)} validation" if dataset.y_val is not None else ""
    if plan.calibration is not None and plan.calibration.source != "validation":
        held_out += f" / {len(plan.calibration.labels)} calibration"
    height, width = dataset.image_shape[:2]
    return (f"imagerec: {dataset.source}: {len(dataset.y_train)} train{held_out} / {len(dataset.y_test)} test images "
            f"at {height}x{width}, {dataset.num_classes} classes; recipe {recipe.name} ({recipe.epochs} epochs){where}")


def _open_run_dir(run_dir, resume: bool, chief: bool):
    """The folder this process writes: the run directory (created; `_check_options` checked a given one), or a
    scratch folder on a non-chief worker."""
    if not chief:
        return Path(tempfile.mkdtemp(prefix="imagerec-worker-"))
    if resume:
        return Path(run_dir)
    return rundir.check_new(run_dir if run_dir is not None else rundir.default_path())  # new: created here
