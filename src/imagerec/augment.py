"""Augmentation on whole batches inside the tf.data graph, drawn from stateless seeds.

Every random choice depends only on the seed it is given (the run's seed, the epoch and the step), never on
a generator's state, so a resumed run augments exactly as the uninterrupted run would have. Kept out of the
model on purpose: random crops/shifts are identity at inference anyway, and Keras' RandomCrop(training=False)
has surprising behaviour (keras-team/keras#21868).
"""

import keras
import tensorflow as tf


def random_shift_and_flip(images: tf.Tensor, shift_fraction: float, horizontal_flip: bool, seed) -> tf.Tensor:
    """A float32 batch (N, H, W, 3) randomly shifted and mirrored, image by image, as the tutorial's
    ImageDataGenerator did: shifts uniform in +-shift_fraction of the height and of the width (sub-pixel,
    bilinear, edge pixels repeated: Keras' RandomTranslation with fill_mode="nearest"), then a coin flip for a
    left-right mirror (RandomFlip("horizontal")).

    `seed` is a stateless seed (shape [2] int). Keras' random layers draw from a stateful generator that
    accepts only Python ints, so a batch's augmentation would depend on how many batches came before it; here
    it depends on `seed` alone, which makes a resumed run see the very batches an uninterrupted one sees.
    """
    translate_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    count = tf.shape(images)[0]
    if shift_fraction > 0:
        size = tf.constant([images.shape[2], images.shape[1]], tf.float32)  # (width, height): x then y
        shifts = tf.random.stateless_uniform([count, 2], translate_seed, -shift_fraction, shift_fraction) * size
        ones, zeros = tf.ones([count, 1]), tf.zeros([count, 1])
        # Projective transforms map output to input pixels: [1 0 -dx 0 1 -dy 0 0] shifts by (dx, dy).
        transform = tf.concat([ones, zeros, -shifts[:, :1], zeros, ones, -shifts[:, 1:], zeros, zeros], axis=1)
        images = keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="nearest")
    if horizontal_flip:
        mirrored = tf.random.stateless_uniform([count], flip_seed) < 0.5
        images = tf.where(mirrored[:, tf.newaxis, tf.newaxis, tf.newaxis], tf.reverse(images, axis=[2]), images)
    return images


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
