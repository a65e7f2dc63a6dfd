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


def _shift_of(original, shifted, pixels):
    """The (dy, dx) whose reflect-padded crop of `original` equals `shifted`, or None."""
    padded = np.pad(original, [(pixels, pixels), (pixels, pixels), (0, 0)], mode="reflect")
    size = original.shape[0]
    for dy in range(2 * pixels + 1):
        for dx in range(2 * pixels + 1):
            if np.array_equal(padded[dy:dy + size, dx:dx + size], shifted):
                return dy - pixels, dx - pixels
    return None


def test_random_translate_shifts_each_image_within_range_eagerly_and_in_tf_data():
    images, labels = _batch()
    eager = augment.random_translate(tf.constant(images), 2, tf.constant([1, 2])).numpy()
    dataset = tf.data.Dataset.from_tensors((images, labels)).map(
        lambda x, y: (augment.random_translate(x, 2, tf.constant([1, 2])), y))
    in_graph = next(dataset.as_numpy_iterator())[0]
    np.testing.assert_array_equal(eager, in_graph)  # stateless: same seed, same shifts, eager or graph
    shifts = [_shift_of(original, shifted, 2) for original, shifted in zip(images, eager)]
    assert None not in shifts and len(set(shifts)) > 3
    other = augment.random_translate(tf.constant(images), 2, tf.constant([1, 3])).numpy()
    assert not np.array_equal(eager, other)


def test_alternating_flip_mirrors_every_image_on_every_other_epoch():
    images, _ = _batch()
    start = tf.constant(np.random.default_rng(0).random(16) < 0.5)
    epochs = [augment.alternating_flip(tf.constant(images), start, epoch).numpy() for epoch in range(3)]
    for index, image in enumerate(images):
        flipped = [not np.array_equal(epoch[index], image) for epoch in epochs]
        assert flipped[0] != flipped[1] and flipped[0] == flipped[2]
        mirrored = epochs[0][index] if flipped[0] else epochs[1][index]
        np.testing.assert_array_equal(mirrored, image[:, ::-1])


def test_test_time_views_are_the_six_airbench_views():
    from imagerec import layers

    images, _ = _batch()
    views = layers.TestTimeViews()(images[:2].astype(np.float32)).numpy().reshape(6, 2, 32, 32, 3)
    padded = np.pad(images[:2], [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect").astype(np.float32)
    expected = [images[:2], images[:2, :, ::-1], padded[:, :32, :32], padded[:, :32, :32][:, :, ::-1],
                padded[:, 2:, 2:], padded[:, 2:, 2:][:, :, ::-1]]
    for view, wanted in zip(views, expected):
        np.testing.assert_array_equal(view, wanted)
    logits = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)
    averaged = layers.TestTimeAverage()(logits).numpy()
    weights = np.array(layers.TestTimeViews.VIEW_WEIGHTS)
    np.testing.assert_allclose(averaged, np.tensordot(weights, logits.reshape(6, 2, 5), axes=1), rtol=1e-6)
