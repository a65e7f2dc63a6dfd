"""Augmentation on whole batches inside the tf.data graph, with Keras preprocessing layers.

Kept out of the model on purpose: random crops/shifts are identity at inference anyway, and Keras'
RandomCrop(training=False) has surprising behaviour (keras-team/keras#21868).
"""

import keras
import tensorflow as tf


def shift_and_flip(shift_fraction: float, horizontal_flip: bool, seed: int) -> keras.Sequential:
    """A layer stack mapping a float32 batch (N, H, W, 3) to a randomly shifted and mirrored batch.

    `fill_mode="nearest"` repeats edge pixels, as the tutorial's ImageDataGenerator did by default.
    """
    layers = []
    if shift_fraction > 0:
        layers.append(keras.layers.RandomTranslation(shift_fraction, shift_fraction, fill_mode="nearest",
                                                     seed=seed))
    if horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 1))
    return keras.Sequential(layers, name="augment")


def augment_batches(dataset: tf.data.Dataset, augmenter: keras.Sequential) -> tf.data.Dataset:
    """Apply `augmenter` to each (images, labels) batch; images come out float32 in 0-255."""
    def apply(images, labels):
        return augmenter(tf.cast(images, tf.float32), training=True), labels

    return dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE)


def random_translate(images: tf.Tensor, pixels: int, seed) -> tf.Tensor:
    """Shift each image of a batch (N, H, W, C) by its own random offset in [-pixels, pixels] on both axes,
    filling with the reflected border; `seed` is a stateless seed (shape [2] int)."""
    if pixels == 0:
        return images
    count, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pixels, pixels], [pixels, pixels], [0, 0]], mode="REFLECT")
    offsets = tf.random.stateless_uniform([count, 2], seed, minval=0, maxval=2 * pixels + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[tf.newaxis]  # (N, H) row indices into the padded image
    columns = offsets[:, 1:] + tf.range(width)[tf.newaxis]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, columns, axis=2, batch_dims=1)


def alternating_flip(images: tf.Tensor, start_flipped: tf.Tensor, epoch) -> tf.Tensor:
    """Mirror image i when start_flipped[i] differs from the epoch's parity, so every image is seen
    mirrored on every other epoch (airbench's alternating flip: more diverse than a coin per epoch)."""
    flip = tf.math.not_equal(start_flipped, tf.cast(epoch % 2, tf.bool))
    return tf.where(flip[:, tf.newaxis, tf.newaxis, tf.newaxis], tf.reverse(images, axis=[2]), images)
