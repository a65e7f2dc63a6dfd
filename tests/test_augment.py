"""Augmentation tested eagerly and inside tf.data: the two paths differ more often than one expects."""

import numpy as np
import tensorflow as tf

from imagerec import augment


def _batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (16, 32, 32, 3)).astype(np.uint8), np.arange(16, dtype=np.int32)


def _check_flips(images, augmented):
    for original, result in zip(images.astype(np.float32), np.asarray(augmented)):
        assert np.array_equal(result, original) or np.array_equal(result, original[:, ::-1])


def test_flip_only_mirrors_or_keeps_each_image_eagerly():
    images, _ = _batch()
    augmenter = augment.shift_and_flip(0.0, True, seed=3)
    augmented = augmenter(tf.cast(images, tf.float32), training=True)
    _check_flips(images, augmented)


def test_flip_only_mirrors_or_keeps_each_image_in_tf_data():
    images, labels = _batch()
    dataset = augment.augment_batches(tf.data.Dataset.from_tensor_slices((images, labels)).batch(8),
                                      augment.shift_and_flip(0.0, True, seed=3))
    outputs = list(dataset.as_numpy_iterator())
    augmented = np.concatenate([batch for batch, _ in outputs])
    np.testing.assert_array_equal(np.concatenate([batch_labels for _, batch_labels in outputs]), labels)
    _check_flips(images, augmented)
    mirrored = sum(not np.array_equal(result, original) for result, original in zip(augmented, images))
    assert 0 < mirrored < 16  # random, not all-or-nothing


def test_shift_keeps_shape_range_and_changes_images():
    images, labels = _batch()
    dataset = augment.augment_batches(tf.data.Dataset.from_tensor_slices((images, labels)).batch(16),
                                      augment.shift_and_flip(0.1, False, seed=5))
    augmented, _ = next(dataset.as_numpy_iterator())
    assert augmented.shape == images.shape and augmented.dtype == np.float32
    assert augmented.min() >= 0 and augmented.max() <= 255
    assert not np.allclose(augmented, images)
