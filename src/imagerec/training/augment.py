"""Augmentation of whole batches: the seed recipe's in the tf.data graph, the airbench recipe's as Keras ops
in the train step (any backend).

Every random choice depends only on the seed it is given (the run's seed, the epoch and the step), never on
a generator's state, so a resumed run augments exactly as the uninterrupted run would have. Kept out of the
model on purpose: random crops/shifts are identity at inference anyway, and Keras' RandomCrop(training=False)
has surprising behaviour (keras-team/keras#21868).
"""

import keras
import numpy as np
from keras import ops


def random_shift_and_flip(images, shift_fraction: float, horizontal_flip: bool, seed):
    """A float32 batch (N, H, W, 3) randomly shifted and mirrored, image by image, as the tutorial's
    ImageDataGenerator did: shifts uniform in +-shift_fraction of the height and of the width (sub-pixel,
    bilinear, edge pixels repeated: Keras' RandomTranslation with fill_mode="nearest"), then a coin flip for a
    left-right mirror (RandomFlip("horizontal")).

    `seed` is a stateless seed (shape [2] int). Keras' random layers draw from a stateful generator that
    accepts only Python ints, so a batch's augmentation would depend on how many batches came before it; here
    it depends on `seed` alone, which makes a resumed run see the very batches an uninterrupted one sees.
    TensorFlow only (the seed recipe's tf.data pipeline).
    """
    import tensorflow as tf

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


def translate_and_flip(images, offsets, flips, pixels: int):
    """Shift image i of a batch (N, H, W, C) to the crop at offsets[i] = (row, column), each in
    [0, 2 * pixels], of its reflect-padded copy (a shift in [-pixels, pixels]; offsets of `pixels` leave it in
    place), then mirror it where flips[i] is true. Keras ops only: runs inside any backend's train step.

    The crop is a sum of masked slices, one per possible offset (2 * pixels + 1 per axis), because
    per-image dynamic slicing has no backend-agnostic op; for airbench's 2 pixels that is 5 + 5 selects.
    """
    images = ops.cast(images, "float32")
    if pixels:
        height, width = images.shape[1], images.shape[2]
        padded = ops.pad(images, [[0, 0], [pixels, pixels], [pixels, pixels], [0, 0]], mode="reflect")
        rows = _select_offset(padded, offsets[:, 0], 1, height, pixels)
        images = _select_offset(rows, offsets[:, 1], 2, width, pixels)
    return ops.where(ops.reshape(flips, (-1, 1, 1, 1)), ops.flip(images, axis=2), images)


def _select_offset(padded, offsets, axis: int, size: int, pixels: int):
    offsets = ops.reshape(ops.cast(offsets, "int32"), (-1, 1, 1, 1))
    result = 0.0
    for offset in range(2 * pixels + 1):
        window = padded[:, offset:offset + size] if axis == 1 else padded[:, :, offset:offset + size]
        result = result + ops.where(offsets == offset, window, 0.0)
    return result


def resized_crop(images, boxes):
    """Crop box i = (top, left, height, width), as fractions of the image, out of image i of a batch (N, H, W, C)
    and resize it back to (H, W), bilinearly (reflecting at the border): the random resized crop of ImageNet
    training. One `keras.ops.image.affine_transform` per batch, so it runs inside any backend's train step."""
    images = ops.cast(images, "float32")
    height, width = images.shape[1], images.shape[2]
    boxes = ops.cast(boxes, "float32")
    top, left, box_height, box_width = (boxes[:, index] for index in range(4))
    zeros = ops.zeros_like(top)
    # Output pixel centre (x + 0.5) maps to left * W + (x + 0.5) * box_width in the input, likewise for rows.
    transforms = ops.stack([box_width, zeros, left * width + 0.5 * box_width - 0.5,
                            zeros, box_height, top * height + 0.5 * box_height - 0.5, zeros, zeros], axis=1)
    return ops.image.affine_transform(images, transforms, interpolation="bilinear", fill_mode="reflect")


