"""Fitting a run's net: built under the strategy and the recipe's precision, warm-started, trained by its recipe
type's trainer (`recipe.trainer`) from the run's last completed epoch, with the backup, history and NaN stop
around it. Returns the net in float32 and in Keras' own layers, whatever it trained in."""

import importlib

import keras

from imagerec.artefacts import layout, rundir
from imagerec.errors import UserError, first_line, printable
from imagerec.models import backbones, registry
from imagerec.models import layers as custom_layers
from imagerec.training import batches, distribute, precision, progress, warmstart
from imagerec.training.context import FitContext


def fit_net(run_dir, dataset, plan) -> tuple:
    """(the trained net (float32), the warm start's record or None) for `plan` (a `run.RunPlan`) in `run_dir`."""
    recipe = plan.recipe
    keras.utils.set_random_seed(plan.seed)
    first_epoch = rundir.completed_epochs(run_dir)
    # CSVLogger appends one row per finished epoch (before the backup: see rundir.completed_epochs), so one
    # logger serves a resumed run too.
    callbacks = (keras.callbacks.CSVLogger(str(layout.history_csv(run_dir)), append=True),
                 *_safety_callbacks(run_dir, plan.strategy), *_progress_callbacks(plan), *plan.callbacks)
    with plan.strategy.scope(), precision.dtype_policy(recipe.mixed_precision):
        with custom_layers.fused_batch_norm():  # a training kernel only: the copy returned is Keras' own BN
            net = registry.build_model(recipe.model, dataset.num_classes, dataset.image_shape)
        warm_start = _warm_start(net, dataset, plan)
        context = FitContext(plan.seed, first_epoch, frozenset((warm_start or {}).get("loaded", ())), plan.strategy,
                             _validation_data(dataset, plan), callbacks, plan.verbose)
        _run_trainer(net, dataset, recipe, context, run_dir)
    return precision.float32_copy(net, recipe.model, dataset.num_classes, dataset.image_shape), warm_start


def _warm_start(net, dataset, plan):
    """Load the plan's backbone weights and an earlier run's layers into `net`; the warm start's record or None."""
    if plan.backbone_weights is not None:
        net.get_layer(backbones.BACKBONE_LAYER).set_weights(plan.backbone_weights)
    if plan.warm_source is None:
        return None
    record = warmstart.apply(net, plan.warm_source, dataset.class_names)
    if plan.verbose:
        print(printable(warmstart.describe(record)), flush=True)
    return record


def _run_trainer(net, dataset, recipe, context: FitContext, run_dir) -> None:
    trainer = importlib.import_module(recipe.trainer)
    try:
        trainer.fit(net, dataset, recipe, context)
    except RuntimeError as error:
        if "NaN or Inf" not in str(error):
            raise
        raise UserError(f"training stopped: the loss became NaN or infinite ({first_line(error)}); the last "
                        f"good epoch is kept in {layout.backup_dir(run_dir)} (`resume` continues from it, "
                        f"e.g. after lowering `learning_rate`)") from None


def _validation_data(dataset, plan):
    """What each epoch is validated on (None under multiworker: see distribute.fit)."""
    if distribute.is_multiworker(plan.strategy):
        return None
    if plan.validation == "test":
        return batches.validation_data(dataset.x_test, dataset.y_test)
    if plan.validation == "holdout":
        return batches.validation_data(dataset.x_val, dataset.y_val)
    return None


def _progress_callbacks(plan) -> list:
    # verbose 2 (output not a terminal) prints only at an epoch's end; verbose 1 draws Keras' bar, 0 is silent.
    return [progress.StepProgress(plan.recipe.batch_size)] if plan.verbose == 2 else []


def _safety_callbacks(run_dir, strategy) -> list:
    # TerminateOnNaN's graceful default would run on_train_end, where BackupAndRestore deletes its backup.
    callbacks = [keras.callbacks.TerminateOnNaN(raise_error=True)]
    if not distribute.is_multiworker(strategy):
        # double_checkpoint keeps the previous epoch's files, so a kill while Keras writes leaves one loadable.
        callbacks.insert(0, keras.callbacks.BackupAndRestore(str(layout.backup_dir(run_dir)),
                                                             double_checkpoint=True))
    return callbacks
