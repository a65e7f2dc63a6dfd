"""The seed recipe's trainer: the original tutorial's Adam, a plain phase and then an augmented phase.

`training.run` calls `fit` inside the run's strategy scope and dtype policy; everything that makes the run
directory (backup, history, saving) stays there. TensorFlow only (tf.data): imported where used, so that
`training.run` imports on other backends.
"""

import keras

from imagerec.training import augment, class_weights, distribute
from imagerec.training.context import FitContext


def seed_batches(images, labels, recipe, seed: int, first_epoch: int = 0):
    """The seed recipe's epochs `first_epoch`..`epochs - 1` as one stream of float32 batches.

    Each epoch is a seeded permutation cut into batches (the last one partial, as Keras' own batching); the
    plain phase's epochs give the images as they are, the augmented phase's shift and mirror them. Every
    choice depends only on (seed, epoch, step), so one `fit` covers both phases and a resumed run sees exactly
    the batches the uninterrupted run would have seen. A tf.data.Dataset.
    """
    import tensorflow as tf

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

    return tf.data.Dataset.range(first_epoch, recipe.epochs).flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE)


def fit(model, dataset, recipe, context: FitContext) -> None:
    """Adam; the plain phase then the augmented phase, in one `fit` over one epoch count, from
    `context.first_epoch`.

    One `fit`, not one per phase: Keras' BackupAndRestore leaves the model's `_initial_epoch` set after
    restoring, and `fit` prefers it to its own `initial_epoch`, so a second `fit` after a resume re-ran the
    restored epochs. A run killed after its last epoch's backup fits zero epochs, which restores it.
    """
    model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=recipe.jit_compile)
    steps = -(-len(dataset.y_train) // recipe.batch_size)
    weights = class_weights.class_weights(dataset.y_train, dataset.num_classes, recipe.class_weight)
    batches = seed_batches(dataset.x_train, dataset.y_train, recipe, context.seed, context.first_epoch)
    distribute.fit(model, batches, epochs=recipe.epochs, steps_per_epoch=steps, initial_epoch=context.first_epoch,
                   class_weight=None if weights is None else dict(enumerate(weights.tolist())),
                   **context.fit_options())