# Corruption augmentation (the airbench recipes' `corruption_augment`): what CIFAR-10-C and users do to images,
# drawn per image as planned (`airbench.epoch_plan`): 0 none, then noise, blur, low contrast, the web palette's
# 6 levels a channel with dithering noise (what a GIF does), and glass (each pixel taken from up to 2 px away, what
# CIFAR-10-C's glass blur does: the corruption the other kinds left at 42% on the default recipe). Kept to Keras
# ops: both feeders run it.
CORRUPTION_KINDS = ("none", "noise", "blur", "contrast", "palette", "glass")
NOISE_SIGMA = 0.1 * 255  # the strongest noise: CIFAR-10-C's Gaussian noise at severity 5 (0.10 of the range)
NOISE_BANK = 64  # planes of N(0, 1) noise an image's noise is taken from (flipped and shifted with it later)


def noise_bank(seed: int, image_shape) -> np.ndarray:
    """(NOISE_BANK, H, W, C) float32 standard normal noise, the same on every backend for a seed."""
    return np.random.default_rng([seed, 7]).standard_normal((NOISE_BANK, *image_shape)).astype(np.float32)


def corrupt_planned(images, plan, bank):
    """A float32 batch (N, H, W, C), 0-255, with image i corrupted as planned: plan (N, 3) = (kind, strength in
    [0, 1], noise plane); `bank` from `noise_bank`."""
    images = ops.cast(images, "float32")
    kinds = ops.reshape(ops.cast(plan[:, 0], "int32"), (-1, 1, 1, 1))
    strength = ops.reshape(ops.cast(plan[:, 1], "float32"), (-1, 1, 1, 1))
    noise = ops.take(bank, ops.cast(plan[:, 2], "int32"), axis=0)
    noisy = images + strength * NOISE_SIGMA * noise
    channels = images.shape[-1]
    taps = ops.convert_to_tensor([0.27406862, 0.45186276, 0.27406862])  # a Gaussian of sigma 1, 3 taps
    kernel = ops.tile(ops.reshape(ops.outer(taps, taps), (3, 3, 1, 1)), (1, 1, channels, 1))
    padded = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
    blurred = images + strength * (ops.depthwise_conv(padded, kernel, padding="valid") - images)
    means = ops.mean(images, axis=(1, 2), keepdims=True)
    faded = means + (images - means) * (1 - 0.85 * strength)  # down to CIFAR-10-C's contrast at severity 5
    paletted = ops.round((images + 0.5 * NOISE_SIGMA * noise) / 51) * 51  # 6 levels, dithered by noise
    glassy = _displaced(images, plan, bank, strength)
    out = ops.where(kinds == 1, noisy, ops.where(kinds == 2, blurred, ops.where(kinds == 3, faded, ops.where(
        kinds == 4, paletted, ops.where(kinds == 5, glassy, images)))))
    return ops.clip(out, 0, 255)


def _displaced(images, plan, bank, strength):
    """Each pixel taken from (dy, dx) away, each round(0.9 x strength x N(0, 1)) clipped to +-2 (at strength 1:
    58% of pixels move 1 px an axis, 10% 2 px), from the planned noise plane and the next one (channel 0)."""
    _, height, width, channels = images.shape
    plane = ops.cast(plan[:, 2], "int32")
    steps = [ops.clip(ops.round(0.9 * strength[..., 0] * ops.take(bank[..., 0], (plane + k) % NOISE_BANK, axis=0)),
                      -2, 2) for k in (0, 1)]
    rows = ops.clip(ops.reshape(ops.arange(height, dtype="float32"), (1, -1, 1)) + steps[0], 0, height - 1)
    cols = ops.clip(ops.reshape(ops.arange(width, dtype="float32"), (1, 1, -1)) + steps[1], 0, width - 1)
    source = ops.reshape(ops.cast(rows * width + cols, "int32"), (-1, height * width, 1))
    flat = ops.reshape(images, (-1, height * width, channels))
    taken = ops.take_along_axis(flat, ops.repeat(source, channels, axis=2), axis=1)
    return ops.reshape(taken, (-1, height, width, channels))
