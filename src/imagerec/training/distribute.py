"""Scale-out with tf.distribute: choose a strategy, and fit under it.

Strategies (`imagerec train --strategy`):
  default      one device (TensorFlow's default strategy);
  mirrored     every local GPU, one replica each (the CPU when there is none), gradients all-reduced;
  multiworker  MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (collective all-reduce);
  auto         mirrored when more than one GPU is visible, else default.

Batch size and learning rate are global: a run on N replicas takes the same steps, with the same
hyper-parameters, as on one device; each replica computes batch/N of every step (N must divide it).

Keras' `fit` trains under the default and mirrored strategies. Under MultiWorkerMirroredStrategy, Keras
3.15's `fit` fails on every worker (keras-team/keras#20585, tensorflow/tensorflow#72388), so `fit` below
runs the model's own `train_step` with `strategy.run` over a distributed dataset and drives the same Keras
callbacks: one model, optimizer and schedule for both paths.
"""

import contextlib
import json
import os

from imagerec import backends
from imagerec.errors import UserError

# TensorFlow is imported inside the functions: the CLI lists STRATEGIES in `imagerec --help`, which must not
# wait seconds for TensorFlow.

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


class SingleDevice:
    """The strategy of a backend other than TensorFlow: one device, Keras' own `fit`, no tf.distribute."""

    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()


def make_strategy(name: str = "auto"):
    """The tf.distribute strategy called `name`. Create it before any other TensorFlow work (multiworker needs
    that). On another Keras backend: `SingleDevice` for auto/default, a UserError for the others."""
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    if not backends.is_tensorflow():
        if name not in ("auto", "default"):
            raise UserError(f"the {name} strategy is tf.distribute's: it needs the tensorflow backend")
        return SingleDevice()
    import tensorflow as tf

    if name == "multiworker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy() if gpus else tf.distribute.MirroredStrategy(["/cpu:0"])
    return tf.distribute.get_strategy()


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise UserError("the multiworker strategy reads the cluster from the TF_CONFIG environment variable, "
                        "which is not set (see the README's 'Scaling out')")
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        if task["type"] not in ("worker", "chief") or not isinstance(task["index"], int) or not workers:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise UserError('TF_CONFIG must be JSON like {"cluster": {"worker": ["host:port", ...]}, '
                        '"task": {"type": "worker", "index": 0}}') from None


def is_multiworker(strategy) -> bool:
    if isinstance(strategy, SingleDevice):
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy) -> bool:
    """True on the one process that writes files: the chief, or worker 0 of a cluster without one."""
    if not is_multiworker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def per_replica_batch(strategy, batch_size: int) -> int:
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UserError(f"batch size {batch_size} must be a multiple of the {replicas} replicas")
    return batch_size // replicas


def fit(model, batches, strategy, epochs: int, steps_per_epoch=None,
        initial_epoch: int = 0, callbacks=(), verbose: int = 2, validation_data=None, class_weight=None):
    """`model.fit` where it works; a `strategy.run` loop over the same train_step under multiworker.

    `batches` yields global batches from `initial_epoch` on, identical on every worker (seeded); each
    worker takes its slice. Multi-worker runs skip per-epoch validation (the final evaluation still runs).
    Returns a keras History either way.
    """
    if class_weight is not None and is_multiworker(strategy):
        raise UserError("`class_weight` with the multiworker strategy: not supported yet (use an airbench recipe, "
                        "whose loss carries the weights)")
    if not is_multiworker(strategy):
        return model.fit(batches, epochs=epochs, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                         class_weight=class_weight,
                         callbacks=list(callbacks), verbose=verbose, validation_data=validation_data,
                         validation_batch_size=_validation_batch() if isinstance(validation_data, tuple) else None,
                         shuffle=False)
    return _fit_multiworker(model, batches, strategy, epochs, steps_per_epoch, initial_epoch, callbacks, verbose)


def _validation_batch() -> int:
    from imagerec.training import batches  # Keras: not at import, which `imagerec --help` does

    return batches.VALIDATION_BATCH


def _worker_slices(batches, strategy):
    """Each worker's share of every global batch, split into its local replicas' batches."""
    import tensorflow as tf

    workers = strategy.extended._num_workers  # noqa: SLF001 - no public accessor in TF 2.21
    local_replicas = strategy.num_replicas_in_sync // workers
    worker = strategy.cluster_resolver.task_id if strategy.cluster_resolver.task_type != "chief" else 0

    def dataset_fn(input_context):
        def take_slice(inputs, labels, *rest):
            share = tf.shape(labels)[0] // workers
            mine = slice(worker * share, (worker + 1) * share)
            return tf.nest.map_structure(lambda tensor: tensor[mine], inputs), labels[mine]

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        mine = batches.with_options(options).map(take_slice, num_parallel_calls=tf.data.AUTOTUNE)
        if local_replicas > 1:  # several GPUs per worker: split the worker's share once more
            global_batch = batches.element_spec[1].shape[0]
            if global_batch is None:
                raise UserError("multi-worker training with several replicas per worker needs fixed-size batches")
            mine = mine.rebatch(input_context.get_per_replica_batch_size(global_batch))
        return mine.prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn)


def _fit_multiworker(model, batches, strategy, epochs, steps_per_epoch, initial_epoch, callbacks, verbose):
    import keras
    import tensorflow as tf

    if steps_per_epoch is None:
        steps_per_epoch = int(batches.cardinality())
        if steps_per_epoch < 0:
            raise UserError("multi-worker training needs a known number of steps per epoch")
    with strategy.scope():
        # What fit does first: create the optimizer's, compiled metrics' and loss' variables from one batch's
        # shapes, so that none is created inside strategy.run. Keras has no public call for it.
        model._symbolic_build(data_batch=next(iter(batches.take(1))))  # noqa: SLF001
    iterator = iter(_worker_slices(batches, strategy))

    @tf.function
    def train_step(iterator):
        logs = strategy.run(model.train_step, args=(next(iterator),))
        # Each replica returns its running means; their mean is the global one (equal shares).
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for name, value in logs.items()}

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(list(callbacks) + [history], add_progbar=verbose == 1,
                                                 model=model, verbose=verbose, epochs=epochs, steps=steps_per_epoch)
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        logs = {}
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            logs = {name: float(value) for name, value in train_step(iterator).items()}
            callback_list.on_train_batch_end(step, logs)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return history

