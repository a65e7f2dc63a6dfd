"""The airbench recipe's trainer (arXiv 2404.00498, KellerJordan/cifar10-airbench, re-written for Keras):
the batch stream, the train step and the fit of a whitened, dirac-initialised convnet.

`train.train` calls `fit` inside the run's strategy scope and dtype policy; everything that makes the run
directory (backup, history, saving) stays in `train`.
"""

import keras
import numpy as np
import tensorflow as tf

from imagerec import augment, distribute, models, optim
from imagerec.errors import UserError


def airbench_batches(images, labels, batch_size: int, epochs: int, seed: int, translate: int,
                 alternating_flip: bool, first_epoch: int = 0) -> tf.data.Dataset:
    """Epochs `first_epoch`..`epochs - 1` of training batches as one stream, made in the graph from the
    uint8 arrays.

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

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE)


class AirbenchTrainer(keras.Model):
    """Wraps an airbench net for `fit` with airbench's update: label-smoothed cross-entropy, L2 added to the
    gradient, BatchNorm biases at `bias_lr_scale` x the learning rate, and a gate that freezes the
    whitening bias. Keras' optimizers have no per-variable learning rate, hence this train_step."""

    def __init__(self, net, recipe, **kwargs):
        super().__init__(**kwargs)
        self.net, self.recipe = net, recipe
        self.whiten_bias_gate = tf.Variable(1.0, trainable=False, name="whiten_bias_gate")  # set each epoch
        self.lookahead_state = optim.LookaheadState(net)  # checkpointed with the trainer (resume)
        self.built = True  # the net is built; BackupAndRestore requires it
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
            scaled_loss = self.optimizer.scale_loss(loss)  # float16's loss scaling; unchanged otherwise
        variables = self.net.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        # airbench's decoupled units: this L2 gives every variable the same per-step decay. A loss-scale
        # optimizer (mixed_float16) divides every gradient by its scale, so the L2 term is scaled alike.
        l2 = self.recipe.weight_decay / self.recipe.learning_rate * getattr(self.optimizer, "dynamic_scale", 1.0)
        scales = [self._scales(variable) for variable in variables]
        gradients = [gradient_scale * gradient + l2_scale * l2 * variable
                     for gradient, variable, (gradient_scale, l2_scale) in zip(gradients, variables, scales)]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:  # tf.distribute sums the replicas' gradients; each replica saw 1/replicas of the batch
            gradients = [gradient / replicas for gradient in gradients]
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


def sgd_learning_rate(recipe) -> float:
    """airbench's decoupled learning rate as the SGD step size for a batch-mean loss."""
    return recipe.learning_rate * recipe.batch_size / (1024 * (1 + 1 / (1 - recipe.momentum)))


def fit(net, dataset, recipe, seed: int, first_epoch: int = 0, **fit_options) -> None:
    """Train an airbench-family `net` in place: whitening from the data, then Nesterov SGD with the recipe's
    schedule, Lookahead and the whitening-bias freeze. `fit_options` go to `distribute.fit` (strategy,
    validation_data, verbose, callbacks: the caller's backup and logging)."""
    if "whiten" not in [layer.name for layer in net.layers]:
        raise UserError(f"the airbench recipe trains the airbench model family; {recipe.model!r} is not one of them")
    steps = len(dataset.y_train) // recipe.batch_size
    if steps == 0:
        raise UserError(f"`batch_size` {recipe.batch_size} is larger than the {len(dataset.y_train)} training images")
    sample = np.random.default_rng(seed).choice(len(dataset.y_train), min(recipe.whitening_images,
                                                                         len(dataset.y_train)), replace=False)
    models.init_airbench_net(net, dataset.x_train[np.sort(sample)])
    trainer = _compiled_trainer(net, recipe, steps * recipe.epochs)
    lookahead = optim.Lookahead(net, trainer.lookahead_state, steps * recipe.epochs, recipe.lookahead_start_epoch,
                                recipe.lookahead_every, recipe.lookahead_decay, recipe.lookahead_power)
    batches = airbench_batches(dataset.x_train, dataset.y_train, recipe.batch_size, recipe.epochs, seed,
                               recipe.translate, recipe.alternating_flip, first_epoch)
    callbacks = [_WhitenBiasFreeze(trainer.whiten_bias_gate, recipe.whiten_bias_epochs), lookahead,
                 *fit_options.pop("callbacks", ())]
    distribute.fit(trainer, batches, epochs=recipe.epochs, steps_per_epoch=steps, initial_epoch=first_epoch,
                   callbacks=callbacks, **fit_options)


def _compiled_trainer(net, recipe, total_steps: int) -> AirbenchTrainer:
    trainer = AirbenchTrainer(net, recipe)
    schedule = optim.TriangleSchedule(sgd_learning_rate(recipe), total_steps, recipe.lr_start,
                                      recipe.lr_peak_at, recipe.lr_end)
    trainer.compile(optimizer=keras.optimizers.SGD(schedule, momentum=recipe.momentum, nesterov=True),
                    jit_compile=recipe.jit_compile)
    return trainer
