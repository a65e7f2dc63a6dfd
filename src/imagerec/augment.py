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
